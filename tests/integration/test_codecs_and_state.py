"""Compressed input from two clients, local state that belongs elsewhere, and state
written in the previous format."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import murmur2

from scorer.config import Settings
from scorer.events import event_from_document
from scorer.icp import load_icp
from scorer.inputs import load_companies
from scorer.scoring import AccountState, Engine
from scorer.scoring.state import WindowedIds
from scorer.stream.account_codec import FORMAT, FORMAT_1_BUCKETS_PER_WINDOW, SEPARATOR, bucket_key
from tests.integration.streaming import (
    ICPS,
    batch_alerts,
    comparable,
    event_records,
    processing_order,
    resolved_ids,
    sample,
    setup_deployment,
)
from tests.kafka_harness import Deployment

CODECS = ("gzip", "snappy", "lz4", "zstd")


async def produce_compressed(bootstrap: str, records: list, codec: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, compression_type=codec, linger_ms=5)
    await producer.start()
    try:
        for topic, key, value in records:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


def kcat_produce(bootstrap: str, records: list, codec: str) -> None:
    """kcat (librdkafka) with its defaults: CRC32 partitioning, so the worker re-keys."""
    by_topic: dict[str, list[bytes]] = {}
    for topic, key, value in records:
        by_topic.setdefault(topic, []).append(key + b"\t" + value)
    for topic, lines in by_topic.items():
        subprocess.run(
            ["kcat", "-P", "-b", bootstrap, "-t", topic, "-z", codec, "-K", "\t"],
            input=b"\n".join(lines) + b"\n",
            check=True,
            timeout=60,
        )


async def test_every_codec_from_aiokafka_and_kcat(deployment: Deployment, tmp_path: Path) -> None:
    """gzip, snappy, lz4 and zstd input, from aiokafka and from kcat, is all scored, and the
    alerts equal `scorer score`'s for the same per-account order."""
    companies, events = sample(tmp_path, 300, 1600, seed=23)
    setup_deployment(deployment, companies)
    worker = deployment.start_worker(SCORER_EMIT_SCORES="true")
    worker.wait_ready()
    records = [r for r in event_records(deployment, events) if r[1] is not None]
    kept = {orjson.loads(v)["event_id"] for _, _, v in records}
    events = [e for e in events if e["event_id"] in kept]
    chunk = len(records) // (2 * len(CODECS)) + 1
    parts = [records[i : i + chunk] for i in range(0, len(records), chunk)]
    for i, codec in enumerate(CODECS):
        await produce_compressed(deployment.broker.bootstrap, parts[2 * i], codec)
        kcat_produce(deployment.broker.bootstrap, parts[2 * i + 1], codec)
    expected = 2 * len(resolved_ids(events))
    scores = await deployment.documents(
        "account-scores", until=lambda r: len(r) >= expected, timeout=120
    )
    assert {d["trigger"]["event_id"] for d in scores} == resolved_ids(events)
    assert len(scores) == expected
    alerts = await deployment.documents("hot-accounts", idle=3, timeout=60)
    batch = batch_alerts(tmp_path, companies, processing_order(scores, events))
    assert sorted(map(comparable, alerts)) == sorted(map(comparable, batch))
    assert "UnsupportedCodec" not in worker.log()


async def test_state_of_a_recreated_changelog_is_rebuilt(
    deployment: Deployment, tmp_path: Path
) -> None:
    """A RocksDB directory left by a deployment whose topics were deleted and created
    again is discarded (logged), not used: the new run's alerts are exactly the batch
    alerts of the new events, as if the directory had been empty."""
    data = str(tmp_path / "state")
    companies, events = sample(tmp_path, 200, 1200, seed=31)
    setup_deployment(deployment, companies)
    await deployment.produce(event_records(deployment, events))
    first = deployment.start_worker(SCORER_STORE="rocksdb", SCORER_DATA_DIR=data)
    first.wait_ready()
    await deployment.documents("hot-accounts", idle=3, timeout=60)
    first.stop()
    stores = list(Path(data).glob(f"{deployment.name}/*accounts-changelog/*"))
    assert len(stores) == 4, stores  # <dir>/<app id>/<changelog topic>/<partition>

    admin = AIOKafkaAdminClient(bootstrap_servers=deployment.broker.bootstrap)
    await admin.start()
    try:
        names = [n for n in await admin.list_topics() if n.startswith(deployment.prefix)]
        await admin.delete_topics(names)  # the group's offsets for them go too
        for _ in range(100):
            if not any(n.startswith(deployment.prefix) for n in await admin.list_topics()):
                break
            await asyncio.sleep(0.1)
    finally:
        await admin.close()
    again = sample(tmp_path, 200, 900, seed=32)[1]
    setup_deployment(deployment, companies)
    await deployment.produce(event_records(deployment, again))
    second = deployment.start_worker(
        SCORER_STORE="rocksdb", SCORER_DATA_DIR=data, SCORER_EMIT_SCORES="true"
    )
    second.wait_ready()
    expected = 2 * len(resolved_ids(again))
    scores = await deployment.documents(
        "account-scores", until=lambda r: len(r) >= expected, timeout=120
    )
    alerts = await deployment.documents("hot-accounts", idle=3, timeout=60)
    batch = batch_alerts(tmp_path, companies, processing_order(scores, again))
    assert sorted(map(comparable, alerts)) == sorted(map(comparable, batch))
    assert "belongs to another changelog; rebuilding" in second.log()


async def test_inputs_with_different_partition_counts_stop_the_worker(
    deployment: Deployment, tmp_path: Path
) -> None:
    """Input topics that do not share a partition count cannot be joined by task: the
    worker exits with status 2 and a message that lists the counts."""
    admin = AIOKafkaAdminClient(bootstrap_servers=deployment.broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(deployment.topic("visitor-events"), 4, 1),
                NewTopic(deployment.topic("lead-events"), 2, 1),
            ]
        )
    finally:
        await admin.close()
    worker = deployment.run_worker_to_exit()
    assert worker.returncode == 2, worker.stderr
    assert "must have the same number of partitions" in worker.stderr
    assert f"{deployment.topic('lead-events')}: 2" in worker.stderr


async def produce_to_partitions(
    bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]
) -> None:
    """Changelog records on their account's partition (murmur2 of the domain, of 4),
    id buckets with their account."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in records:
            account = key.split(SEPARATOR)[0]
            partition = (murmur2(account) & 0x7FFFFFFF) % 4
            await producer.send(topic, value, key=key, partition=partition)
        await producer.flush()
    finally:
        await producer.stop()


async def commit_offsets(deployment: Deployment, offsets: dict[TopicPartition, int]) -> None:
    """The deployment's group offsets, as a previous run of its workers left them."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=deployment.broker.bootstrap,
        group_id=deployment.name,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()


def format_1_changelog(
    companies: Path, events: list[dict], window: float
) -> list[tuple[bytes, bytes]]:
    """The (key, value) records the previous version wrote for these events: a JSON
    record per account and its ids in hourly JSON buckets."""
    records = load_companies(str(companies))
    engine = Engine([load_icp(p) for p in ICPS], dedup_window=window)
    states: dict[str, AccountState] = {}
    for doc in events:
        event = event_from_document(doc)
        if event.account is not None:
            state = states.setdefault(event.account, AccountState())
            engine.apply(state, event, records.get(event.account))
    width = window / FORMAT_1_BUCKETS_PER_WINDOW
    out = []
    for domain, state in states.items():
        buckets: dict[int, list[str]] = {}
        assert isinstance(state.seen, WindowedIds)
        for at, event_id in state.seen.entries():
            buckets.setdefault(int(at // width), []).append(event_id)
        key = domain.encode()
        out += [(bucket_key(key, n), orjson.dumps(ids)) for n, ids in buckets.items()]
        out.append((key, orjson.dumps({**state.core(), "buckets": sorted(buckets), "recent": []})))
    return out


async def test_state_in_the_previous_format_is_restored_and_carried_on(
    deployment: Deployment, tmp_path: Path
) -> None:
    """A changelog the previous version wrote (format 1: JSON records, hourly id
    buckets), with the group's offsets after the events it holds: a worker restores
    it and goes on. Replays of old events change nothing, the alerts of the new
    ones are the batch alerts of the whole history, and the accounts it touched are
    written back in format 2."""
    companies, events = sample(tmp_path, 200, 1500, seed=41)
    old, new = events[:900], events[900:] + events[300:360]  # new ones, and replays
    setup_deployment(deployment, companies)
    changelog = deployment.topic(f"{deployment.name}-accounts-changelog")
    await produce_to_partitions(
        deployment.broker.bootstrap,
        changelog,
        format_1_changelog(companies, old, Settings().dedup_window),
    )
    records = event_records(deployment, old)
    placed = await deployment.produce(records)
    ends: dict[TopicPartition, int] = {}
    for (topic, _, _), (partition, offset) in zip(records, placed, strict=True):
        tp = TopicPartition(topic, partition)
        ends[tp] = max(ends.get(tp, 0), offset + 1)
    await commit_offsets(deployment, ends)
    await deployment.produce(event_records(deployment, new))
    worker = deployment.start_worker(SCORER_EMIT_SCORES="true")
    worker.wait_ready()
    fresh = resolved_ids(events[900:])
    scores = await deployment.documents(
        "account-scores", until=lambda r: len(r) >= 2 * len(fresh), timeout=120
    )
    alerts = await deployment.documents("hot-accounts", idle=3, timeout=90)
    # The replays were all recognised: only the new events were scored.
    assert {d["trigger"]["event_id"] for d in scores} == fresh
    # One account's visitor and lead events meet in the order the worker read its
    # two input partitions: the batch replays them in that order (account-scores).
    history = old + processing_order(scores, new)
    batch = [a for a in batch_alerts(tmp_path, companies, history)
             if a["trigger"]["event_id"] in fresh]  # fmt: skip
    assert batch, "the sample gives no alert to compare"
    assert sorted(map(comparable, alerts)) == sorted(map(comparable, batch))
    written = await deployment.consume(f"{deployment.name}-accounts-changelog", idle=3)
    latest = {r.key: r.value for r in written}
    changed = {d["account"]["domain"].encode() for d in scores}
    assert {latest[key][0] for key in changed} == {FORMAT}  # written back in format 2
    untouched = {k for k in latest if SEPARATOR not in k and k[:1] != b"\x00"} - changed
    assert untouched and {latest[key][:1] for key in untouched} == {b"{"}  # left as they were


async def test_state_in_an_unknown_format_stops_the_worker(
    deployment: Deployment, tmp_path: Path
) -> None:
    """An account record in a format this version cannot read (a newer version wrote
    it) is neither dropped nor guessed at: the worker exits with status 2 and says
    what to do."""
    companies, _ = sample(tmp_path, 50, 10, seed=43)
    setup_deployment(deployment, companies)
    changelog = deployment.topic(f"{deployment.name}-accounts-changelog")
    await produce_to_partitions(deployment.broker.bootstrap, changelog, [(b"a.example", b"\x09?")])
    worker = deployment.run_worker_to_exit(timeout=90)
    assert worker.returncode == 2, worker.stderr[-2000:]
    assert "account state this version cannot read" in worker.stderr
    assert "format 9" in worker.stderr
