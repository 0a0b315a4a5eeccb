"""A refusal by the broker explained: which permission the service lacked and
the ACL that grants it, in one line, from the service's table in
`scorer.kafka.acls`. The services stop on it (retrying cannot help); the
publishing commands print it. No credential ever goes into the line.
"""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)

from scorer.config import Settings
from scorer.errors import AccessDenied
from scorer.kafka.acls import CLUSTER_NAME, SERVICES, Acl, principal_of, service_acls
from scorer.kafka.client import reader, stop_consumer

VERBS = {
    "Read": "read",
    "Write": "write to",
    "Create": "create",
    "Delete": "delete records of",
    "Describe": "describe",
    "IdempotentWrite": "produce idempotently on",
}

REFUSED = (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)


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
