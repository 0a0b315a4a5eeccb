"""Kafka clients as every service makes them: connection and security options,
producer settings, a plain reader, and the helpers around aiokafka's clients."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import TopicAuthorizationFailedError

from scorer.config import Settings
from scorer.errors import BrokerError
from scorer.kafka.partition import default_partition


def bootstrap_servers(settings: Settings) -> str:
    """``kafka://a:9092;b:9092`` -> ``a:9092,b:9092`` for aiokafka clients."""
    servers = []
    for part in settings.broker.replace(";", ",").split(","):
        part = part.strip()
        if "://" in part:
            part = part.split("://", 1)[1]
        if part:
            servers.append(part)
    return ",".join(servers)


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    context = ssl.create_default_context(cafile=settings.ssl_cafile)
    if settings.ssl_certfile:
        context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile)
    return context


def client_options(settings: Settings) -> dict[str, Any]:
    """Security options for aiokafka producers, consumers and admin clients."""
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers(settings),
        "security_protocol": settings.security_protocol,
    }
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if settings.security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        password = settings.sasl_password
        options["sasl_plain_password"] = password.get_secret_value() if password else None
    return options


def producer_options(settings: Settings) -> dict[str, Any]:
    """Producer settings of every service: acks from all in-sync replicas,
    idempotent, compressed with SCORER_COMPRESSION."""
    return {
        **client_options(settings),
        "acks": "all",
        "enable_idempotence": True,
        # Sends come in a burst at each commit, so batches fill without a linger;
        # a linger would only add to every commit.
        "linger_ms": 0,
        "max_batch_size": 256 * 1024,
        "compression_type": None if settings.compression == "none" else settings.compression,
        # A transaction's commit waits out every retry's back-off (a busy
        # coordinator answers CONCURRENT_TRANSACTIONS): keep it short.
        "retry_backoff_ms": 10,
    }


def reader(settings: Settings, **options: Any) -> AIOKafkaConsumer:
    """A plain consumer outside any group: reads from the earliest offset, never
    commits. Assign its partitions yourself."""
    return AIOKafkaConsumer(
        **client_options(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        **options,
    )


async def partitions_of(options: dict[str, Any], topic: str, timeout: float = 30) -> set[int]:
    """A topic's partitions, asked of the cluster with a short-lived admin
    client (`options`: `client_options(settings)`, or just bootstrap_servers);
    waits up to `timeout` for a topic still being created."""
    admin = AIOKafkaAdminClient(**options)
    await admin.start()
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for description in await admin.describe_topics([topic]):
                if description["topic"] != topic:
                    continue
                if description["error_code"] == TopicAuthorizationFailedError.errno:
                    raise TopicAuthorizationFailedError(topic)
                if description["partitions"]:
                    return {p["partition"] for p in description["partitions"]}
            if asyncio.get_running_loop().time() > deadline:
                raise BrokerError(f"topic {topic} has no partitions after {timeout:.0f} s")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """`consumer.stop()`, minus a CancelledError that is not ours.

    aiokafka 0.14's fetcher cancels a fetch that is waiting out its retry
    back-off (the broker is away) and lets that CancelledError out of
    `stop()`: the worker then exited with status 1 after a clean SIGTERM,
    about one run in ten of the broker-gone test. A cancellation of the
    calling task itself still propagates."""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise


class KeyPartitions:
    """Kafka's default partition of a key (murmur2, as the Java client and
    aiokafka choose it) for a topic of `count` partitions, memoised. aiokafka's
    murmur2 is pure Python, and it was an eighth of the collector's CPU when
    the producer computed it for every record; `default_partition` is the
    same function, compiled with the core."""

    __slots__ = ("count", "limit", "memo")

    def __init__(self, count: int, limit: int = 50_000) -> None:  # about 8 MB when full
        if count < 1:
            raise ValueError(f"a topic has at least one partition, not {count}")
        self.count = count
        self.limit = limit
        self.memo: dict[bytes, int] = {}

    def __call__(self, key: bytes) -> int:
        memo = self.memo
        partition = memo.get(key)
        if partition is None:
            if len(memo) >= self.limit:
                memo.clear()
            partition = memo[key] = default_partition(key, self.count)
        return partition


def header(headers: Any, name: str) -> bytes | None:
    """The value of a record's header `name` (the first, if repeated), or None."""
    for key, value in headers or ():
        if key == name and value is not None:
            return bytes(value)
    return None


async def send_batches(
    producer: AIOKafkaProducer,
    topic: str,
    partition: int,
    records: Iterable[tuple[bytes | None, bytes | None]],
    timestamp_ms: int | None = None,
) -> list[tuple[asyncio.Future[Any], int]]:
    """(key, value) records for one known partition, appended to whole record
    batches: one accumulator call per batch instead of one per record.
    `timestamp_ms` stamps every record (None: the time of the append).
    Returns each batch's delivery future and record count, in order."""
    sent: list[tuple[asyncio.Future[Any], int]] = []
    batch, count = producer.create_batch(), 0
    for key, value in records:
        if batch.append(key=key, value=value, timestamp=timestamp_ms) is None:  # full
            batch.close()
            sent.append((await producer.send_batch(batch, topic, partition=partition), count))
            batch = producer.create_batch()
            batch.append(key=key, value=value, timestamp=timestamp_ms)
        count = batch.record_count()
    if batch.record_count():
        batch.close()
        sent.append((await producer.send_batch(batch, topic, partition=partition), count))
    return sent
