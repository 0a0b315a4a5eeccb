"""Identity stitching end to end, and `kill -9` of the collector and a worker mid-stream.

Seeded visitors view pages anonymously, then identify with a work email, are
grouped to a company, or never say who they are. The reference credits each
linked visitor's page views to its company at their original times; the
worker's state and alerts must equal `scorer score` over that reference (in
the per-account order the stream applied it, read from account-scores), every
event applied once, none made up, none lost.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.collect.support import NOW, WRITE_KEYS, Visitors, batches, post, visitors
from tests.integration.streaming import (
    batch_alerts,
    comparable,
    processing_order,
    sample,
    samples,
    setup_deployment,
    total,
)
from tests.kafka_harness import Deployment, Worker

pytestmark = pytest.mark.broker


def seeded(tmp_path: Path, count: int, seed: int) -> tuple[Path, Visitors]:
    companies, _ = sample(tmp_path, 60, 0)
    domains = [orjson.loads(line)["domain"] for line in companies.read_bytes().splitlines()][:15]
    start = NOW - timedelta(days=2)
    return companies, visitors(domains, count, seed, start, ("identify", "group", "never"))


class Sender:
    """Posts the batches in order from a thread, each until it is answered 200: a
    connection refused (the collector is down) or a 503 is retried, as the SDKs do."""

    def __init__(self, port: int, requests: list[dict[str, Any]], pause: float) -> None:
        self.port = port
        self.requests = requests
        self.pause = pause
        self.sent = 0
        self.retries = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        for body in self.requests:
            while True:
                try:
                    status = post(self.port, "/v1/batch", body)[0]
                except OSError:
                    status = 0
                if status == 200:
                    break
                assert status in (0, 503), status
                self.retries += 1
                time.sleep(0.2)
            self.sent += 1
            time.sleep(self.pause)


async def check_against_reference(
    deployment: Deployment, tmp_path: Path, companies: Path, seen: Visitors
) -> tuple[int, int]:
    """Visitor events, scores and alerts equal the reference; (events, alerts)."""
    expected = {e["event_id"]: e for e in seen.expected}
    identifies = sum(1 for c in seen.calls if c["type"] == "identify")

    def all_there(records: list[Any]) -> bool:
        return len({v["event_id"] for v in orjson_docs(records)}) >= len(expected)

    visits = await deployment.documents("visitor-events", until=all_there, timeout=180)
    unique = {v["event_id"]: v for v in visits}
    assert unique == expected  # none lost, none made up, credited at the original time
    leads = await deployment.documents(
        "lead-events", until=lambda r: len(r) >= identifies, timeout=60
    )
    lead_docs = list({lead["event_id"]: lead for lead in leads}.values())
    events = list(unique.values()) + lead_docs
    scores = await deployment.documents(
        "account-scores", until=lambda r: len(r) >= 2 * len(events), timeout=240
    )
    applied = Counter(s["trigger"]["event_id"] for s in scores)
    assert set(applied) == {e["event_id"] for e in events}
    assert set(applied.values()) == {2}  # once per ICP: applied once, repeated never
    alerts = await deployment.documents("hot-accounts", idle=3, timeout=60)
    reference = batch_alerts(tmp_path, companies, processing_order(scores, events))
    assert sorted(map(comparable, alerts)) == sorted(map(comparable, reference))
    assert len({a["alert_id"] for a in alerts}) == len(alerts)
    return len(events), len(alerts)


def orjson_docs(records: list[Any]) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in records]


async def test_stitched_visits_score_as_the_reference(
    deployment: Deployment, tmp_path: Path
) -> None:
    """Seeded visitors: linked ones' earlier page views reach the worker with their
    original times and ids; never-linked ones stay kept; alerts equal the reference."""
    companies, seen = seeded(tmp_path, 300, seed=int(os.environ.get("SCORER_FAULT_SEED", 3)))
    setup_deployment(deployment, companies)
    collector = deployment.start_collector(SCORER_COLLECT_WRITE_KEYS=WRITE_KEYS)
    collector.wait_ready(90)
    worker = deployment.start_worker(SCORER_EMIT_SCORES="true")
    worker.wait_ready()
    for body in batches(seen.calls):
        assert post(collector.port, "/v1/batch", body)[0] == 200
    events, alerts = await check_against_reference(deployment, tmp_path, companies, seen)
    m = samples(collector.get("/metrics").decode())
    kept = total(m, "scorer_collect_unresolved_kept")
    never = sum(
        1 for c in seen.calls if c["type"] == "page" and c["messageId"].startswith("pv-")
    ) - sum(1 for e in seen.expected if e["event_id"].startswith("pv-"))
    print(
        f"\nstitching: {len(seen.calls)} calls, {events} events, {alerts} alerts, {kept:.0f} kept"
    )
    assert alerts > 0 and kept == never > 0
    assert total(m, "scorer_collect_stitch_events_total", outcome="stitched") > 0


async def test_kill_9_of_collector_and_worker_loses_and_repeats_nothing(
    deployment: Deployment, tmp_path: Path
) -> None:
    """kill -9 the collector twice and a worker twice while batches stream in (the sender
    retries as the SDKs do): every linked visit credited once, nothing made up, alerts
    equal the reference, none duplicated."""
    seed = int(os.environ.get("SCORER_FAULT_SEED", time.time_ns() % 10_000))
    rng = random.Random(seed)
    print(f"\ncollect fault seed {seed}")
    companies, seen = seeded(tmp_path, 1200, seed)
    setup_deployment(deployment, companies)
    deployment.extra_env.update({"SCORER_SESSION_TIMEOUT": "6"})
    collector = deployment.start_collector(SCORER_COLLECT_WRITE_KEYS=WRITE_KEYS)
    collector.wait_ready(90)
    worker: Worker = deployment.start_worker(SCORER_EMIT_SCORES="true")
    worker.wait_ready()
    requests = batches(seen.calls, 50)
    sender = Sender(collector.port, requests, pause=0.1)
    sender.thread.start()
    kills = sorted(rng.sample(range(10, len(requests) - 10), 4))
    plan = ["collector", "worker", "collector", "worker"]
    rng.shuffle(plan)
    for at, victim in zip(kills, plan, strict=True):
        while sender.sent < at:
            await asyncio.sleep(0.05)
        if victim == "collector":
            collector.kill()
            collector = deployment.start_collector(SCORER_COLLECT_WRITE_KEYS=WRITE_KEYS)
            collector.wait_ready(90)
            sender.port = collector.port
        else:
            worker.kill()
            worker = deployment.start_worker(SCORER_EMIT_SCORES="true")
        print(f"kill -9 {victim} after {at} of {len(requests)} requests")
    await asyncio.to_thread(sender.thread.join, 300)
    assert sender.sent == len(requests)
    events, alerts = await check_against_reference(deployment, tmp_path, companies, seen)
    print(f"kill test: {events} events applied once, {alerts} alerts, {sender.retries} retries")
