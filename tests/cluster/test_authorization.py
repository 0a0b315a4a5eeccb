"""Least privilege on a real secure cluster (SASL_SSL, SCRAM-SHA-512, StandardAuthorizer
denying what no ACL allows): with the ACLs `scorer acls --apply` creates, the
publishing commands, a worker and a router work; with one of them missing, the
service stops with one line naming the permission and the ACL; a principal with
no ACLs reads and writes nothing."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import ClusterAuthorizationFailedError, TopicAuthorizationFailedError
from pydantic import SecretStr

from scorer.config import Settings
from scorer.kafka.acls import Acl, create_acls, service_acls
from scorer.kafka.client import client_options, partitions_of, producer_options
from tests.cluster_harness import Cluster, start_cluster
from tests.integration.streaming import ICPS, event_records, sample
from tests.kafka_harness import SCORER, Broker, Deployment
from tests.route.services import Services
from tests.route.support import router_env, write_routes

PRINCIPALS = {s: f"User:{s}" for s in ("worker", "router", "publisher")}
ROUTES = """
destinations:
  hook:
    type: webhook
    url: {webhook}/hook
    secret: ${{ROUTE_WEBHOOK_SECRET}}
default: [hook]
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    started = start_cluster(tmp_path_factory.mktemp("secure-cluster"), secure=True)
    yield started
    started.stop()


def login(cluster: Cluster, user: str) -> dict[str, str]:
    """The SCORER_* settings of a SCRAM user on the SASL_SSL listeners."""
    name, password, ca_file = cluster.credentials(user)
    return {
        "SCORER_BROKER": f"kafka://{cluster.sasl_bootstrap}",
        "SCORER_SECURITY_PROTOCOL": "SASL_SSL",
        "SCORER_SASL_MECHANISM": "SCRAM-SHA-512",
        "SCORER_SASL_USERNAME": name,
        "SCORER_SASL_PASSWORD": password,
        "SCORER_SSL_CAFILE": ca_file,
    }


def settings(deployment: Deployment, cluster: Cluster, user: str) -> Settings:
    """The deployment's settings as `user`, for clients made in the test."""
    env = {**deployment.env(), **login(cluster, user)}
    fields = {k[len("SCORER_") :].lower(): v for k, v in env.items() if k.startswith("SCORER_")}
    fields["sasl_password"] = SecretStr(fields["sasl_password"])
    return Settings(**fields)  # type: ignore[arg-type]


def deployment_on(cluster: Cluster, tmp: Path) -> Deployment:
    """A deployment of its own (prefix, app id, router id): ACLs granted for one
    never serve another."""
    deployment = Deployment(Broker(cluster.sasl_bootstrap), tmp)
    deployment.extra_env.update(
        {"SCORER_REPLICATION_FACTOR": "3", "SCORER_ROUTER_ID": f"{deployment.name}-router"}
    )
    return deployment


def run_as(
    deployment: Deployment, cluster: Cluster, user: str, *args: str | Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """A `scorer` command (or a service expected to stop) as `user`; never raises."""
    return subprocess.run(
        [SCORER, *map(str, args)],
        env={
            **deployment.env(SCORER_WEB_PORT="0", SCORER_ROUTER_WEB_PORT="0"),
            **login(cluster, user),
        },
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def read_for(config: Settings, topic: str, seconds: float) -> list[object]:
    """What a plain consumer reads of partition 0 from the start in `seconds`."""
    consumer = AIOKafkaConsumer(
        **client_options(config), group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[object] = []
    try:
        consumer.assign([TopicPartition(topic, 0)])
        deadline = asyncio.get_running_loop().time() + seconds
        while not records and asyncio.get_running_loop().time() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records += batch
    finally:
        await consumer.stop()
    return records


async def produce(config: Settings, records: list[tuple[str, bytes | None, bytes]]) -> None:
    producer = AIOKafkaProducer(**producer_options(config))
    try:
        await producer.start()
        for topic, key, value in records:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


def assert_refused(result: subprocess.CompletedProcess[str], acl: Acl, password: str) -> None:
    """Exit status 1, one line naming the missing ACL, no traceback, no password."""
    assert result.returncode == 1, result.stderr[-3000:]
    named = [line for line in result.stderr.splitlines() if acl.kafka_acls() in line]
    assert len(named) == 1, result.stderr[-3000:]
    assert "scorer acls --apply" in named[0]
    assert "Traceback" not in result.stderr
    assert password not in result.stdout + result.stderr


async def test_services_work_with_exactly_the_acls_scorer_acls_prints(
    cluster: Cluster, services: Services, tmp_path: Path
) -> None:
    """`scorer acls --apply` as admin; then as publisher icp publish and firmographics
    load, as worker a worker, as router a router: events in, alerts out at the webhook,
    no refusal and no password in any log."""
    deployment = deployment_on(cluster, tmp_path)
    principals = [f"--{s}-principal={p}" for s, p in PRINCIPALS.items()]
    applied = run_as(deployment, cluster, "admin", "acls", "--apply", *principals)
    assert applied.returncode == 0, applied.stderr
    assert "ACLs in place" in applied.stderr and "TransactionalId" in applied.stdout
    companies, events = sample(tmp_path, 200, 600, seed=23)
    for icp in ICPS:
        published = run_as(deployment, cluster, "publisher", "icp", "publish", icp)
        assert published.returncode == 0, published.stderr
    loaded = run_as(deployment, cluster, "publisher", "firmographics", "load", companies)
    assert loaded.returncode == 0, loaded.stderr
    deployment.extra_env.update(router_env(services))
    worker = deployment.start_worker(**login(cluster, "worker"))
    routes = write_routes(tmp_path / "routes.yaml", services, ROUTES)
    router = deployment.start_router(routes, **login(cluster, "router"))
    try:
        worker.wait_ready(90)
        router.wait_ready(90)
        await produce(settings(deployment, cluster, "admin"), event_records(deployment, events))
        deadline = asyncio.get_running_loop().time() + 90
        while not services.webhook.posts:
            assert asyncio.get_running_loop().time() < deadline, router.log()
            await asyncio.sleep(0.2)
    finally:
        deployment.stop_all()
    for service, user in ((worker, "worker"), (router, "router")):
        log = service.log()
        assert cluster.credentials(user)[1] not in log
        assert "AUTHORIZATION_FAILED" not in log and "Traceback" not in log


def dropping(service: str, operation: str, resource: str, suffix: str) -> Callable[[Acl], bool]:
    return lambda a: a.operation == operation and a.resource == resource and a.name.endswith(suffix)


@pytest.mark.parametrize(
    ("service", "missing"),
    [
        ("worker", dropping("worker", "Read", "Topic", "visitor-events")),
        ("worker", dropping("worker", "Write", "Topic", "hot-accounts")),
        ("worker", dropping("worker", "Read", "Group", "")),
        ("worker", dropping("worker", "Write", "TransactionalId", "")),
        ("router", dropping("router", "Read", "Topic", "hot-accounts")),
        ("router", dropping("router", "Read", "Group", "")),
        ("router", dropping("router", "Write", "Topic", "route-deliveries")),
        ("publisher", dropping("publisher", "Write", "Topic", "icp-profiles")),
    ],
    ids=[
        "worker-input-read",
        "worker-output-write",
        "worker-group",
        "worker-transactional-id",
        "router-input-read",
        "router-group",
        "router-log-write",
        "publisher-icp-write",
    ],
)
async def test_each_missing_acl_stops_the_service_with_one_line(
    cluster: Cluster, tmp_path: Path, service: str, missing: Callable[[Acl], bool]
) -> None:
    """Every ACL of the service but one: it exits 1 with one line naming the permission
    and the ACL that grants it, without a traceback or its password."""
    deployment = deployment_on(cluster, tmp_path)
    admin = settings(deployment, cluster, "admin")
    acls = service_acls(admin, service, PRINCIPALS[service])
    dropped = [a for a in acls if missing(a)]
    assert len(dropped) == 1
    await create_acls(admin, [a for a in acls if a not in dropped])
    if service != "publisher":
        published = run_as(deployment, cluster, "admin", "icp", "publish", ICPS[0])
        assert published.returncode == 0, published.stderr
    if service == "router":  # an alert to deliver (and to record in the delivery log)
        alert = {"alert_id": "a-1", "account": {"domain": "acme.example"}, "tier": "A"}
        await produce(admin, [(deployment.topic("hot-accounts"), b"acme", orjson.dumps(alert))])
        routes = tmp_path / "routes.yaml"
        routes.write_text("destinations:\n  feed: {type: feed}\ndefault: [feed]\n")
        command: tuple[str | Path, ...] = ("route", "--routes", routes)
    elif service == "worker":
        command = ("worker",)
    else:
        command = ("icp", "publish", ICPS[0])
    result = run_as(deployment, cluster, service, *command, timeout=90)
    assert_refused(result, dropped[0], cluster.credentials(service)[1])


async def test_a_principal_without_acls_reads_and_writes_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    """outsider (no ACLs) sees none of the deployment's topics, reads nothing of a
    record admin wrote and reads back, cannot write one, and its worker stops with the
    clear line."""
    deployment = deployment_on(cluster, tmp_path)
    published = run_as(deployment, cluster, "admin", "icp", "publish", ICPS[0])
    assert published.returncode == 0, published.stderr
    topic = deployment.topic("visitor-events")
    await produce(settings(deployment, cluster, "admin"), [(topic, b"k", b"{}")])
    outsider = settings(deployment, cluster, "outsider")
    admin = AIOKafkaAdminClient(**client_options(outsider))
    await admin.start()
    try:
        assert not [t for t in await admin.list_topics() if t.startswith(deployment.prefix)]
    finally:
        await admin.close()
    with pytest.raises(TopicAuthorizationFailedError):
        await partitions_of(client_options(outsider), topic)
    assert await read_for(settings(deployment, cluster, "admin"), topic, 10)  # it is there
    assert not await read_for(outsider, topic, 3)
    # Its idempotent producer cannot even start: Write on no topic (KIP-679); a plain
    # one starts, and its send is refused.
    with pytest.raises(ClusterAuthorizationFailedError):
        await produce(outsider, [(deployment.topic("hot-accounts"), b"k", b"{}")])
    plain = AIOKafkaProducer(**client_options(outsider), enable_idempotence=False, acks=1)
    await plain.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await plain.send_and_wait(deployment.topic("hot-accounts"), b"{}", key=b"k")
    finally:
        await plain.stop()
    worker = run_as(deployment, cluster, "outsider", "worker", timeout=90)
    assert worker.returncode == 1
    assert "the worker (User:outsider) cannot see topic(s)" in worker.stderr
    assert "Traceback" not in worker.stderr


async def test_without_delete_on_the_rekey_topic_the_worker_warns_once_and_goes_on(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Every ACL of the worker but Delete on the re-key topic, and events not keyed by
    account (so re-keyed): the worker scores them all, says once which ACL would let it
    purge the topic, and keeps running (the topic's retention bounds it instead)."""
    deployment = deployment_on(cluster, tmp_path)
    admin = settings(deployment, cluster, "admin")
    acls = service_acls(admin, "worker", PRINCIPALS["worker"])
    dropped = [a for a in acls if a.operation == "Delete"]
    assert len(dropped) == 1 and dropped[0].name.endswith("-events-by-account")
    await create_acls(admin, [a for a in acls if a not in dropped])
    companies, events = sample(tmp_path, 100, 300, seed=29)
    for args in (("icp", "publish", ICPS[0]), ("firmographics", "load", companies)):
        done = run_as(deployment, cluster, "admin", *args)
        assert done.returncode == 0, done.stderr
    worker = deployment.start_worker(
        SCORER_EMIT_SCORES="true", SCORER_REKEY_PURGE_INTERVAL="1s", **login(cluster, "worker")
    )
    try:
        worker.wait_ready(90)
        await produce(admin, event_records(deployment, events, keyed=False))
        deadline = asyncio.get_running_loop().time() + 90
        while "may not delete records of topic" not in worker.log():
            assert asyncio.get_running_loop().time() < deadline, worker.log()[-3000:]
            await asyncio.sleep(0.5)
        await asyncio.sleep(3)  # more purges would be due: none is tried
        assert worker.status("/readyz") == 200
    finally:
        deployment.stop_all()
    log = worker.log()
    warned = [line for line in log.splitlines() if "may not delete records of topic" in line]
    assert len(warned) == 1, warned
    assert dropped[0].kafka_acls() in warned[0]
    assert "Traceback" not in log and cluster.credentials("worker")[1] not in log
