"""The ACLs each service needs, and `scorer acls`, which prints or creates them.

One table, computed from the deployment's settings (topic prefix, app id,
router id, topic names, guarantee), serves both `scorer acls` (a table,
kafka-acls.sh commands or JSON; `--apply` creates them with CreateAcls) and
the services' own explanation of a refusal (`scorer.kafka.refusals`).

Least privilege, as measured against Kafka's StandardAuthorizer by
tests/cluster/test_authorization.py (each ACL removed in turn stops the
service):
- the worker reads its inputs (visitor, lead, re-key), the compacted inputs
  it reads whole (firmographics, ICPs) and its changelog (restores); writes
  alerts, scores, dead letters, re-keyed events and the changelog; reads its
  consumer group; writes the transactional ids `<app id>-<partition>` (a
  prefixed ACL; exactly-once only); deletes the re-key topic's processed
  records (without it the worker runs on, and the topic's retention alone
  bounds it: `scorer.stream.purging`);
- the router reads hot-accounts, firmographics and its delivery log; writes
  the delivery log and the route DLQ; reads its consumer group;
- the collector writes visitor and lead events, its identities topic and
  its stitching changelog, reads those two back, and reads its consumer group
  (its producer is idempotent, not transactional: no transactional id);
- the worker also reads the erasure requests whole and writes its tasks'
  progress on them; the router reads the requests whole;
- the publishing commands (`icp publish|promote`, `firmographics load`,
  `erase`) create the deployment's topics, write ICPs, firmographics and
  erasure requests, and read ICPs, the requests and their progress.
Topics are created by the publishing principal (or an admin) before the
services start: the long-running services get no Create. Read and Write
imply Describe, so no Describe ACL is listed. No IdempotentWrite on the
cluster either: since Kafka 3.0 (KIP-679) Write on any topic lets a
producer be idempotent; `--idempotent-write` adds it for older brokers.

aiokafka 0.14's admin client has no create_acls: the request goes through
its public client (`AIOKafkaClient.send`) and protocol classes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
from dataclasses import asdict, dataclass
from typing import Any

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import ClusterAuthorizationFailedError, for_code
from aiokafka.protocol.admin import CreateAclsRequest

from scorer.config import Settings
from scorer.kafka.client import bootstrap_servers, client_options
from scorer.kafka.topics import Topics

SERVICES = ("worker", "router", "collector", "publisher")
RESOURCE_CODES = {"Topic": 2, "Group": 3, "Cluster": 4, "TransactionalId": 5}
OPERATION_CODES = {
    "Read": 3,
    "Write": 4,
    "Create": 5,
    "Delete": 6,
    "Describe": 8,
    "IdempotentWrite": 12,
}
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


@dataclass(frozen=True, slots=True)
class Acl:
    """One ALLOW binding: principal, operation, resource (and its pattern type)."""

    principal: str
    operation: str  # Read, Write, Create, Delete, IdempotentWrite
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
        add("Read", "Topic", t.erasures, "erasure requests, read whole")
        add("Write", "Topic", t.hot, "alerts")
        add("Write", "Topic", t.scores, "scores and shadow alerts")
        add("Write", "Topic", t.dlq, "dead letters")
        add("Write", "Topic", t.rekey, "events re-keyed by account")
        add("Delete", "Topic", t.rekey, "processed re-keyed events purged (DeleteRecords)")
        add("Write", "Topic", t.changelog, "account state")
        add("Write", "Topic", t.erasure_progress, "which requests each task has applied")
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
        add("Read", "Topic", t.erasures, "erasure requests, read whole (feed, delivery log)")
        add("Read", "Group", settings.router_id, "consumer group")
    elif service == "collector":
        add("Write", "Topic", t.visitor, "visitor events (direct and stitched)")
        add("Write", "Topic", t.lead, "lead events (identify calls, CRM webhooks)")
        add("Read", "Topic", t.identities, "input: visits and links, keyed by identity")
        add("Write", "Topic", t.identities, "visits and links, keyed by identity")
        add("Read", "Topic", t.identities_changelog, "stitching state, restored on assignment")
        add("Write", "Topic", t.identities_changelog, "stitching state")
        add("Read", "Group", settings.collect_id, "consumer group of the stitch stage")
    elif service == "publisher":
        for name in t.all():
            add("Create", "Topic", name, "the deployment's topics, created before the services")
        add("Write", "Topic", t.icp, "icp publish, icp promote")
        add("Read", "Topic", t.icp, "icp promote reads the current ICPs")
        add("Write", "Topic", t.firmographics, "firmographics load")
        add("Write", "Topic", t.erasures, "scorer erase")
        add("Read", "Topic", t.erasures, "scorer erase --status finds the request")
        add("Read", "Topic", t.erasure_progress, "scorer erase --status")
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


def principal_of(settings: Settings) -> str:
    """The principal the broker sees for these settings, as far as they say."""
    if settings.security_protocol.startswith("SASL") and settings.sasl_username:
        return f"User:{settings.sasl_username}"
    if settings.security_protocol == "SSL":
        return "User:<certificate principal>"
    return "User:ANONYMOUS"


def add_acls_command(commands: Any) -> None:
    """`scorer acls` on the CLI's subcommands."""
    acls = commands.add_parser(
        "acls", help="print (or --apply) the ACLs each service needs for this deployment"
    )
    acls.add_argument(
        "--service",
        action="append",
        choices=SERVICES,
        help="only this service's ACLs (repeatable; default: all four)",
    )
    acls.add_argument("--worker-principal", default="User:worker", metavar="PRINCIPAL")
    acls.add_argument("--router-principal", default="User:router", metavar="PRINCIPAL")
    acls.add_argument("--collector-principal", default="User:collector", metavar="PRINCIPAL")
    acls.add_argument(
        "--publisher-principal",
        default="User:publisher",
        metavar="PRINCIPAL",
        help="who runs icp publish/promote and firmographics load (and creates the topics)",
    )
    acls.add_argument(
        "--format",
        choices=("table", "commands", "json"),
        default="table",
        help="table (default), kafka-acls.sh commands, or JSON",
    )
    acls.add_argument(
        "--idempotent-write",
        action="store_true",
        help="add IdempotentWrite on the cluster (brokers older than Kafka 3.0)",
    )
    acls.add_argument(
        "--apply",
        action="store_true",
        help="create them through the admin API, as the SCORER_SASL_USERNAME principal (an admin)",
    )
    acls.set_defaults(run=run_acls_command)


def run_acls_command(args: argparse.Namespace) -> int:
    settings = Settings()
    principals = {
        "worker": args.worker_principal,
        "router": args.router_principal,
        "collector": args.collector_principal,
        "publisher": args.publisher_principal,
    }
    acls = [
        acl
        for service in args.service or list(principals)
        for acl in service_acls(settings, service, principals[service], args.idempotent_write)
    ]
    if args.format == "json":
        print(json.dumps(as_json(acls), indent=2))
    elif args.format == "commands":
        target = (
            f"--bootstrap-server {bootstrap_servers(settings)} --command-config admin.properties"
        )
        for acl in acls:
            print(f"kafka-acls.sh {target} {acl.kafka_acls()}")
    else:
        print(table(acls))
    if not args.apply:
        return 0
    try:
        asyncio.run(create_acls(settings, acls))
    except ClusterAuthorizationFailedError:
        print(
            f"scorer: {principal_of(settings)} may not create ACLs "
            "(CLUSTER_AUTHORIZATION_FAILED): run `scorer acls --apply` with an admin's "
            "credentials (a super user, or Alter on the cluster)",
            file=sys.stderr,
        )
        return 1
    print(f"{len(acls)} ACLs in place (created as {principal_of(settings)})", file=sys.stderr)
    return 0
