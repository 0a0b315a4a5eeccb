"""The topics of a deployment: their names, their settings and their creation.

Every service names topics through `Topics` (the deployment's prefix
applied) and creates the ones it needs through `ensure_topics`. Each topic
is created with `SCORER_REPLICATION_FACTOR` copies and `min.insync.replicas`
from `SCORER_MIN_INSYNC_REPLICAS`; a cluster with fewer live brokers than
the factor is a `ConfigError` that says what to set (Kafka refuses such a
creation at once: nothing waits on it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    KafkaError,
    TopicAuthorizationFailedError,
    for_code,
)

from scorer.config import Settings
from scorer.errors import BrokerError, ConfigError
from scorer.kafka.client import client_options

log = logging.getLogger("scorer.topics")
# The account changelog is rewritten all day: with the broker's 1 GB default
# segments nothing of it is compacted for a long time, and a restore reads
# every write. Smaller segments let the cleaner keep it near one record per
# account (and key).
CHANGELOG_CONFIGS = {"segment.bytes": str(16 * 1024 * 1024), "min.cleanable.dirty.ratio": "0.2"}
# The router's delivery records matter only until their input offset is
# committed; a week's retention bounds the topic while keeping replays of old
# offsets safe.
DELIVERIES_RETENTION = 7 * 86400.0
DELIVERIES_CONFIGS = {
    "cleanup.policy": "compact,delete",
    "retention.ms": str(int(DELIVERIES_RETENTION * 1000)),
}
TOPIC_ALREADY_EXISTS = 36
INVALID_REPLICATION_FACTOR = 38


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
    deliveries: str  # the router's delivery log
    route_dlq: str
    identities: str  # the collector's visits and links, keyed by identity
    identities_changelog: str  # the collector's stitching state
    erasures: str  # `scorer erase` requests, read whole by the workers and the router
    erasure_progress: str  # which task has applied which requests (`scorer erase --status`)

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
            deliveries=t("route-deliveries"),
            route_dlq=t("route-dlq"),
            identities=t(f"{settings.collect_id}-identities"),
            identities_changelog=t(f"{settings.collect_id}-identities-changelog"),
            erasures=t("erasures"),
            erasure_progress=t("erasure-progress"),
        )

    def compacted(self) -> tuple[str, ...]:
        return (
            self.firmographics,
            self.icp,
            self.changelog,
            self.identities_changelog,
            self.erasures,
            self.erasure_progress,
        )

    def inputs(self) -> tuple[str, ...]:
        """The co-partitioned inputs of a task (the changelog shares their count)."""
        return (self.visitor, self.lead, self.rekey)

    def worker(self) -> tuple[str, ...]:
        """Every topic a worker reads or writes."""
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
            self.erasures,
            self.erasure_progress,
        )

    def router(self) -> tuple[str, ...]:
        """Every topic a router reads or writes."""
        return (self.hot, self.firmographics, self.deliveries, self.route_dlq, self.erasures)

    def collector(self) -> tuple[str, ...]:
        """Every topic `scorer collect` reads or writes."""
        return (self.visitor, self.lead, self.identities, self.identities_changelog)

    def all(self) -> tuple[str, ...]:
        """Every topic of the deployment (what the publishing commands create)."""
        return (
            *self.worker(),
            self.deliveries,
            self.route_dlq,
            self.identities,
            self.identities_changelog,
        )

    def spec(self, name: str, settings: Settings) -> tuple[int, dict[str, str]]:
        """(partitions, topic configs) a topic of this deployment is created with."""
        configs = {"min.insync.replicas": str(settings.min_isr)}
        if name in self.compacted():
            configs["cleanup.policy"] = "compact"
        if name in (self.changelog, self.identities_changelog):
            configs.update(CHANGELOG_CONFIGS)
        if name == self.deliveries:
            configs.update(DELIVERIES_CONFIGS)
        if name in (self.dlq, self.route_dlq):
            configs["retention.ms"] = str(int(settings.dlq_retention * 1000))
        if name == self.scores:
            configs["retention.ms"] = str(int(settings.scores_retention * 1000))
        # One partition for the ICPs, and for the erasure requests: their offsets
        # order them, and a task's progress is one offset (scorer.stream.erasing).
        single = (self.icp, self.erasures, self.erasure_progress)
        return (1 if name in single else settings.topic_partitions), configs


async def ensure_topics(
    settings: Settings,
    topics: Topics,
    names: tuple[str, ...] | None = None,
    check_partitions: bool = False,
) -> list[str]:
    """Create the missing ones of `names` (default: every topic of the
    deployment); returns the names created.

    Input topics, the re-key topic and the changelog share one partition
    count: a task joins them by partition number (co-partitioning). With
    `check_partitions`, a mismatch is a `ConfigError` naming the counts.
    """
    wanted = topics.all() if names is None else names
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        if check_partitions:
            await _check_copartitioned(admin, topics, existing, settings.topic_partitions)
        missing = [name for name in wanted if name not in existing]
        if missing:
            return await _create(
                admin, settings, {name: topics.spec(name, settings) for name in missing}
            )
        await _warn_underreplicated(admin, settings, list(wanted))
        return []
    finally:
        await admin.close()


def check_min_isr(settings: Settings) -> None:
    """A `ConfigError` when topics created as configured could never take a write."""
    factor, min_isr = settings.replication_factor, settings.min_isr
    if min_isr > factor:
        raise ConfigError(
            f"SCORER_MIN_INSYNC_REPLICAS={min_isr} is more than SCORER_REPLICATION_FACTOR="
            f"{factor}: no write to such a topic could ever be acknowledged; set "
            f"SCORER_MIN_INSYNC_REPLICAS to at most {factor}"
        )


def too_few_brokers(settings: Settings, brokers: int, detail: str) -> str:
    """What to do when the cluster cannot hold the configured replication."""
    factor = settings.replication_factor
    return (
        f"cannot create topics with SCORER_REPLICATION_FACTOR={factor} copies: the cluster "
        f"at {settings.broker} has {brokers} live broker(s) ({detail}). Start the missing "
        f"brokers, or set SCORER_REPLICATION_FACTOR to at most {max(1, brokers)} "
        "(SCORER_REPLICATION_FACTOR=1 for a single local broker; deploy/local's tooling "
        "sets it)"
    )


async def _create(
    admin: AIOKafkaAdminClient, settings: Settings, specs: dict[str, tuple[int, dict[str, str]]]
) -> list[str]:
    """Create the topics, returning those created; raise on anything but
    success or 'exists' (another process won the race, or a principal that may
    create but not describe)."""
    check_min_isr(settings)
    factor = settings.replication_factor
    response = await admin.create_topics(
        [
            NewTopic(name, partitions, factor, topic_configs=configs)
            for name, (partitions, configs) in specs.items()
        ]
    )
    denied, created = [], []
    for name, code, *rest in response.topic_errors:
        message = rest[0] if rest else None
        if code == 0:
            created.append(name)
        elif code == TOPIC_ALREADY_EXISTS:
            continue
        elif code in (TopicAuthorizationFailedError.errno, ClusterAuthorizationFailedError.errno):
            denied.append(name)
        elif code == INVALID_REPLICATION_FACTOR:
            brokers = len((await admin.describe_cluster())["brokers"])
            raise ConfigError(too_few_brokers(settings, brokers, message or "too few"))
        else:
            error = for_code(code)
            raise BrokerError(f"could not create topic {name}: {error.message}: {message or ''}")
    if denied:
        raise TopicAuthorizationFailedError(set(denied))
    if created:
        log.info("created topics %s (replication factor %d)", ", ".join(created), factor)
    return created


async def _warn_underreplicated(
    admin: AIOKafkaAdminClient, settings: Settings, names: list[str]
) -> None:
    """A warning for each existing topic with fewer copies than configured
    (created by hand, or before the factor was raised)."""
    try:
        descriptions = await admin.describe_topics(names)
    except KafkaError:
        return  # only a warning: the service finds out soon enough
    for description in descriptions:
        partitions = description["partitions"]
        copies = min((len(p["replicas"]) for p in partitions), default=None)
        if copies is not None and copies < settings.replication_factor:
            log.warning(
                "topic %s has %d copies, fewer than SCORER_REPLICATION_FACTOR=%d: a broker "
                "failure can lose or stop it (raise it with kafka-reassign-partitions)",
                description["topic"],
                copies,
                settings.replication_factor,
            )


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
