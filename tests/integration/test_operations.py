"""What an SRE relies on: /metrics (promtool-clean), health, the Grafana panels
against a real Prometheus scraping a live worker, the alert rules loaded there,
JSON logs without payload text, and a SIGTERM that drains, commits and exits
within 10 s (also when the broker is gone)."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from scorer.service.metrics import package_version
from tests.fault.recovery import wait_caught_up
from tests.integration.streaming import (
    batch_alerts,
    comparable,
    event_records,
    sample,
    samples,
    setup_deployment,
    total,
)
from tests.kafka_harness import Deployment, start_broker
from tests.observability import Prometheus, tool

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "icp-scorer.json"
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
EMAIL = "jane.doe@example.com"


async def test_a_commit_gap_caps_the_commit_rate(deployment: Deployment, tmp_path: Path) -> None:
    """SCORER_COMMIT_MIN_GAP: commits begin at most once per gap (each commits every
    task with work: 4 here), and the alerts are still exactly the batch's. Without
    a gap, this trickle (a produce every 0.1 s) costs about 4 task commits per produce."""
    companies, events = sample(tmp_path, 200, 300, seed=5)
    setup_deployment(deployment, companies)
    gap = 0.5
    worker = deployment.start_worker(SCORER_COMMIT_MIN_GAP=str(gap))
    worker.wait_ready()
    before = total(samples(worker.get("/metrics").decode()), "scorer_commit_seconds_count")
    producer = AIOKafkaProducer(bootstrap_servers=deployment.broker.bootstrap, linger_ms=5)
    await producer.start()
    started = time.monotonic()
    try:
        records = event_records(deployment, events)
        for start in range(0, len(records), 10):  # 300 events in 3 s
            for topic, key, value in records[start : start + 10]:
                await producer.send(topic, value, key=key)
            await producer.flush()
            await asyncio.sleep(0.1)
    finally:
        await producer.stop()
    deadline = time.monotonic() + 60
    while total(m := samples(worker.get("/metrics").decode()), "scorer_events_total") < len(
        records
    ):
        assert time.monotonic() < deadline, "worker did not count every event"
        await asyncio.sleep(0.1)
    elapsed = time.monotonic() - started
    commits = total(m, "scorer_commit_seconds_count") - before
    bound = 4 * (elapsed / gap + 2)  # + a cycle for a commit begun before the trickle
    print(f"{commits:.0f} task commits in {elapsed:.1f} s (at most {bound:.0f} with the gap)")
    assert 0 < commits <= bound
    alerts = await deployment.documents("hot-accounts", idle=2, timeout=30)
    expected = batch_alerts(tmp_path, companies, events)
    assert sorted(map(comparable, alerts)) == sorted(map(comparable, expected))


def bad_records(deployment: Deployment) -> list[tuple[str, bytes, bytes]]:
    lead = {"type": "lead_created", "event_id": "bad-1", "email": EMAIL}  # no occurred_at
    return [
        (deployment.topic("visitor-events"), b"x", b"{not json " + EMAIL.encode()),
        (deployment.topic("lead-events"), b"example.com", orjson.dumps(lead)),
    ]


async def test_metrics_dashboard_logs_and_sigterm(deployment: Deployment, tmp_path: Path) -> None:
    companies, events = sample(tmp_path, 300, 2000, seed=21)
    setup_deployment(deployment, companies)
    worker = deployment.start_worker(SCORER_LOG_FORMAT="json")
    worker.wait_ready()
    assert worker.status("/healthz") == 200
    prometheus = Prometheus(tmp_path, worker.port)
    try:
        prometheus.wait_up()
        records = event_records(deployment, events) + bad_records(deployment)
        await deployment.produce(records)
        deadline = time.monotonic() + 120
        while total(samples(worker.get("/metrics").decode()), "scorer_events_total") < len(records):
            assert time.monotonic() < deadline, "worker did not count every event"
            await asyncio.sleep(0.5)
        # Alerts count as delivered when their transaction commits, a moment
        # after the events are counted: read them, then the exposition.
        alerts = await deployment.documents("hot-accounts", idle=2, timeout=30)
        while True:
            exposition = worker.get("/metrics")
            delivered = total(samples(exposition.decode()), "scorer_end_to_end_seconds_count")
            if delivered >= len(alerts) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)

        # The live exposition is clean by Prometheus's own linter.
        lint = subprocess.run(
            [tool("promtool"), "check", "metrics"], input=exposition, capture_output=True
        )
        assert lint.returncode == 0, lint.stdout + lint.stderr

        m = samples(exposition.decode())
        assert total(m, "scorer_events_total") == len(records)
        assert total(m, "scorer_events_total", outcome="invalid") == 2
        assert total(m, "scorer_dlq_total", reason="invalid_json") == 1
        assert total(m, "scorer_dlq_total", reason="timestamp") == 1  # no occurred_at
        scored = total(m, "scorer_events_total", outcome="scored")
        assert scored > 0
        assert total(m, "scorer_ingest_to_score_seconds_count") == scored
        assert total(m, "scorer_alerts_total") == len(alerts) > 0
        assert total(m, "scorer_end_to_end_seconds_count") == len(alerts)
        applied = sum(
            total(m, "scorer_events_total", outcome=o) for o in ("scored", "duplicate", "expired")
        )
        assert total(m, "scorer_firmographic_lookups_total") == applied
        assert total(m, "scorer_firmographic_lookups_total", result="hit") > 0
        lag = m["scorer_consumer_lag"]
        visitor = deployment.topic("visitor-events")
        assert sorted(int(la["partition"]) for la, _ in lag if la["topic"] == visitor) == [
            0,
            1,
            2,
            3,
        ]
        assert all(v == 0 for _, v in lag)
        assert m["scorer_build_info"] == [({"version": package_version()}, 1.0)]
        assert total(m, "scorer_ready") == 1
        assert not any(
            "domain" in labels or "account" in labels for s in m.values() for labels, _ in s
        )

        # Every dashboard panel's query answers from a Prometheus scraping the worker.
        await asyncio.sleep(3)  # a few more scrapes after the last event
        dashboard = json.loads(DASHBOARD.read_text())
        for panel in dashboard["panels"]:
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                expr = target["expr"].replace("$__rate_interval", "1m")
                result = prometheus.query(expr)
                values = [float(r["value"][1]) for r in result]
                assert any(math.isfinite(v) for v in values), (panel["title"], expr, result)
        groups = {g["name"]: g for g in prometheus.api("rules")["groups"]}
        rules = groups["icp-scorer"]["rules"]
        assert len(rules) == 7 and all(r["health"] == "ok" for r in rules), rules
    finally:
        prometheus.stop()

    # SIGTERM drains, commits and exits within 10 s.
    elapsed = worker.terminate(timeout=30)
    assert worker.process.returncode == 0, worker.log()
    assert elapsed < 10, f"shutdown took {elapsed:.1f} s"
    print(f"SIGTERM to exit: {elapsed:.2f} s")
    for topic in ("visitor-events", "lead-events"):
        await wait_caught_up(deployment, topic, timeout=5)

    # Logs: one JSON object per line, no payload text.
    text = worker.log_path.read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines
    for line in lines:
        entry = orjson.loads(line)
        assert {"ts", "level", "logger", "message"} <= entry.keys(), line
    assert EMAIL not in text and "not json" not in text


def test_sigterm_exits_when_the_broker_is_gone(tmp_path: Path) -> None:
    """The Kafka client retries a lost broker for ever; the worker still exits within 10 s."""
    broker = start_broker(tmp_path / "kafka", own=True)
    deployment = Deployment(broker, tmp_path)
    try:
        worker = deployment.start_worker()
        worker.wait_ready(timeout=90)
        broker.stop()
        time.sleep(2)
        elapsed = worker.terminate(timeout=30)
        print(f"SIGTERM to exit with the broker gone: {elapsed:.2f} s")
        assert elapsed < 10, worker.log()
        assert worker.process.returncode in (0, 3), worker.log()
    finally:
        deployment.stop_all()
        broker.stop()
