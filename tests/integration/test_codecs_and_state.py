"""Compressed input from two clients, and local state that belongs elsewhere."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.integration.streaming import (
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
