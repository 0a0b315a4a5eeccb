"""The per-record work of a task: decode, enrich, score, queue the outputs.

Nothing here talks to Kafka: outputs go to the task's outbox, and the
committer sends them, with the changed state and the input offsets, in one
transaction. Bad input is dead-lettered, never raised.

An event is re-keyed (sent to the re-key topic, on the partition its account
hashes to) when its Kafka key is not its account domain, or when it arrived on
another partition than Kafka's default partitioner (murmur2, as the Java
client and aiokafka use) gives for that domain: librdkafka clients such as
kcat hash with CRC32 by default, and one account's events must meet in one
task.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from scorer.config import Settings
from scorer.errors import ConfigError, InvalidInputError
from scorer.kafka import partition as partition_module
from scorer.kafka.client import KeyPartitions
from scorer.kafka.dlq import dlq_headers
from scorer.kafka.partition import default_partition
from scorer.kafka.topics import Topics
from scorer.native import is_compiled
from scorer.scoring.engine import INVALID, SCORED, Engine, Score
from scorer.scoring.erasure import Erasures
from scorer.scoring.intake import PLACED_ELSEWHERE, Placement, take_event
from scorer.scoring.output import ACCOUNT_SCORE, HOT_ACCOUNT, build_document
from scorer.stream.account_codec import UnknownFormat, unreadable_state
from scorer.stream.metrics import Metrics
from scorer.stream.ordering import INPUT_TIMESTAMP
from scorer.stream.store import AccountStore
from scorer.stream.tables import Firmographics
from scorer.stream.tasks import Task

log = logging.getLogger("scorer.worker")


class Processor(Placement):
    """Turns input records of a task into state changes and outputs.

    Compiled with the core (`processor.pxd`): its per-record path calls the
    engine, the store and the tables at C level, and `belongs` is called from
    `take_event` so."""

    def __init__(
        self,
        settings: Settings,
        topics: Topics,
        engine: Engine,
        firmographics: Firmographics,
        metrics: Metrics,
        partitions: int,
        erasures: Erasures | None = None,
    ) -> None:
        self.settings = settings
        # The erasure requests in force (scorer.stream.erasing): events they cover are dropped.
        self.erasures = erasures if erasures is not None else Erasures(settings.salt)
        self.in_force: Erasures | None = None  # `erasures` while it holds any, per batch
        self.topics = topics
        self.engine = engine
        self.firmographics = firmographics
        self.metrics = metrics
        self.partitions = partitions
        self.max_bytes = settings.max_message_bytes
        self.emit_scores = settings.emit_scores
        # An account's partition: murmur2 of its key, each time when compiled (cheaper
        # than a look-up in a memo of every account); memoised in pure Python.
        self.hash_each = is_compiled(partition_module.__file__)
        self.partition_of = KeyPartitions(partitions)
        self._partition_of = self.partition_of.memo  # looked up inline in `belongs`
        self.now = time.time()
        # Events by (stream, outcome), added to the Prometheus counters once per
        # batch: a counter's inc takes a lock, a dict update does not.
        self._counts: dict[tuple[str, str], int] = {}
        self.first_event_at: float | None = None
        # Topic names, read per record.
        self.lead_topic = topics.lead
        self.rekey_topic = topics.rekey
        # The record being handled: where it is (`belongs` compares), and its
        # account's key and partition (`belongs` sets them).
        self.record_topic = ""
        self.record_key: bytes | None = None
        self.record_partition = 0
        self.key = b""
        self.partition = 0
        # The newest event time scored in the batch at hand (`Task.scored` once a batch).
        self.newest = float("-inf")

    def process(self, task: Task, records: list[Any]) -> None:
        """Records of a task's inputs, in the order they are to be applied (each
        partition's in offset order: scorer.stream.ordering)."""
        self.now = time.time()  # scored_at and ingest-to-score, once per batch
        self.in_force = self.erasures if self.erasures else None  # none: no check per event
        self.newest = float("-inf")
        store = task.store
        try:
            for record in records:
                try:
                    self.handle(task, store, record)
                except UnknownFormat as exc:  # state this version cannot read: stop, say why
                    raise ConfigError(unreadable_state(task.changelog.topic, exc)) from exc
                except Exception:  # a bug must not stop the partition: dead-letter it
                    log.exception("scoring failed; record sent to the DLQ")
                    self.dead_letter(task, record, "internal_error", "see worker log")
        finally:
            if self.newest > float("-inf"):
                task.scored(self.newest)
        if self.first_event_at is None and records:
            self.first_event_at = time.monotonic()
        self.flush_counts()

    def flush_counts(self) -> None:
        event = self.metrics.event
        for key, count in self._counts.items():
            event[key].inc(count)
        self._counts.clear()
        self.firmographics.flush_counts()

    def count(self, stream: str, outcome: str) -> None:
        key = (stream, outcome)
        self._counts[key] = self._counts.get(key, 0) + 1

    def belongs(self, domain: str) -> bool:
        """The record in hand is on its account's key and partition (else it is
        re-keyed): `scorer.scoring.intake.Placement`."""
        key = self.key = domain.encode()
        if self.hash_each:
            self.partition = default_partition(key, self.partitions)
        else:
            found = self._partition_of.get(key)
            self.partition = self.partition_of(key) if found is None else found
        partition = self.partition
        placed: bool = self.record_topic == self.rekey_topic or (
            self.record_key == key and self.record_partition == partition
        )
        return placed

    def handle(self, task: Task, store: AccountStore, record: Any) -> None:
        """One record of the task's (`store` is the task's store)."""
        topic = self.record_topic = record.topic
        stream = "lead" if topic == self.lead_topic else "visitor"
        raw = record.value
        if raw is None:
            self.dead_letter(task, record, "schema", "null value")
            self.count(stream, INVALID)
            return
        self.record_key = record.key
        self.record_partition = record.partition
        try:
            outcome, event, scores = take_event(
                self.engine,
                raw,
                store,
                self.firmographics,
                self.emit_scores,
                self.max_bytes,
                self,
                self.in_force,
            )
        except InvalidInputError as exc:
            self.dead_letter(task, record, exc.reason, exc.detail)
            self.count(stream, INVALID)
            return
        if outcome == PLACED_ELSEWHERE:
            # Its input timestamp in a header: the task it goes to merges its inputs in
            # timestamp order (scorer.stream.ordering). Not as the record's own
            # timestamp: the re-key topic's time retention would then delete a
            # backlog's re-keyed events, weeks old, before they are read. First, before
            # the record's own headers: the queue reads the first of that name, so one
            # an input producer set cannot stand in for it.
            task.send(
                self.rekey_topic,
                self.key,
                raw,
                [(INPUT_TIMESTAMP, b"%d" % record.timestamp), *(record.headers or ())],
                self.partition,
            )
            return
        self.count(stream, outcome)
        if outcome != SCORED:
            return
        key = self.key
        store.dirty.add(key)
        at = event.at
        if at > self.newest:
            self.newest = at
        now = self.now
        produced_at = record.timestamp / 1000.0
        self.metrics.ingest_to_score.observe(now - produced_at)
        if scores:
            self.publish(task, key, scores, now, produced_at)

    def publish(
        self, task: Task, key: bytes, scores: list[Score], now: float, produced_at: float
    ) -> None:
        """An event's alerts (and, with SCORER_EMIT_SCORES, its scores) to the outbox."""
        topics = self.topics
        for score in scores:
            if score.alert:
                alert = orjson.dumps(build_document(score, HOT_ACCOUNT, now))
                if score.icp.shadow:  # never alerts: its would-be alert goes to account-scores
                    task.send(topics.scores, key, alert)
                    self.metrics.shadow_alert(score.icp.id, score.tier or "")
                else:
                    task.send(topics.hot, key, alert)
                    task.alerted(produced_at)
                    self.metrics.alert(score.icp.id, score.tier or "")
            elif score.hot:
                self.metrics.suppressed(score.icp.id, "cooldown")
        if self.emit_scores:
            for score in scores:
                if score.alert and score.icp.shadow:
                    continue  # already there as its would-be alert
                doc = build_document(score, ACCOUNT_SCORE, now)
                task.send(topics.scores, key, orjson.dumps(doc))

    def dead_letter(self, task: Task | None, record: Any, reason: str, detail: str) -> None:
        """Original bytes and headers to the DLQ, with why and where from."""
        headers = dlq_headers(
            reason, detail, record.topic, record.partition, record.offset, record.headers
        )
        if task is not None:
            task.send(self.topics.dlq, record.key, record.value, headers)
        self.metrics.dlq(reason)
