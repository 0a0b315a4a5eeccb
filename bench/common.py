"""What the engine and streaming benchmarks share: paths, the synthetic data
files (generated once into bench/results/tmp/), progress lines, the machine."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from scorer import synthetic

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
TMP = RESULTS / "tmp"
ICPS = [ROOT / "scorer" / "samples" / n for n in ("midmarket-saas.yaml", "enterprise-fintech.yaml")]
COMPANIES = 100_000
ACTIVE_DOMAINS = 50_000


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def companies_file() -> tuple[Path, list[str]]:
    """COMPANIES synthetic firmographic records (JSONL) and their domains."""
    path = TMP / f"companies-{COMPANIES}.jsonl"
    records = list(synthetic.companies(COMPANIES))
    domains = [r["domain"] for r in records]
    if not path.exists():
        TMP.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as out:
            for record in records:
                out.write(orjson.dumps(record) + b"\n")
    return path, domains


def events_file(
    name: str, count: int, domains: list[str], encode: Callable[[dict[str, Any]], bytes]
) -> Path:
    """`count` synthetic events (Zipf over the first ACTIVE_DOMAINS), one JSON per line."""
    path = TMP / f"{name}-{count}.jsonl"
    if not path.exists():
        log(f"generating {count:,} events (first run only)")
        TMP.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as out:
            for event in synthetic.events(count, domains[:ACTIVE_DOMAINS]):
                out.write(encode(event) + b"\n")
    return path


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = int(Path("/proc/meminfo").read_text().split()[1]) // (1024 * 1024)
    return f"{os.cpu_count()} cores, {cpu}, {memory} GiB, Python {platform.python_version()}"


def metric_values(port: int, timeout: float = 10) -> dict[str, float]:
    """A service's /metrics on loopback: each sample by its name and labels,
    ``name{a=x,b=y}`` (labels sorted), or its bare name when it has none."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as reply:
        text = reply.read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


def record_goals(result: dict[str, Any], measured: dict[str, tuple[float, bool]]) -> list[str]:
    """Record each goal's (value, met) in `result["goals"]`, and return the report's
    lines for them: met or NOT MET, with the value."""
    result["goals"] = {k: {"value": round(v, 2), "met": met} for k, (v, met) in measured.items()}
    return [
        f"{'met    ' if g['met'] else 'NOT MET'} {k}: {g['value']:,}"
        for k, g in result["goals"].items()
    ]


def save_result(
    result: dict[str, Any],
    kind: str,
    started: float,
    report: Callable[[dict[str, Any]], str],
    latest: str | None = None,
) -> Path:
    """Date and machine added, the table printed, written as results/<date>-<kind>.json
    (and `latest` too, when named). `report` may add to the document (its goals)."""
    document = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
                **result}  # fmt: skip
    table = report(document)
    document["wall_s"] = round(time.monotonic() - started)
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2) + "\n"
    path = RESULTS / f"{datetime.now(UTC):%Y-%m-%d}-{kind}.json"
    path.write_text(text)
    if latest:
        (RESULTS / latest).write_text(text)
    print(table)
    return path
