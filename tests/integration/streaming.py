"""Helpers shared by the integration and fault tests: sample data and batch replays."""

from __future__ import annotations

import subprocess
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from scorer import synthetic
from scorer.events import event_from_document
from tests.kafka_harness import SCORER, Deployment, Worker

ROOT = Path(__file__).resolve().parents[2]
ICPS = [ROOT / "scorer" / "samples" / n for n in ("midmarket-saas.yaml", "enterprise-fintech.yaml")]


def sample(tmp: Path, companies: int, events: int, seed: int = 11) -> tuple[Path, list[dict]]:
    records = list(synthetic.companies(companies))
    path = tmp / "companies.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    domains = [r["domain"] for r in records[: companies // 2]]
    return path, list(synthetic.events(events, domains, seed=seed))


def setup_deployment(deployment: Deployment, companies: Path, icps: Sequence[Path] = ICPS) -> None:
    for icp in icps:
        deployment.run("icp", "publish", icp)
    deployment.run("firmographics", "load", companies)


async def scored_stream(
    deployment: Deployment, events: list[dict]
) -> tuple[Worker, list[dict[str, Any]], list[dict[str, Any]]]:
    """Produce the events and start a worker that emits scores; (the worker, the
    account-scores records once every resolved event has one per ICP, the
    hot-accounts records once none arrives for 3 s)."""
    await deployment.produce(event_records(deployment, events))
    worker = deployment.start_worker(SCORER_EMIT_SCORES="true")
    worker.wait_ready()
    expected = 2 * len(resolved_ids(events))
    scores = await deployment.documents(
        "account-scores", until=lambda r: len(r) >= expected, timeout=120
    )
    alerts = await deployment.documents("hot-accounts", idle=3, timeout=60)
    return worker, scores, alerts


def event_records(deployment: Deployment, events: list[dict], keyed: bool = True) -> list:
    """(topic, key, value): visitor and lead events to their topics, keyed by account."""
    out = []
    for doc in events:
        topic = "lead-events" if doc["type"] == "lead_created" else "visitor-events"
        account = event_from_document(doc).account
        key = account.encode() if keyed and account else None
        out.append((deployment.topic(topic), key, orjson.dumps(doc)))
    return out


def resolved_ids(events: list[dict]) -> set[str]:
    return {d["event_id"] for d in events if event_from_document(d).account is not None}


def batch_alerts(
    tmp: Path,
    companies: Path,
    events: list[dict],
    icps: Sequence[Path] = ICPS,
    options: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """`scorer score --emit alerts` over events in the given order (`options`: more
    of its options)."""
    path = tmp / "replay.jsonl"
    path.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in events))
    given = [a for p in icps for a in ("--icp", str(p))] + list(options)
    out = subprocess.run(
        [SCORER, "score", "--quiet", *given, "--firmographics", str(companies), str(path)],
        check=True,
        capture_output=True,
    )
    return [orjson.loads(line) for line in out.stdout.splitlines()]


def processing_order(scores: list[dict], events: list[dict]) -> list[dict]:
    """Events in the per-account order the stream scored them (from account-scores)."""
    by_id = {d["event_id"]: d for d in events}
    order: dict[str, list[str]] = defaultdict(list)
    for doc in scores:
        ids = order[doc["account"]["domain"]]
        event_id = doc["trigger"]["event_id"]
        if not ids or ids[-1] != event_id:  # one record per ICP, consecutive
            ids.append(event_id)
    return [by_id[e] for ids in order.values() for e in ids]


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """A /metrics exposition: samples by name, as (labels, value)."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def total(metrics: dict[str, Any], name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels`."""
    return sum(
        v for got, v in metrics.get(name, []) if all(got.get(k) == x for k, x in labels.items())
    )


def comparable(alert: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {k: v for k, v in alert.items() if k != "scored_at"}, option=orjson.OPT_SORT_KEYS
    )
