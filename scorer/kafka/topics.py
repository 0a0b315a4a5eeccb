"""The topics of a deployment: their names and their creation.

Every service names topics through `Topics` (the deployment's prefix
applied) and creates the ones it needs through `ensure_topics` or
`create_missing`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from scorer.config import Settings
from scorer.errors import ConfigError
from scorer.kafka.client import client_options

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
