"""The Batcher on a real broker: every record delivered once, in order per
partition, across callers, full batches and close; a producer's error reaches
the callers of the batch."""

from __future__ import annotations

import asyncio
import os

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from scorer.config import Settings
from scorer.kafka.batcher import Batcher
from scorer.kafka.client import KeyPartitions, producer_options
from tests.kafka_harness import Deployment, consume

pytestmark = pytest.mark.broker
PARTITIONS = 3


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def test_concurrent_callers_records_arrive_once_and_in_order(
    deployment: Deployment,
) -> None:
    settings = Settings(broker=f"kafka://{deployment.broker.bootstrap}", replication_factor=1)
    topic = deployment.topic("batched")
    await create_topic(deployment.broker.bootstrap, topic, PARTITIONS)
    producer = AIOKafkaProducer(**producer_options(settings))
    await producer.start()
    batcher = Batcher(producer, linger=0.002)
    partition_of = KeyPartitions(PARTITIONS)
    value = b"x" * 300  # about 50 records fill a 16 KB batch: several batches a caller

    async def caller(name: int) -> int:
        futures = set()
        for i in range(400):
            key = f"k{(name * 7 + i) % 40}".encode()
            futures.add(batcher.add(topic, partition_of(key), key, b"%d:%d:" % (name, i) + value))
            if i % 50 == 0:
                await asyncio.sleep(0)  # other callers add to the same open batches
        await asyncio.gather(*futures)
        return len(futures)

    try:
        batches = await asyncio.gather(*(caller(n) for n in range(8)))
        futures_before_close = sum(batches)
        last = batcher.add(topic, 0, b"last", b"9:0:" + value)
        await batcher.close()  # submits the open batch
        await last
    finally:
        await producer.stop()

    records = await consume(deployment.broker.bootstrap, topic, until=lambda r: len(r) >= 3201)
    assert len(records) == 3201
    seen: dict[bytes, list[tuple[int, int]]] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        assert record.partition == partition_of(record.key)
        caller_id, index, _ = record.value.split(b":", 2)
        seen.setdefault(record.key, []).append((int(caller_id), int(index)))
    assert sum(len(v) for v in seen.values()) == len(set().union(*map(set, seen.values())))
    for order in seen.values():  # each caller's records of a key in the order added
        for name in range(8):
            mine = [i for c, i in order if c == name]
            assert mine == sorted(mine)
    assert futures_before_close < 3200  # records shared batches (one future per batch)


async def test_a_producer_error_reaches_the_callers(deployment: Deployment) -> None:
    """The broker refuses a record over its message.max.bytes (1 MB): every caller of
    that batch gets the error; the producer and the next batches carry on."""
    settings = Settings(broker=f"kafka://{deployment.broker.bootstrap}", replication_factor=1)
    topic = deployment.topic("batched-error")
    await create_topic(deployment.broker.bootstrap, topic, 1)
    producer = AIOKafkaProducer(**producer_options(settings))
    await producer.start()
    try:
        batcher = Batcher(producer, linger=0.001)
        refused = batcher.add(topic, 0, b"k", os.urandom(2_000_000))  # incompressible
        with pytest.raises(KafkaError):
            await asyncio.wait_for(refused, 30)
        await asyncio.wait_for(batcher.add(topic, 0, b"k", b"small"), 30)
    finally:
        await producer.stop()
    records = await consume(deployment.broker.bootstrap, topic, idle=2)
    assert [r.value for r in records] == [b"small"]
