"""Settings, read once from ``SCORER_*`` environment variables; frozen.

Each field names its variable; README's configuration table lists them all.
"""

from __future__ import annotations

import os
import re
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from scorer.timefmt import format_duration, parse_duration

_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def env_secret(value: Any) -> SecretStr:
    """A secret in a user's file (routes.yaml, the collector's mapping) is written
    ``${VAR}`` and VAR must be set: the value comes from the environment, never
    from the file. A pydantic `before` validator."""
    if isinstance(value, SecretStr):
        return value
    if not isinstance(value, str):
        raise ValueError("expected an environment reference like ${NAME}")
    found = _ENV_REF.match(value.strip())
    if found is None:
        raise ValueError(
            "secrets are environment references like ${NAME}, never literal in the file"
        )
    resolved = os.environ.get(found.group(1))
    if not resolved:
        raise ValueError(f"environment variable {found.group(1)} is not set")
    return SecretStr(resolved)


class Settings(BaseSettings):
    """Worker and command settings. Durations are written 7d, 24h, 30m, 90s."""

    model_config = SettingsConfigDict(env_prefix="SCORER_", frozen=True, extra="ignore")

    broker: str = Field(
        "kafka://localhost:9092", description="SCORER_BROKER: Kafka bootstrap URL(s)"
    )
    app_id: str = Field(
        "icp-scorer",
        description="SCORER_APP_ID: consumer group, transactional-id prefix, own topics and stores",
    )
    web_port: int = Field(6066, description="SCORER_WEB_PORT: /metrics, /healthz, /readyz")
    # Every interface by default: in a container the probes and the scraper
    # come from outside. On a shared host, bind 127.0.0.1 behind a proxy.
    web_host: str = Field(
        "0.0.0.0",
        description="SCORER_WEB_HOST: the address the worker's and the router's web servers bind",
    )
    web_token: SecretStr | None = Field(
        None,
        description="SCORER_WEB_TOKEN: a bearer token the pages with account data (the "
        "router's /feed and its event stream) require when set",
    )
    web_token_scope: Literal["pages", "pages+metrics", "all"] = Field(
        "pages",
        description="SCORER_WEB_TOKEN_SCOPE: what the token guards: the pages only, the pages "
        "and /metrics, or everything (/healthz and /readyz too)",
    )
    topic_prefix: str = Field("", description="SCORER_TOPIC_PREFIX: put before every topic name")
    topic_partitions: int = Field(
        4, ge=1, description="SCORER_TOPIC_PARTITIONS: for created topics"
    )
    # A production cluster's values: three copies, two of which must hold a write
    # before it is acknowledged (acks=all), so one broker can be down (a rolling
    # upgrade) while every write stays safe. A single local broker needs 1
    # (deploy/local's tooling, the demo and the tests set it).
    replication_factor: int = Field(
        3, ge=1, description="SCORER_REPLICATION_FACTOR: copies of each topic the scorer creates"
    )
    min_insync_replicas: int | None = Field(
        None,
        ge=1,
        description="SCORER_MIN_INSYNC_REPLICAS: min.insync.replicas of each topic the scorer "
        "creates (default 2, or 1 when the replication factor is 1)",
    )
    session_timeout: float = Field(
        10.0,
        ge=6,
        description="SCORER_SESSION_TIMEOUT: seconds before a dead worker's partitions move",
    )
    guarantee: Literal["exactly_once", "at_least_once"] = Field(
        "exactly_once",
        description="SCORER_GUARANTEE: exactly_once (Kafka transactions, one producer per "
        "task) or at_least_once (for brokers without transactions)",
    )
    commit_interval: float = Field(
        0.05,
        gt=0,
        description="SCORER_COMMIT_INTERVAL: seconds between commits under load "
        "(a caught-up worker commits at the end of each batch)",
    )
    # A commit costs the worker and the broker about the same CPU whatever it
    # carries: spacing them out at light load halves that cost for a few tens of
    # milliseconds of alert latency (Kafka Streams waits 100 ms under exactly-once).
    commit_min_gap: float = Field(
        0.05,
        ge=0,
        description="SCORER_COMMIT_MIN_GAP: the least time in seconds from the start of "
        "one commit to the next (0: a worker that keeps up commits after every batch); "
        "a larger gap spends less CPU, in the worker and the broker, at light load",
    )
    rekey_purge_interval: float = Field(
        30.0,
        ge=0,
        description="SCORER_REKEY_PURGE_INTERVAL: seconds between deletions of the re-key "
        "topic's records every task has committed past (DeleteRecords; 0: never, the "
        "topic's retention alone bounds it)",
    )
    max_task_idle: float = Field(
        1.0,
        ge=0,
        description="SCORER_MAX_TASK_IDLE: how long in seconds a task waits for an input "
        "with records to come but none fetched, before it applies the other inputs' "
        "records without them (it applies its inputs in timestamp order)",
    )
    # zstd, not lz4: aiokafka compresses lz4 at level 9 (LZ4-HC), several
    # times slower than its zstd at level 3, which also compresses better
    # (README, "Compression" gives the figures).
    compression: Literal["lz4", "zstd", "snappy", "gzip", "none"] = Field(
        "zstd", description="SCORER_COMPRESSION: codec of every record the worker produces"
    )
    visitor_topic: str = Field("visitor-events", description="SCORER_VISITOR_TOPIC")
    lead_topic: str = Field("lead-events", description="SCORER_LEAD_TOPIC")
    firmographics_topic: str = Field("firmographics", description="SCORER_FIRMOGRAPHICS_TOPIC")
    icp_topic: str = Field("icp-profiles", description="SCORER_ICP_TOPIC")
    hot_topic: str = Field("hot-accounts", description="SCORER_HOT_TOPIC")
    scores_topic: str = Field("account-scores", description="SCORER_SCORES_TOPIC")
    dlq_topic: str = Field("scorer-dlq", description="SCORER_DLQ_TOPIC")
    emit_scores: bool = Field(False, description="SCORER_EMIT_SCORES: publish every score")
    store: Literal["rocksdb", "memory"] = Field("rocksdb", description="SCORER_STORE")
    data_dir: str = Field(
        ".scorer-data",
        description="SCORER_DATA_DIR: RocksDB stores, one per task "
        "under <app id>/<changelog topic>/<partition>",
    )
    max_message_bytes: int = Field(64 * 1024, description="SCORER_MAX_MESSAGE_BYTES: larger -> DLQ")
    dedup_window: float = Field(
        7 * 86400.0, description="SCORER_DEDUP_WINDOW: remembered event ids"
    )
    account_ttl: float = Field(
        90 * 86400.0,
        description="SCORER_ACCOUNT_TTL: an account idle this long in event time starts "
        "fresh, and its state leaves the store (not shorter than SCORER_DEDUP_WINDOW)",
    )
    dlq_retention: float = Field(
        7 * 86400.0,
        gt=0,
        description="SCORER_DLQ_RETENTION: how long scorer-dlq and route-dlq keep a record "
        "(retention.ms at creation); dead letters carry original payloads",
    )
    scores_retention: float = Field(
        7 * 86400.0,
        gt=0,
        description="SCORER_SCORES_RETENTION: how long account-scores keeps a record "
        "(retention.ms at creation)",
    )
    accounts_in_memory: int = Field(
        250_000,
        ge=1_000,
        description="SCORER_ACCOUNTS_IN_MEMORY: decoded accounts a worker keeps, shared "
        "evenly by the input partitions; past it the least recently used are read "
        "from the store again when next needed",
    )
    router_id: str = Field(
        "icp-router", description="SCORER_ROUTER_ID: the router's consumer group"
    )
    router_web_port: int = Field(
        6067, description="SCORER_ROUTER_WEB_PORT: the router's /feed, /metrics, /healthz, /readyz"
    )
    route_max_attempts: int = Field(
        8, ge=1, description="SCORER_ROUTE_MAX_ATTEMPTS: tries per delivery before the route DLQ"
    )
    route_max_age: float = Field(
        3600.0,
        gt=0,
        description="SCORER_ROUTE_MAX_AGE: an alert older than this goes to the route DLQ "
        "instead of its destination",
    )
    collect_id: str = Field(
        "icp-collect",
        description="SCORER_COLLECT_ID: scorer collect's consumer group and the name of its "
        "own topics (<id>-identities, <id>-identities-changelog)",
    )
    collect_web_port: int = Field(
        6068,
        description="SCORER_COLLECT_WEB_PORT: scorer collect's /v1/*, /hooks/hubspot, "
        "/metrics, /healthz, /readyz",
    )
    collect_write_keys: SecretStr | None = Field(
        None,
        description="SCORER_COLLECT_WRITE_KEYS: source=writekey pairs, comma-separated; "
        "the source names label the metrics",
    )
    collect_keep_max_count: int = Field(
        200,
        ge=1,
        description="SCORER_COLLECT_KEEP_MAX_COUNT: events kept per unlinked visitor "
        "(the oldest go first)",
    )
    collect_keep_max_age: float = Field(
        5 * 86400.0,
        gt=0,
        description="SCORER_COLLECT_KEEP_MAX_AGE: event-time age past which a kept event is "
        "dropped; must be below SCORER_DEDUP_WINDOW",
    )
    collect_ack_timeout: float = Field(
        5.0,
        gt=0,
        description="SCORER_COLLECT_ACK_TIMEOUT: seconds a call waits for the broker's "
        "acknowledgement before it is answered 503",
    )
    log_level: str = Field("INFO", description="SCORER_LOG_LEVEL")
    log_format: Literal["text", "json"] = Field(
        "text", description="SCORER_LOG_FORMAT: json = one JSON object per line"
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="SCORER_SECURITY_PROTOCOL"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="SCORER_SASL_MECHANISM"
    )
    sasl_username: str | None = Field(None, description="SCORER_SASL_USERNAME")
    sasl_password: SecretStr | None = Field(None, description="SCORER_SASL_PASSWORD")
    ssl_cafile: str | None = Field(None, description="SCORER_SSL_CAFILE")
    ssl_certfile: str | None = Field(None, description="SCORER_SSL_CERTFILE: client cert (mTLS)")
    ssl_keyfile: str | None = Field(None, description="SCORER_SSL_KEYFILE: client key (mTLS)")
    erasure_salt: SecretStr | None = Field(
        None,
        description="SCORER_ERASURE_SALT: the secret salt of `scorer erase --suppress` hashes; "
        "needed by the command, the workers and the router once a suppression exists, and "
        "never changed after (a new salt matches none of the old hashes)",
    )

    @field_validator(
        "commit_interval",
        "commit_min_gap",
        "rekey_purge_interval",
        "max_task_idle",
        "collect_ack_timeout",
        mode="before",
    )
    @classmethod
    def _seconds(cls, value: Any) -> float:
        if isinstance(value, str) and value and value[-1].isalpha():
            return parse_duration(value)
        return float(value)

    @field_validator(
        "dedup_window",
        "account_ttl",
        "route_max_age",
        "collect_keep_max_age",
        "dlq_retention",
        "scores_retention",
        mode="before",
    )
    @classmethod
    def _duration(cls, value: Any) -> float:
        return value if isinstance(value, float) else parse_duration(value)

    @model_validator(mode="after")
    def _ttl_covers_the_dedup_window(self) -> Settings:
        if self.account_ttl < self.dedup_window:
            raise ValueError(
                "SCORER_ACCOUNT_TTL must not be shorter than SCORER_DEDUP_WINDOW "
                "(an expired account's applied ids would be forgotten too soon)"
            )
        return self

    @model_validator(mode="after")
    def _kept_events_inside_the_dedup_window(self) -> Settings:
        # A stitched event reaches the workers late, with its original time; the
        # workers apply it (once) only while it is inside their dedup window.
        if self.collect_keep_max_age >= self.dedup_window:
            raise ValueError(
                "SCORER_COLLECT_KEEP_MAX_AGE must be below SCORER_DEDUP_WINDOW "
                f"({format_duration(self.collect_keep_max_age)} >= "
                f"{format_duration(self.dedup_window)}): older kept events would reach the "
                "workers past their dedup window and be dropped as expired"
            )
        return self

    def topic(self, name: str) -> str:
        return self.topic_prefix + name

    @property
    def salt(self) -> bytes | None:
        """SCORER_ERASURE_SALT's bytes, or None when unset."""
        secret = self.erasure_salt
        return secret.get_secret_value().encode() if secret is not None else None

    @property
    def min_isr(self) -> int:
        """min.insync.replicas for created topics: the setting, else 2 (1 when
        there is a single copy)."""
        if self.min_insync_replicas is not None:
            return self.min_insync_replicas
        return min(2, self.replication_factor)
