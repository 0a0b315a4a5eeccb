"""The ACLs each service needs, and a refusal explained by them.

One table, computed from the deployment's settings (topic prefix, app id,
router id, topic names), serves three ends: `scorer acls` prints it,
`scorer acls --apply` creates it through the admin API (CreateAcls), and a
service the broker refuses names the permission it lacked and the ACL that
grants it (`explain`), instead of retrying.

Least privilege, as measured against Kafka's StandardAuthorizer by
tests/cluster/test_authorization.py (each ACL removed in turn stops the
service):
- the worker reads its inputs (visitor, lead, re-key), the compacted inputs
  it reads whole (firmographics, ICPs) and its changelog (restores); writes
  alerts, scores, dead letters, re-keyed events and the changelog; reads its
  consumer group; writes the transactional ids `<app id>-<partition>` (a
  prefixed ACL; exactly-once only);
- the router reads hot-accounts, firmographics and its delivery log; writes
  the delivery log and the route DLQ; reads its consumer group;
- the publishing commands (`icp publish|promote`, `firmographics load`)
  create the deployment's topics, write ICPs and firmographics and read ICPs.
Topics are created by the publishing principal (or an admin) before the
services start: the long-running services get no Create. Read and Write
imply Describe, so no Describe ACL is listed. No IdempotentWrite on the
cluster either: since Kafka 3.0 (KIP-679) Write on any topic lets a
producer be idempotent; `--idempotent-write` adds it for older brokers.
"""

from __future__ import annotations

import asyncio
import shlex
from dataclasses import asdict, dataclass
from typing import Any

from aiokafka import TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    for_code,
)
from aiokafka.protocol.admin import CreateAclsRequest

from scorer.config import Settings
from scorer.errors import AccessDenied
from scorer.kafka.client import client_options, reader, stop_consumer
from scorer.kafka.topics import Topics

SERVICES = ("worker", "router", "publisher")
RESOURCE_CODES = {"Topic": 2, "Group": 3, "Cluster": 4, "TransactionalId": 5}
OPERATION_CODES = {"Read": 3, "Write": 4, "Create": 5, "Describe": 8, "IdempotentWrite": 12}
PATTERN_CODES = {"LITERAL": 3, "PREFIXED": 4}
ALLOW = 3
CLUSTER_NAME = "kafka-cluster"
FLAGS = {
    "Topic": "--topic",
    "Group": "--group",
    "TransactionalId": "--transactional-id",
    "Cluster": "--cluster",
}
NOUNS = {
    "Topic": "topic",
    "Group": "consumer group",
    "TransactionalId": "transactional id",
    "Cluster": "cluster",
}
VERBS = {
    "Read": "read",
    "Write": "write to",
    "Create": "create",
    "Describe": "describe",
    "IdempotentWrite": "produce idempotently on",
}
REFUSED = (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)


@dataclass(frozen=True, slots=True)
class Acl:
    """One ALLOW binding: principal, operation, resource (and its pattern type)."""

    principal: str
    operation: str  # Read, Write, Create, IdempotentWrite
    resource: str  # Topic, Group, TransactionalId, Cluster
    name: str
    pattern: str = "LITERAL"  # or PREFIXED
    why: str = ""

    def kafka_acls(self) -> str:
        """The `kafka-acls.sh` arguments that add it."""
        target = FLAGS[self.resource]
        if self.resource != "Cluster":
            target += " " + shlex.quote(self.name)
        if self.pattern == "PREFIXED":
            target += " --resource-pattern-type prefixed"
        return f"--add --allow-principal {self.principal} --operation {self.operation} {target}"

    def matches(self, resource: str, name: str) -> bool:
        if resource != self.resource:
            return False
        return name.startswith(self.name) if self.pattern == "PREFIXED" else name == self.name

    def describe(self) -> str:
        if self.resource == "Cluster":
            return "the cluster"
        star = "*" if self.pattern == "PREFIXED" else ""
        return f"{NOUNS[self.resource]} {self.name}{star}"


def service_acls(
    settings: Settings, service: str, principal: str, idempotent_write: bool = False
) -> list[Acl]:
    """The ACLs one service needs for this deployment."""
    t = Topics.from_settings(settings)
    acls: list[Acl] = []

    def add(operation: str, resource: str, name: str, why: str, pattern: str = "LITERAL") -> None:
        acls.append(Acl(principal, operation, resource, name, pattern, why))

    if service == "worker":
        add("Read", "Topic", t.visitor, "input")
        add("Read", "Topic", t.lead, "input")
        add("Read", "Topic", t.rekey, "input: events re-keyed by account")
        add("Read", "Topic", t.firmographics, "compacted input, read whole")
        add("Read", "Topic", t.icp, "compacted input, read whole")
        add("Read", "Topic", t.changelog, "account state, restored on assignment")
        add("Write", "Topic", t.hot, "alerts")
        add("Write", "Topic", t.scores, "scores and shadow alerts")
        add("Write", "Topic", t.dlq, "dead letters")
        add("Write", "Topic", t.rekey, "events re-keyed by account")
        add("Write", "Topic", t.changelog, "account state")
        add("Read", "Group", settings.app_id, "consumer group (offsets committed with the outputs)")
        if settings.guarantee == "exactly_once":
            add(
                "Write",
                "TransactionalId",
                f"{settings.app_id}-",
                "a transactional producer per task: <app id>-<partition>",
                "PREFIXED",
            )
    elif service == "router":
        add("Read", "Topic", t.hot, "input: alerts")
        add("Read", "Topic", t.firmographics, "compacted input, read whole (routing rules)")
        add("Read", "Topic", t.deliveries, "delivery log, read back at start and rebalance")
        add("Write", "Topic", t.deliveries, "delivery log")
        add("Write", "Topic", t.route_dlq, "deliveries that failed for good")
        add("Read", "Group", settings.router_id, "consumer group")
    elif service == "publisher":
        for name in t.all():
            add("Create", "Topic", name, "the deployment's topics, created before the services")
        add("Write", "Topic", t.icp, "icp publish, icp promote")
        add("Read", "Topic", t.icp, "icp promote reads the current ICPs")
        add("Write", "Topic", t.firmographics, "firmographics load")
    else:
        raise ValueError(f"no service {service!r}: services are {', '.join(SERVICES)}")
    if idempotent_write:
        add("IdempotentWrite", "Cluster", CLUSTER_NAME, "idempotent producers (Kafka < 3.0)")
    return acls


def table(acls: list[Acl]) -> str:
    """Aligned columns: principal, operation, resource, pattern, why."""
    rows = [("principal", "operation", "resource", "pattern", "why")]
    rows += [
        (a.principal, a.operation, f"{a.resource}:{a.name}", a.pattern.lower(), a.why) for a in acls
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join([*(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])), row[4]]).rstrip()
        for row in rows
    )


def as_json(acls: list[Acl]) -> list[dict[str, Any]]:
    return [asdict(a) for a in acls]


async def create_acls(settings: Settings, acls: list[Acl]) -> None:
    """Create the ACLs (CreateAcls, one request each; an existing one is kept)
    as the configured principal, which needs Alter on the cluster."""
    client = AIOKafkaClient(**client_options(settings))
    await client.bootstrap()
    try:
        node = client.get_random_node()
        for acl in acls:
            request = CreateAclsRequest(
                RESOURCE_CODES[acl.resource],
                acl.name,
                PATTERN_CODES[acl.pattern],
                acl.principal,
                "*",
                OPERATION_CODES[acl.operation],
                ALLOW,
            )
            response = await client.send(node, request)
            for code, message in response.creation_responses:
                if code:
                    raise for_code(code)(message or f"creating {acl.kafka_acls()}")
    finally:
        await client.close()


def refusal(exc: BaseException) -> KafkaError | None:
    """The authorization error behind `exc`, if any: aiokafka's producer wraps
    one its sender meets (a transactional offset commit refused) in a plain
    KafkaError."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, REFUSED):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


async def check_readable(
    settings: Settings, service: str, topics: list[str], timeout: float = 10.0
) -> None:
    """Fetch once, at the end, from partition 0 of each topic: a topic this
    principal may not read is an `AccessDenied` now, rather than a refused
    commit or the next restore."""
    consumer = reader(settings, fetch_max_wait_ms=10)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, 0) for topic in topics]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        deadline = asyncio.get_running_loop().time() + timeout
        # A fetch answered without error sets the partition's high watermark.
        while any(consumer.highwater(tp) is None for tp in partitions):
            try:
                await consumer.getmany(timeout_ms=100)
            except REFUSED as exc:
                raise AccessDenied(explain(exc, service, settings, "Read")) from None
            if asyncio.get_running_loop().time() > deadline:
                return  # slow, not refused: the service finds out later if it is
    finally:
        await stop_consumer(consumer)


def principal_of(settings: Settings) -> str:
    """The principal the broker sees for these settings, as far as they say."""
    if settings.security_protocol.startswith("SASL") and settings.sasl_username:
        return f"User:{settings.sasl_username}"
    if settings.security_protocol == "SSL":
        return "User:<certificate principal>"
    return "User:ANONYMOUS"


def refused_resources(exc: KafkaError) -> list[tuple[str, str]]:
    """(resource type, name) pairs an authorization error names (aiokafka puts
    the topic, topics, group or transactional id in its first argument)."""
    kind = {
        TopicAuthorizationFailedError: "Topic",
        GroupAuthorizationFailedError: "Group",
        TransactionalIdAuthorizationFailed: "TransactionalId",
        ClusterAuthorizationFailedError: "Cluster",
    }.get(type(exc))
    if kind is None:
        return []
    if kind == "Cluster":
        return [("Cluster", CLUSTER_NAME)]
    named = exc.args[0] if exc.args else None
    if isinstance(named, str):
        return [(kind, named)]
    if isinstance(named, set | frozenset | list | tuple):
        return [(kind, str(n)) for n in sorted(named, key=str)]
    return []


def explain(exc: KafkaError, service: str, settings: Settings, operation: str | None = None) -> str:
    """One line: what the service may not do, the broker's error name, and the
    ACL that grants it (from the service's table), as `scorer acls --apply` or
    a kafka-acls command. `operation` narrows a resource the service both
    reads and writes to the operation that was refused."""
    code = getattr(exc, "message", type(exc).__name__)
    principal = principal_of(settings)
    plan = service_acls(settings, service, principal) if service in SERVICES else []
    resources = refused_resources(exc)
    if operation == "Create" and not any(a.operation == "Create" for a in plan):
        return _cannot_create(service, principal, code, [name for _, name in resources], plan)
    missing: list[Acl] = []
    for resource, name in resources:
        granting = [a for a in plan if a.matches(resource, name)]
        if operation is not None and any(a.operation == operation for a in granting):
            granting = [a for a in granting if a.operation == operation]
        if not granting:  # not in the table (a Cluster refusal): what the broker asked for
            granting = [Acl(principal, operation or _default_operation(resource), resource, name)]
        missing += granting
    if not missing:
        return (
            f"the {service} ({principal}) was refused by the broker ({code}: {exc}); "
            f"`scorer acls` lists the ACLs it needs"
        )
    what = "; ".join(f"{VERBS[a.operation]} {a.describe()}" for a in missing)
    commands = " and ".join(f"`kafka-acls ... {a.kafka_acls()}`" for a in missing)
    return (
        f"the {service} ({principal}) may not {what} ({code}): grant it with "
        f"`scorer acls --apply` or {commands}"
    )


def _cannot_create(
    service: str, principal: str, code: str, names: list[str], plan: list[Acl]
) -> str:
    """A service found topics missing that it may not create: they do not exist,
    or it may not see them (Kafka hides a topic from whoever may not describe it)."""
    grants = [a for a in plan if a.resource == "Topic" and a.name in names]
    commands = " and ".join(f"`kafka-acls ... {a.kafka_acls()}`" for a in grants)
    listed = ", ".join(names)
    return (
        f"the {service} ({principal}) cannot see topic(s) {listed} ({code}): create the "
        "deployment's topics first (`scorer icp publish` run by the publisher or an admin "
        "creates them all), and grant the service its ACLs with `scorer acls --apply`"
        + (f" or {commands}" if commands else "")
    )


def _default_operation(resource: str) -> str:
    return {"Cluster": "IdempotentWrite", "TransactionalId": "Write"}.get(resource, "Read")
