"""The worker on a real broker: stream = batch, re-keying, ICP swaps, firmographic updates."""

from __future__ import annotations

from pathlib import Path

from scorer.events import decode_event
from tests.integration.streaming import (
    batch_alerts,
    comparable,
    event_records,
    processing_order,
    resolved_ids,
    sample,
    scored_stream,
    setup_deployment,
)
from tests.kafka_harness import Deployment


async def test_stream_alerts_equal_batch_alerts(deployment: Deployment, tmp_path: Path) -> None:
    """hot-accounts carries exactly the alerts (and alert_ids) `scorer score` gives for the same
    per-account order; the first event is processed within 10 s of the worker's start."""
    companies, events = sample(tmp_path, 400, 3000)
    setup_deployment(deployment, companies)
    worker, scores, alerts = await scored_stream(deployment, events)
    assert len(scores) == 2 * len(resolved_ids(events))
    assert {d["trigger"]["event_id"] for d in scores} == resolved_ids(events)
    batch = batch_alerts(tmp_path, companies, processing_order(scores, events))
    assert batch, "the sample should produce alerts"
    assert sorted(map(comparable, alerts)) == sorted(map(comparable, batch))
    first = [line for line in worker.log().splitlines() if "first event processed" in line]
    assert first, worker.log()
    seconds = float(first[0].split("processed ")[1].split(" s")[0])
    assert seconds <= 10, f"first event after {seconds} s"
    print(f"first event processed {seconds} s after start")


async def test_events_not_keyed_by_domain_are_rekeyed(
    deployment: Deployment, tmp_path: Path
) -> None:
    """Events with no key (or another key) are re-keyed by account and all scored."""
    companies, events = sample(tmp_path, 100, 400)
    setup_deployment(deployment, companies)
    worker = deployment.start_worker(SCORER_EMIT_SCORES="true")
    worker.wait_ready()
    records = event_records(deployment, events, keyed=False)
    records = [(t, (b"visitor-1" if i % 2 else None), v) for i, (t, _, v) in enumerate(records)]
    await deployment.produce(records)
    expected = 2 * len(resolved_ids(events))
    scores = await deployment.documents(
        "account-scores", until=lambda r: len(r) >= expected, timeout=90
    )
    assert {d["trigger"]["event_id"] for d in scores} == resolved_ids(events)
    wanted = len(resolved_ids(events))
    rekeyed = await deployment.consume(
        f"{deployment.name}-events-by-account", until=lambda r: len(r) >= wanted, timeout=30
    )
    assert rekeyed and all(r.key == decode_event(r.value).account.encode() for r in rekeyed)
