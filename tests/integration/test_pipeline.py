"""The worker on a real broker: stream = batch, re-keying, ICP swaps, firmographic updates."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from scorer import synthetic
from scorer.events import decode_event, event_from_document
from scorer.kafka.client import header
from scorer.stream.ordering import INPUT_TIMESTAMP
from tests.integration.streaming import (
    batch_alerts,
    comparable,
    event_records,
    processing_order,
    resolved_ids,
    sample,
    samples,
    scored_stream,
    setup_deployment,
    total,
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


async def test_a_backlog_is_applied_in_time_order_across_the_topics(
    deployment: Deployment, tmp_path: Path
) -> None:
    """A month of events waiting before the worker starts, the lead topic a tenth of
    the visitor topic: a fetch brings each whole, so leads used to be applied days
    ahead of the visits beside them, and a visit more than the dedup window (2 days
    here) behind its account's newest lead was dropped as `expired`. Merged by
    record timestamp (here the file's order), none is, and the alerts are exactly
    `scorer score`'s over the file in its order."""
    records = list(synthetic.companies(200))
    companies = tmp_path / "companies.jsonl"
    companies.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    domains = [r["domain"] for r in records[:100]]
    events = list(synthetic.events(3000, domains, seed=5, mean_gap_s=900))  # 31 days
    setup_deployment(deployment, companies)
    start = 1_790_000_000_000
    await deployment.produce(
        event_records(deployment, events), timestamps=range(start, start + len(events))
    )
    worker = deployment.start_worker(
        SCORER_EMIT_SCORES="true", SCORER_DEDUP_WINDOW="2d", SCORER_COLLECT_KEEP_MAX_AGE="1d"
    )
    worker.wait_ready()
    resolved = resolved_ids(events)
    scores = await deployment.documents(
        "account-scores", until=lambda r: len(r) >= 2 * len(resolved), idle=10, timeout=120
    )
    metrics = samples(worker.get("/metrics").decode())
    assert total(metrics, "scorer_events_total", outcome="expired") == 0
    assert total(metrics, "scorer_events_total", outcome="scored") == len(resolved)
    assert {d["trigger"]["event_id"] for d in scores} == resolved
    applied: dict[str, list[str]] = {}  # each account's events, in the order scored
    for doc in scores:
        ids = applied.setdefault(doc["account"]["domain"], [])
        if not ids or ids[-1] != doc["trigger"]["event_id"]:  # a record per ICP
            ids.append(doc["trigger"]["event_id"])
    in_file: dict[str, list[str]] = {}
    for event in events:
        if event["event_id"] in resolved:
            account = event_from_document(event).account
            in_file.setdefault(str(account), []).append(event["event_id"])
    assert applied == in_file
    alerts = await deployment.documents("hot-accounts", idle=3, timeout=60)
    batch = batch_alerts(tmp_path, companies, events, options=("--dedup-window", "2d"))
    assert batch, "the sample should produce alerts"
    assert sorted(map(comparable, alerts)) == sorted(map(comparable, batch))


async def test_events_not_keyed_by_domain_are_rekeyed(
    deployment: Deployment, tmp_path: Path
) -> None:
    """Events with no key (or another key) are re-keyed by account, their input
    timestamps in a header (the task they go to merges its inputs by timestamp),
    and all scored."""
    companies, events = sample(tmp_path, 100, 400)
    setup_deployment(deployment, companies)
    # Not purged while this test reads the re-key topic back (the next test purges).
    worker = deployment.start_worker(SCORER_EMIT_SCORES="true", SCORER_REKEY_PURGE_INTERVAL="0")
    worker.wait_ready()
    records = event_records(deployment, events, keyed=False)
    records = [(t, (b"visitor-1" if i % 2 else None), v) for i, (t, _, v) in enumerate(records)]
    # A header of the worker's name set by the input's producer does not stand in
    # for the worker's own (it is kept, after it).
    await deployment.produce(records, headers=[(INPUT_TIMESTAMP, b"1"), ("trace", b"t")])
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
    inputs = [
        r
        for topic in ("visitor-events", "lead-events")
        for r in await deployment.consume(topic, idle=2, timeout=30)
    ]
    stamps = {r.value: r.timestamp for r in inputs}
    assert len(stamps) == len(inputs) == len(events)
    carried = [header(r.headers, INPUT_TIMESTAMP) for r in rekeyed]
    assert carried == [b"%d" % stamps[r.value] for r in rekeyed]
    assert all([k for k, _ in r.headers][1:] == [INPUT_TIMESTAMP, "trace"] for r in rekeyed)


async def test_the_rekey_topic_is_purged_of_what_was_processed(
    deployment: Deployment, tmp_path: Path
) -> None:
    """Re-keyed events are deleted from the re-key topic once every task has committed
    past them (DeleteRecords, every SCORER_REKEY_PURGE_INTERVAL): each partition's
    first offset reaches the offset the worker's group committed there, so the topic
    does not keep processed events, with their personal data, for its retention."""
    companies, events = sample(tmp_path, 100, 400)
    setup_deployment(deployment, companies)
    worker = deployment.start_worker(SCORER_EMIT_SCORES="true", SCORER_REKEY_PURGE_INTERVAL="1s")
    worker.wait_ready()
    await deployment.produce(event_records(deployment, events, keyed=False))
    expected = 2 * len(resolved_ids(events))
    await deployment.documents("account-scores", until=lambda r: len(r) >= expected, timeout=90)
    topic = deployment.topic(f"{deployment.name}-events-by-account")
    bootstrap = deployment.broker.bootstrap
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(4)]  # SCORER_TOPIC_PARTITIONS
        deadline = time.monotonic() + 60
        while True:
            committed = await admin.list_consumer_group_offsets(deployment.name, partitions=tps)
            first = await consumer.beginning_offsets(tps)
            moved = {tp: committed[tp].offset for tp in tps if tp in committed}
            if sum(moved.values()) > 0 and all(first[tp] == moved.get(tp, 0) for tp in tps):
                break
            assert time.monotonic() < deadline, f"first offsets {first}, committed {committed}"
            await asyncio.sleep(0.5)
        ends = await consumer.end_offsets(tps)
        # Everything re-keyed was processed (transaction markers may follow the last record).
        assert all(ends[tp] - first[tp] <= 2 for tp in tps), (first, ends)
    finally:
        await consumer.stop()
        await admin.close()
    assert "re-key topic not purged" not in worker.log()
