"""The ACL table `scorer acls` prints, and a refusal explained from it in one line."""

from __future__ import annotations

from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)
from pydantic import SecretStr

from scorer.config import Settings
from scorer.kafka.acls import service_acls, table
from scorer.kafka.refusals import explain, refusal

PASSWORD = "pw-never-shown-9f2c"


def settings(**overrides: object) -> Settings:
    base: dict[str, object] = {
        "app_id": "eu",
        "topic_prefix": "prod-",
        "router_id": "eu-router",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "worker",
        "sasl_password": SecretStr(PASSWORD),
    }
    return Settings(**{**base, **overrides})  # type: ignore[arg-type]


def bindings(service: str, **overrides: object) -> set[tuple[str, str, str, str]]:
    acls = service_acls(settings(**overrides), service, f"User:{service}")
    return {(a.operation, a.resource, a.name, a.pattern) for a in acls}


def test_worker_acls_are_its_topics_group_and_transactional_ids() -> None:
    """Read on its inputs, compacted inputs, erasures and changelog; Write on its
    outputs and internal topics (erasure progress too); Delete on the re-key topic
    (its processed records purged); Read on its group; Write on the prefixed
    transactional ids."""
    assert bindings("worker") == {
        ("Read", "Topic", "prod-visitor-events", "LITERAL"),
        ("Read", "Topic", "prod-lead-events", "LITERAL"),
        ("Read", "Topic", "prod-eu-events-by-account", "LITERAL"),
        ("Read", "Topic", "prod-firmographics", "LITERAL"),
        ("Read", "Topic", "prod-icp-profiles", "LITERAL"),
        ("Read", "Topic", "prod-eu-accounts-changelog", "LITERAL"),
        ("Write", "Topic", "prod-hot-accounts", "LITERAL"),
        ("Write", "Topic", "prod-account-scores", "LITERAL"),
        ("Write", "Topic", "prod-scorer-dlq", "LITERAL"),
        ("Write", "Topic", "prod-eu-events-by-account", "LITERAL"),
        ("Delete", "Topic", "prod-eu-events-by-account", "LITERAL"),
        ("Write", "Topic", "prod-eu-accounts-changelog", "LITERAL"),
        ("Read", "Topic", "prod-erasures", "LITERAL"),
        ("Write", "Topic", "prod-erasure-progress", "LITERAL"),
        ("Read", "Group", "eu", "LITERAL"),
        ("Write", "TransactionalId", "eu-", "PREFIXED"),
    }


def test_at_least_once_needs_no_transactional_id() -> None:
    """Without transactions the worker's table has no TransactionalId binding."""
    resources = {b[1] for b in bindings("worker", guarantee="at_least_once")}
    assert resources == {"Topic", "Group"}


def test_router_and_publisher_acls() -> None:
    """The router reads alerts, firmographics, its log and erasures, writes its log
    and DLQ; the publisher creates every topic, writes ICPs, firmographics and
    erasure requests, and reads the requests and their progress."""
    assert bindings("router") == {
        ("Read", "Topic", "prod-hot-accounts", "LITERAL"),
        ("Read", "Topic", "prod-firmographics", "LITERAL"),
        ("Read", "Topic", "prod-route-deliveries", "LITERAL"),
        ("Write", "Topic", "prod-route-deliveries", "LITERAL"),
        ("Write", "Topic", "prod-route-dlq", "LITERAL"),
        ("Read", "Topic", "prod-erasures", "LITERAL"),
        ("Read", "Group", "eu-router", "LITERAL"),
    }
    publisher = bindings("publisher")
    assert {b[2] for b in publisher if b[0] == "Create"} == {
        "prod-" + name
        for name in (
            "visitor-events",
            "lead-events",
            "firmographics",
            "icp-profiles",
            "hot-accounts",
            "account-scores",
            "scorer-dlq",
            "eu-events-by-account",
            "eu-accounts-changelog",
            "route-deliveries",
            "route-dlq",
            "icp-collect-identities",
            "icp-collect-identities-changelog",
            "erasures",
            "erasure-progress",
        )
    }
    assert {b for b in publisher if b[0] != "Create"} == {
        ("Write", "Topic", "prod-icp-profiles", "LITERAL"),
        ("Read", "Topic", "prod-icp-profiles", "LITERAL"),
        ("Write", "Topic", "prod-firmographics", "LITERAL"),
        ("Write", "Topic", "prod-erasures", "LITERAL"),
        ("Read", "Topic", "prod-erasures", "LITERAL"),
        ("Read", "Topic", "prod-erasure-progress", "LITERAL"),
    }


def test_collector_acls_are_its_event_topics_its_own_topics_and_group() -> None:
    """The collector writes visitor and lead events, reads and writes its identities
    topic and changelog, reads its group; no transactional id, no Create."""
    assert bindings("collector", collect_id="eu-collect") == {
        ("Write", "Topic", "prod-visitor-events", "LITERAL"),
        ("Write", "Topic", "prod-lead-events", "LITERAL"),
        ("Read", "Topic", "prod-eu-collect-identities", "LITERAL"),
        ("Write", "Topic", "prod-eu-collect-identities", "LITERAL"),
        ("Read", "Topic", "prod-eu-collect-identities-changelog", "LITERAL"),
        ("Write", "Topic", "prod-eu-collect-identities-changelog", "LITERAL"),
        ("Read", "Group", "eu-collect", "LITERAL"),
    }


def test_idempotent_write_only_on_request() -> None:
    """IdempotentWrite on the cluster is printed only with --idempotent-write (old brokers)."""
    acls = service_acls(settings(), "router", "User:router", idempotent_write=True)
    assert [a.resource for a in acls if a.operation == "IdempotentWrite"] == ["Cluster"]
    assert "--operation IdempotentWrite --cluster" in acls[-1].kafka_acls()


def test_table_lists_principal_operation_resource_pattern_and_why() -> None:
    """One row per ACL, under a header, with the prefixed pattern spelled out."""
    lines = table(service_acls(settings(), "worker", "User:worker")).splitlines()
    assert lines[0].split()[:4] == ["principal", "operation", "resource", "pattern"]
    assert len(lines) == 17
    assert any("TransactionalId:eu-" in line and "prefixed" in line for line in lines)


def test_a_refused_read_names_the_topic_and_the_acl() -> None:
    """A refused fetch: the permission, the broker's error, `scorer acls --apply` and the
    kafka-acls arguments, in one line, with no password."""
    line = explain(
        TopicAuthorizationFailedError("prod-visitor-events"), "worker", settings(), "Read"
    )
    assert line.startswith("the worker (User:worker) may not read topic prod-visitor-events")
    assert "(TOPIC_AUTHORIZATION_FAILED)" in line and "scorer acls --apply" in line
    assert "--allow-principal User:worker --operation Read --topic prod-visitor-events" in line
    assert "\n" not in line and PASSWORD not in line


def test_the_operation_picks_read_or_write_on_an_internal_topic() -> None:
    """The changelog is read and written: a refused commit names Write only."""
    error = TopicAuthorizationFailedError({"prod-eu-accounts-changelog"})
    line = explain(error, "worker", settings(), "Write")
    assert "may not write to topic prod-eu-accounts-changelog" in line
    assert "--operation Read" not in line


def test_group_transactional_id_and_cluster_refusals() -> None:
    """A group, a transactional id (matched by its prefixed ACL) and the cluster."""
    group = explain(GroupAuthorizationFailedError("eu"), "worker", settings())
    assert "may not read consumer group eu" in group and "--group eu" in group
    txn = explain(TransactionalIdAuthorizationFailed("eu-3"), "worker", settings())
    assert "may not write to transactional id eu-*" in txn
    assert "--transactional-id eu- --resource-pattern-type prefixed" in txn
    cluster = explain(ClusterAuthorizationFailedError(), "router", settings())
    assert "--operation IdempotentWrite --cluster" in cluster


def test_a_topic_a_service_may_not_create_says_to_create_topics_first() -> None:
    """A topic missing (or hidden) that the worker may not create: create the
    deployment's topics first, and the ACL the worker needs on it."""
    line = explain(
        TopicAuthorizationFailedError({"prod-hot-accounts"}), "worker", settings(), "Create"
    )
    assert "cannot see topic(s) prod-hot-accounts" in line
    assert "scorer icp publish" in line and "--operation Write --topic prod-hot-accounts" in line


def test_refusal_unwraps_the_producers_wrapped_error() -> None:
    """aiokafka's sender wraps a refused transactional offset commit in a KafkaError."""
    try:
        try:
            raise TopicAuthorizationFailedError()
        except TopicAuthorizationFailedError as inner:
            raise KafkaError("Unexpected error during batch delivery") from inner
    except KafkaError as outer:
        assert isinstance(refusal(outer), TopicAuthorizationFailedError)
    assert refusal(KafkaError("connection reset")) is None


def test_a_refused_purge_names_the_delete_acl() -> None:
    """The worker may not delete the re-key topic's records: the line says which ACL."""
    line = explain(
        TopicAuthorizationFailedError("prod-eu-events-by-account"), "worker", settings(), "Delete"
    )
    assert line.startswith(
        "the worker (User:worker) may not delete records of topic prod-eu-events-by-account"
    )
    assert "--operation Delete --topic prod-eu-events-by-account" in line
