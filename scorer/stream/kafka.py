"""Kafka connection settings and topic management, shared by the worker and commands."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from scorer.config import Settings
from scorer.errors import BrokerError


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
        **options,
    )


async def partitions_of(consumer: AIOKafkaConsumer, topic: str, timeout: float = 30) -> set[int]:
    """A topic's partitions. aiokafka's `partitions_for_topic` only knows topics
    already in the client's metadata, so ask for this one explicitly."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        consumer._client.add_topic(topic)
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return set(partitions)
        if asyncio.get_running_loop().time() > deadline:
            raise BrokerError(f"topic {topic} has no partitions after {timeout:.0f} s")
        await asyncio.sleep(0.2)


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
        )

    def compacted(self) -> tuple[str, ...]:
        return (self.firmographics, self.icp)

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
        )


async def ensure_topics(settings: Settings, topics: Topics) -> list[str]:
    """Create missing topics; returns the names created.

    Input topics and the re-key topic share one partition count: the tables
    join them by partition number (co-partitioning).
    """
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = []
        for name in topics.all():
            if name in existing:
                continue
            configs = {"cleanup.policy": "compact"} if name in topics.compacted() else {}
            partitions = 1 if name == topics.icp else settings.topic_partitions
            wanted.append(
                NewTopic(name, partitions, settings.replication_factor, topic_configs=configs)
            )
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker won the race
                await admin.create_topics(wanted)
        return [t.name for t in wanted]
    finally:
        await admin.close()
