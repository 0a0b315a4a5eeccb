"""Kafka connection settings and topic management, shared by the worker and commands."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from scorer.config import Settings
from scorer.errors import BrokerError, ConfigError


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
                if description["topic"] == topic and description["partitions"]:
                    return {p["partition"] for p in description["partitions"]}
            if asyncio.get_running_loop().time() > deadline:
                raise BrokerError(f"topic {topic} has no partitions after {timeout:.0f} s")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


# The account changelog is rewritten all day: with the broker's 1 GB default
# segments nothing of it is compacted for a long time, and a restore reads
# every write. Smaller segments let the cleaner keep it near one record per
# account (and key).
CHANGELOG_CONFIGS = {"segment.bytes": str(16 * 1024 * 1024), "min.cleanable.dirty.ratio": "0.2"}


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic name the scorer uses, with the deployment's prefix applied."""

    visitor: str
    lead: str
    firmographics: str
    icp: str
    hot: str
    scores: str
    dlq: str
    rekey: str
    changelog: str

    @classmethod
    def from_settings(cls, settings: Settings) -> Topics:
        t = settings.topic
        return cls(
            visitor=t(settings.visitor_topic),
            lead=t(settings.lead_topic),
            firmographics=t(settings.firmographics_topic),
            icp=t(settings.icp_topic),
            hot=t(settings.hot_topic),
            scores=t(settings.scores_topic),
            dlq=t(settings.dlq_topic),
            rekey=t(f"{settings.app_id}-events-by-account"),
            changelog=t(f"{settings.app_id}-accounts-changelog"),
        )

    def compacted(self) -> tuple[str, ...]:
        return (self.firmographics, self.icp, self.changelog)

    def inputs(self) -> tuple[str, ...]:
        """The co-partitioned inputs of a task (the changelog shares their count)."""
        return (self.visitor, self.lead, self.rekey)

    def all(self) -> tuple[str, ...]:
        return (
            self.visitor,
            self.lead,
            self.firmographics,
            self.icp,
            self.hot,
            self.scores,
            self.dlq,
            self.rekey,
            self.changelog,
        )


async def ensure_topics(
    settings: Settings, topics: Topics, check_partitions: bool = False
) -> list[str]:
    """Create missing topics; returns the names created.

    Input topics, the re-key topic and the changelog share one partition
    count: a task joins them by partition number (co-partitioning). With
    `check_partitions`, a mismatch is a `ConfigError` naming the counts.
    """
    specs: dict[str, tuple[int, dict[str, str]]] = {}
    for name in topics.all():
        configs = {"cleanup.policy": "compact"} if name in topics.compacted() else {}
        if name == topics.changelog:
            configs.update(CHANGELOG_CONFIGS)
        specs[name] = (1 if name == topics.icp else settings.topic_partitions, configs)
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        if check_partitions:
            await _check_copartitioned(admin, topics, existing, settings.topic_partitions)
        return await _create(admin, settings, specs, existing)
    finally:
        await admin.close()


async def create_missing(
    settings: Settings, specs: dict[str, tuple[int, dict[str, str]]]
) -> list[str]:
    """Create the topics of `specs` ({name: (partitions, configs)}) that do not exist."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        return await _create(admin, settings, specs, set(await admin.list_topics()))
    finally:
        await admin.close()


async def _create(
    admin: AIOKafkaAdminClient,
    settings: Settings,
    specs: dict[str, tuple[int, dict[str, str]]],
    existing: set[str],
) -> list[str]:
    wanted = [
        NewTopic(name, partitions, settings.replication_factor, topic_configs=configs)
        for name, (partitions, configs) in specs.items()
        if name not in existing
    ]
    if wanted:
        with contextlib.suppress(TopicAlreadyExistsError):  # another process won the race
            await admin.create_topics(wanted)
    return [t.name for t in wanted]


async def _check_copartitioned(
    admin: AIOKafkaAdminClient, topics: Topics, existing: set[str], default: int
) -> None:
    names = [*topics.inputs(), topics.changelog]
    present = [name for name in names if name in existing]
    counts = {name: default for name in names}
    if present:
        for description in await admin.describe_topics(present):
            counts[description["topic"]] = len(description["partitions"])
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{name}: {count}" for name, count in counts.items())
        raise ConfigError(
            "the input topics, the re-key topic and the changelog must have the same "
            f"number of partitions (a task joins them by partition number); found {listed}"
        )


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
