"""Account expiry over a year of traffic: accounts in state against accounts active
in the last TTL, through `scorer score`'s loop and through a streaming worker.

Data (bench/year.py): `scorer.synthetic.year_of_traffic`, 365 days over
BENCH_EXPIRY_DOMAINS (1,000,000) distinct domains with Zipf activity (98 % seen
once), seed 17; the 100,000 busiest domains have firmographic records
(bench.common's companies, the same domains), the rest none, as an enrichment
vendor covers the companies that come back. The 2 sample ICPs, the default
TTL (90 days) and dedup window (7 days).

- batch: `score_lines` (the loop of `scorer score`) over the file, in a
  process of its own; at the end of every simulated day the accounts in state
  (`len(AccountStates)`) and the process's RSS.
- stream: one `scorer worker` as shipped (RocksDB store, exactly-once, 4
  partitions; SCORER_ACCOUNTS_IN_MEMORY raised so the gauge counts every
  account) on the local broker, fed a day at a time; once a day is committed,
  its `scorer_accounts_in_memory`, its RSS, and its changelog: bytes on the
  broker's disk, and what compaction leaves (live keys and their bytes).
  Then its hot-accounts against `scorer score`'s alerts over the same events
  in the order the worker applied each account's (read from account-scores:
  the worker merges a partition's visitor and lead topics in its own order).

Goals: accounts in state <= 1.2 x active in the last TTL every day after the
first TTL; RSS and the changelog's live bytes after the first TTL + dedup
window at most 1.2 x their value then; stream alerts = batch alerts.
Writes bench/results/<date>-expiry.json and docs/img/expiry-year.svg.
BENCH_EXPIRY_ONLY=batch skips the stream.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from bench import year as yearly
from bench.common import ICPS, ROOT, TMP, companies_file, log, record_goals, save_result
from scorer import gcpolicy
from scorer.icp.loader import load_icp
from scorer.lifecycle.charts import line_chart
from scorer.scoring.engine import Engine
from scorer.scoring.state import DEFAULT_ACCOUNT_TTL, DEFAULT_DEDUP_WINDOW

DOMAINS = int(os.environ.get("BENCH_EXPIRY_DOMAINS", "1000000"))
DAYS = 365
SEED = 17
TTL = DEFAULT_ACCOUNT_TTL
WINDOW = DEFAULT_DEDUP_WINDOW
BOUND = 1.2
DAY = yearly.DAY
PLOT = ROOT / "docs" / "img" / "expiry-year.svg"
BROKER = os.environ.get("SCORER_BROKER", "kafka://127.0.0.1:9092")
BOOTSTRAP = BROKER.split("://", 1)[-1]
SCORER = str(Path(sys.executable).parent / "scorer")


def the_year() -> yearly.Year:
    path = TMP / f"year-{DOMAINS}-{SEED}.jsonl"
    if not path.with_suffix(".index.json").exists():
        log(f"generating a year over {DOMAINS:,} domains (first run only)")
    return yearly.write_year(path, DOMAINS, TTL, DAYS, SEED)


def alerts_path() -> Path:
    return TMP / f"year-{DOMAINS}-{SEED}-alerts.jsonl"


def run_batch() -> dict[str, Any]:
    """The batch phase (in its own process, so its RSS is the scoring's alone)."""
    year = the_year()
    companies_path, _ = companies_file()
    companies = {}
    with companies_path.open("rb") as stream:
        for line in stream:
            record = orjson.loads(line)
            companies[record["domain"]] = record
    engine = Engine([load_icp(p) for p in ICPS], dedup_window=WINDOW, account_ttl=TTL)
    gcpolicy.settle()  # as `scorer score` does once the companies are loaded
    log(f"batch: {year.lines:,} events, {year.accounts:,} accounts")
    with alerts_path().open("wb") as out:
        run = yearly.run_batch(year, engine, companies, out)
    return {
        "events": year.lines,
        "accounts": year.accounts,
        "seconds": run.seconds,
        "alerts": run.alerts,
        "outcomes": run.outcomes,
        "state": run.state,
        "active": year.active,
        "rss_mb": run.rss_mb,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6, 1),
    }


def scorer(*args: str | Path, env: dict[str, str]) -> None:
    subprocess.run([SCORER, *map(str, args)], env=env, check=True, capture_output=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 300) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the worker exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise RuntimeError(f"the worker was not ready after {timeout} s")


async def run_stream() -> dict[str, Any]:
    year = the_year()
    name = f"expiry-{uuid.uuid4().hex[:6]}"
    data_dir = TMP / "expiry-data"
    shutil.rmtree(data_dir, ignore_errors=True)
    port = free_port()
    env = {
        **os.environ,
        "SCORER_BROKER": BROKER,
        "SCORER_APP_ID": name,
        "SCORER_TOPIC_PREFIX": f"{name}-",
        "SCORER_TOPIC_PARTITIONS": "4",
        "SCORER_REPLICATION_FACTOR": os.environ.get("SCORER_REPLICATION_FACTOR", "1"),
        "SCORER_DATA_DIR": str(data_dir),
        "SCORER_WEB_PORT": str(port),
        "SCORER_ACCOUNTS_IN_MEMORY": str(2 * DOMAINS),
        "SCORER_EMIT_SCORES": "true",  # the order it applied each account's events in
        "SCORER_LOG_LEVEL": "WARNING",
    }
    companies, _ = companies_file()
    for icp in ICPS:
        scorer("icp", "publish", icp, env=env)
    log("stream: loading 100,000 companies")
    scorer("firmographics", "load", companies, env=env)
    log_path = TMP / "expiry-worker.log"
    with log_path.open("wb") as handle:
        process = subprocess.Popen([SCORER, "worker"], env=env, stdout=handle, stderr=handle)
    try:
        wait_ready(port, process)
        port_number = int(BOOTSTRAP.rsplit(":", 1)[1])
        data = Path(os.environ.get("KAFKA_DATA_DIR", ROOT / ".kafka" / str(port_number))) / "data"

        def progress(day: int, run: yearly.StreamRun) -> None:
            if day % 30 == 29:
                log(f"stream: day {day + 1}, {run.state[-1]:,} accounts in state, "
                    f"{run.rss_mb[-1]} MB")  # fmt: skip

        log(f"stream: {year.lines:,} events a day at a time")
        run = await yearly.run_stream(
            year, BOOTSTRAP, f"{name}-", name, port, process.pid, log_dirs=data, progress=progress
        )
        alerts = await yearly.topic_documents(BOOTSTRAP, f"{name}-hot-accounts")
        log(f"stream: {len(alerts):,} alerts; `scorer score` over the worker's order")
        ordered = TMP / "expiry-stream-order.jsonl"
        lines = await yearly.stream_order(BOOTSTRAP, f"{name}-account-scores", year)
        with ordered.open("wb") as out:
            out.writelines(lines)
        del lines
    finally:
        process.terminate()
        process.wait(timeout=60)
    options = [a for p in ICPS for a in ("--icp", str(p))]
    command = [SCORER, "score", "--quiet", *options, "--firmographics", str(companies)]
    batch = subprocess.run([*command, str(ordered)], check=True, capture_output=True).stdout
    batch_alerts = [orjson.loads(line) for line in batch.splitlines()]
    shutil.rmtree(data_dir, ignore_errors=True)
    ordered.unlink()
    return {
        "events": year.lines,
        "accounts": year.accounts,
        "seconds": run.seconds,
        "alerts": len(alerts),
        "alerts_differing": yearly.differing(alerts, batch_alerts),
        "state": run.state,
        "active": year.active,
        "expired": run.expired,
        "rss_mb": run.rss_mb,
        "changelog_records": run.changelog_records,
        "changelog_live_keys": run.changelog_live_keys,
        "changelog_live_mb": run.changelog_live_mb,
        "changelog_disk_mb": run.changelog_disk_mb,
    }


def growth(values: list[float]) -> float:
    """The highest value after the first TTL + dedup window over the value then."""
    settled = int((TTL + WINDOW) / DAY)
    return max(values[settled:]) / values[settled] if values[settled] else float("inf")


def plot(result: dict[str, Any]) -> None:
    batch, stream = result["batch"], result.get("stream")
    series: dict[str, list[float | None]] = {
        "active in the last TTL": [float(v) for v in batch["active"]],
        "in state, scorer score": [float(v) for v in batch["state"]],
    }
    if stream is not None:
        series["in state, worker"] = [float(v) for v in stream["state"]]
    first = int(TTL / DAY)  # the bound holds from the end of the first TTL
    series["1.2 x active"] = [None] * first + [BOUND * v for v in batch["active"][first:]]
    title = f"Accounts over a year of {batch['accounts']:,} domains (TTL 90 days)"
    svg = line_chart(title, list(range(1, DAYS + 1)), series, y_format=",.0f", x_label="day")
    PLOT.write_text(svg + "\n")


def report(result: dict[str, Any]) -> str:
    batch, stream = result["batch"], result.get("stream")
    ratio, day = yearly.worst_ratio(batch["state"], batch["active"], TTL)
    rss = growth(batch["rss_mb"])
    measured = {
        "batch: accounts in state / active in the last TTL <= 1.2 (worst day)": (
            ratio,
            ratio <= BOUND,
        ),
        "batch: RSS after the first TTL + dedup window <= 1.2 x RSS then": (rss, rss <= BOUND),
    }
    lines = [
        f"batch  {batch['events']:,} events, {batch['accounts']:,} accounts in "
        f"{batch['seconds']} s, {batch['alerts']:,} alerts; state/active worst {ratio:.3f} "
        f"(day {day + 1}); RSS {batch['rss_mb'][int((TTL + WINDOW) / DAY)]} MB on day 97, "
        f"peak {batch['peak_rss_mb']} MB"
    ]
    if stream is not None:
        sratio, sday = yearly.worst_ratio(stream["state"], stream["active"], TTL)
        measured["stream: accounts in state / active in the last TTL <= 1.2 (worst day)"] = (
            sratio,
            sratio <= BOUND,
        )
        for key, label in (("rss_mb", "RSS"), ("changelog_live_mb", "changelog live bytes")):
            value = growth(stream[key])
            measured[f"stream: {label} after the first TTL + dedup window <= 1.2 x then"] = (
                value,
                value <= BOUND,
            )
        measured["stream: alerts differing from the batch's == 0"] = (
            stream["alerts_differing"],
            stream["alerts_differing"] == 0,
        )
        lines.append(
            f"stream {stream['events']:,} events in {stream['seconds']} s, {stream['alerts']:,} "
            f"alerts ({stream['alerts_differing']} differing from the batch's); state/active "
            f"worst {sratio:.3f} (day {sday + 1}); {stream['expired'][-1]:,} accounts expired; "
            f"RSS {stream['rss_mb'][-1]} MB; changelog: {stream['changelog_records'][-1]:,} "
            f"records written, {stream['changelog_live_keys'][-1]:,} live keys "
            f"({stream['changelog_live_mb'][-1]} MB) after compaction, "
            f"{stream['changelog_disk_mb'][-1]} MB on disk before it"
        )
    return "\n".join([*lines, *record_goals(result, measured)])


def main() -> int:
    if sys.argv[1:2] == ["batch"]:  # the child process of the batch phase
        sys.stdout.buffer.write(orjson.dumps(run_batch()))
        return 0
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "bench.expiry_bench", "batch"],
        check=True,
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    result: dict[str, Any] = {"domains": DOMAINS, "days": DAYS, "ttl_days": TTL / DAY,
                              "dedup_window_days": WINDOW / DAY,
                              "batch": orjson.loads(out.stdout)}  # fmt: skip
    if os.environ.get("BENCH_EXPIRY_ONLY") != "batch":
        result["stream"] = asyncio.run(run_stream())
    plot(result)
    save_result(result, "expiry", started, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
