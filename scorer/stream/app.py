"""The faust app: agents that decode, enrich, score and publish.

- `score` consumes visitor-events, lead-events and the re-key topic. An event
  whose Kafka key is not its normalised account domain is first re-sent, keyed
  by domain, to the re-key topic (so it lands on the partition, and worker,
  that owns the account); the others are scored in place.
- The compacted firmographics and icp-profiles topics are read whole by every
  worker, from the start, with plain consumers outside the group, and then
  followed (null values delete). Companies are kept in memory as their JSON
  bytes (about 0.5 KB each) and decoded when first needed. Scoring waits until
  both have been read to their end once.
- Bad input goes to the DLQ with the original bytes; nothing raises out of an
  agent for an input's sake.
- Offsets are committed from the worker's own record of finished records
  (`offsets.OffsetTracker`), and ranges faust skipped are read again with a
  plain consumer (`_reread`): nothing is committed that was not processed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import faust
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from scorer.config import Settings
from scorer.enrichment.domains import normalise_domain
from scorer.enrichment.firmographics import check_record
from scorer.errors import InvalidICPError, InvalidInputError
from scorer.events import decode_event
from scorer.icp.loader import loads_icp
from scorer.scoring.engine import INVALID, SCORED, UNRESOLVED, Engine
from scorer.scoring.output import ACCOUNT_SCORE, HOT_ACCOUNT, build_document
from scorer.scoring.state import AccountState
from scorer.stream import faust_fixes
from scorer.stream.dlq import dlq_headers
from scorer.stream.kafka import Topics, partitions_of, reader, ssl_context
from scorer.stream.metrics import Metrics
from scorer.stream.offsets import OffsetTracker
from scorer.stream.state import (
    BUCKETS_PER_WINDOW,
    BucketedIds,
    load_account,
    store_account,
)

log = logging.getLogger("scorer.worker")
RAW: dict[str, Any] = {
    "key_type": bytes,
    "value_type": bytes,
    "key_serializer": "raw",
    "value_serializer": "raw",
}
COMPANY_CACHE_LIMIT = 200_000
ACCOUNT_CACHE_LIMIT = 50_000  # accounts kept in memory between write-backs
WRITE_BACK_SECONDS = 0.2
SEND_BUFFER_MESSAGES = 2_000
IDLE_CHECK_SECONDS = 5.0
IDLE_SECONDS = 10.0  # records waiting this long on a partition that does not move
REREAD_EVERY_SECONDS = 1.0
REREAD_PATIENCE_SECONDS = 60.0
_MISSING = object()


@dataclass(slots=True)
class PendingAlerts:
    """Alerts of one event: its account's state may be written back once they are acked."""

    key: bytes
    alerts: list[bytes]
    tp: Any
    produced_at: float  # input record timestamp, seconds


class ScorerApp:
    """One worker's faust app, engine and caches."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        faust_fixes.apply()
        self.settings = settings
        self.topics = Topics.from_settings(settings)
        self.engine = Engine(dedup_window=settings.dedup_window)
        self.bucket_width = max(1.0, settings.dedup_window / BUCKETS_PER_WINDOW)
        self.companies: dict[str, Any] = {}
        # Accounts in memory, and those changed since the last write-back (with
        # the partition they belong to). Written back before every offset commit
        # and before partitions are revoked: one record per account, not per event.
        self.account_cache: dict[bytes, tuple[AccountState, BucketedIds]] = {}
        self.dirty: dict[bytes, Any] = {}
        self.metrics = metrics if metrics is not None else Metrics()
        self.icps_ready = asyncio.Event()
        self.firmographics_ready = asyncio.Event()
        self.firmographics: dict[bytes, bytes] = {}  # domain -> checked record, JSON
        self.started = time.monotonic()
        self.assigned_at = self.started
        self.offsets = OffsetTracker()
        # One record at a time: the agent and the re-reader must not interleave
        # the load and store of an account around an awaited alert.
        self.lock = asyncio.Lock()
        self.rereader: AIOKafkaConsumer | None = None  # a plain consumer, outside the group
        self.reread_lock = asyncio.Lock()
        # Partitions revoked and not assigned again: records of these still in
        # hand are dropped, not applied (their next owner resumes from the
        # committed offset, which is before them).
        self.fenced: set[Any] = set()
        self.first_event_s: float | None = None
        self.app = faust.App(
            settings.app_id,
            broker=settings.broker,
            broker_credentials=_credentials(settings),
            store="rocksdb://" if settings.store == "rocksdb" else "memory://",
            datadir=settings.data_dir,
            web_port=settings.web_port,
            web_enabled=True,
            topic_partitions=settings.topic_partitions,
            topic_replication_factor=settings.replication_factor,
            key_serializer="raw",
            value_serializer="raw",
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            # faust's default linger is 0: one produce request per changelog write.
            producer_linger=0.005,
            producer_max_batch_size=256 * 1024,
            table_standby_replicas=0,
            # Startup speed: nothing to wait for on a single-purpose app.
            stream_recovery_delay=0.0,
            broker_commit_interval=1.0,
            # A killed worker's partitions move after this; heartbeats run in
            # faust's consumer thread, so scoring load does not delay them.
            broker_session_timeout=settings.session_timeout,
            broker_heartbeat_interval=min(3.0, settings.session_timeout / 3),
            autodiscover=False,
        )
        # The topics whose commits come from self.offsets (faust_fixes reads
        # `app.scorer` for them and for the write-back hooks).
        self.input_topics = frozenset((self.topics.visitor, self.topics.lead, self.topics.rekey))
        self.app.scorer = self  # type: ignore[attr-defined]
        for topic in self.input_topics:
            self.metrics.gaps_total.labels(topic)
            self.metrics.rereads_total.labels(topic)
        self._define()

    # -- wiring -----------------------------------------------------------------

    def _define(self) -> None:
        app, topics, n = self.app, self.topics, self.settings.topic_partitions
        self.events_topic = app.topic(topics.visitor, topics.lead, topics.rekey, **RAW)
        self.hot_topic = app.topic(topics.hot, **RAW)
        self.scores_topic = app.topic(topics.scores, **RAW)
        self.dlq_topic = app.topic(topics.dlq, **RAW)
        self.rekey_topic = app.topic(topics.rekey, **RAW)
        # bytes key and value types give raw serializers
        self.accounts = app.Table(
            "accounts", default=None, partitions=n, key_type=bytes, value_type=bytes
        )
        app.agent(self.events_topic, name="score")(self._score_agent)
        app.task(self._icp_loader)
        app.task(self._firmographics_loader)
        app.task(self._reread)
        app.timer(IDLE_CHECK_SECONDS)(self._find_idle_partitions)
        app.timer(WRITE_BACK_SECONDS, name="write_back")(self.before_commit)

        # faust makes page handlers methods of a View: (view, request), so closures.
        async def healthz(view: Any, request: Any) -> Any:
            return view.text("ok\n")

        async def readyz(view: Any, request: Any) -> Any:
            if self.is_ready():
                return view.text("ready\n")
            return view.text("not ready\n", status=503)

        async def metrics(view: Any, request: Any) -> Any:
            body = generate_latest(self.metrics.registry)
            return view.bytes(body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        app.page("/healthz")(healthz)
        app.page("/readyz")(readyz)
        app.page("/metrics")(metrics)
        self.metrics.watch(self.lag, self.is_ready)
        app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]
        app.on_partitions_assigned.connect(self._on_assigned)  # type: ignore[arg-type]

    async def before_revoke(self, revoked: Any) -> None:
        """Before faust gives partitions up: no write for a revoked partition may
        reach its changelog after the next owner restored the table. Fence the
        partitions, let the record in flight finish, write back what changed
        (faust then flushes the producer and commits), and forget the accounts:
        another worker may change them while this one does not own them."""
        self.fenced.update(revoked)
        async with self.lock:
            self.write_back()
        self.account_cache.clear()

    async def before_commit(self) -> None:
        """At the start of every offset commit, so it covers only written state,
        and every WRITE_BACK_SECONDS, so a commit does not send a second's worth
        of changelog at once while alerts wait behind it. Under the lock: an
        account whose alert is still unacknowledged must not be written (its
        state in memory already says alerted)."""
        async with self.lock:
            self.write_back()

    def write_back(self) -> None:
        """Changed accounts into the table (record, then id buckets). Callers hold
        the lock, or are inside the processing of a record."""
        if self.offsets.frozen or not self.dirty:
            return
        cache, table = self.account_cache, self.accounts
        for key, tp in self.dirty.items():
            state, ids = cache[key]
            with faust_fixes.in_partition(tp):
                store_account(table, key, state, ids)
        self.dirty.clear()

    async def _on_revoked(self, sender: Any, revoked: Any, **kwargs: Any) -> None:
        self.offsets.forget()

    async def _on_assigned(self, sender: Any, assigned: Any, **kwargs: Any) -> None:
        self.assigned_at = time.monotonic()
        self.fenced.difference_update(assigned)
        mine = sorted({tp.partition for tp in assigned if tp.topic == self.topics.visitor})
        log.info("scoring partitions %s", mine)

    def committed(self, tp: Any) -> int:
        """The committed offset faust read at assignment (0 if none)."""
        consumer = self.app.consumer
        committed = consumer._committed_offset.get(tp) if consumer is not None else None  # type: ignore[attr-defined]
        return int(committed or 0)

    def progress(self, tp: Any) -> int:
        """The offset up to which every record of `tp` is finished."""
        point = self.offsets.commit_point(tp)
        return self.committed(tp) if point is None else point

    async def begin(self, tp: Any, offset: int) -> None:
        """Before a record from the stream: if faust skipped records before it,
        read them first, so each partition is still applied in offset order."""
        expected = self.offsets.done.get(tp)
        if expected is not None and offset <= expected:
            return  # the usual case, without the committed-offset lookup
        skipped = self.offsets.begin(tp, offset, self.committed(tp))
        if skipped is not None:
            log.warning(
                "%s[%d]: offsets %d..%d were skipped; re-reading them",
                tp.topic,
                tp.partition,
                skipped[0],
                skipped[1] - 1,
            )
            self.metrics.gaps_total.labels(tp.topic).inc()
            await self.reread(tp)

    def owns(self, tp: Any) -> bool:
        consumer = self.app.consumer
        return consumer is not None and not self.app.rebalancing and tp in consumer.assignment()

    async def _find_idle_partitions(self) -> None:
        """Records that wait on a partition that has not moved for IDLE_SECONDS
        are handed to the re-reader: faust can drop prefetched records on a
        rebalance without a later record showing the gap."""
        consumer = self.app.consumer
        if consumer is None or self.app.rebalancing or not self.loaded():
            return
        now = time.monotonic()
        for tp in list(consumer.assignment()):
            if tp.topic not in self.input_topics or tp in self.offsets.missing:
                continue
            high = consumer.highwater(tp)
            done = self.progress(tp)
            moved = max(self.offsets.moved_at.get(tp, 0.0), self.assigned_at)
            if high is not None and high > done and now - moved >= IDLE_SECONDS:
                log.warning(
                    "%s[%d]: offsets %d..%d waiting for %.0f s; re-reading them",
                    tp.topic,
                    tp.partition,
                    done,
                    high - 1,
                    now - moved,
                )
                self.offsets.add_missing(tp, done, high)

    async def _reread(self) -> None:
        """Re-read, from a timer, ranges still missing (a re-read that gave up,
        records found waiting by `_find_idle_partitions`)."""
        try:
            while True:
                await asyncio.sleep(REREAD_EVERY_SECONDS)
                if self.loaded():
                    for tp in list(self.offsets.missing):
                        await self.reread(tp)
        finally:
            if self.rereader is not None:
                await self.rereader.stop()

    async def reread(self, tp: Any) -> None:
        """Read `tp`'s missing range with the plain consumer, if this worker owns it."""
        async with self.reread_lock:
            if tp not in self.offsets.missing or not self.owns(tp):
                return
            if self.rereader is None:
                self.rereader = reader(self.settings)
                await self.rereader.start()
            start, end = self.offsets.missing[tp]
            await self._reread_range(self.rereader, tp, start, end)

    async def _reread_range(
        self, consumer: AIOKafkaConsumer, tp: Any, start: int, end: int
    ) -> None:
        ktp = TopicPartition(tp.topic, tp.partition)
        consumer.assign([ktp])
        consumer.seek(ktp, start)
        self.metrics.rereads_total.labels(tp.topic).inc()
        log.info("%s[%d]: re-reading offsets %d..%d", tp.topic, tp.partition, start, end - 1)
        deadline = time.monotonic() + REREAD_PATIENCE_SECONDS
        while await consumer.position(ktp) < end:
            if time.monotonic() > deadline:
                log.warning(
                    "%s[%d]: re-read stopped at %d; retrying",
                    tp.topic,
                    tp.partition,
                    await consumer.position(ktp),
                )
                return
            batch = (await consumer.getmany(ktp, timeout_ms=500, max_records=500)).get(ktp, [])
            for record in batch:
                if record.offset >= end:
                    break
                if not self.owns(tp):
                    return
                with faust_fixes.in_partition(tp):  # the table, as if inside the stream
                    await self.process_event(record, tp, record.timestamp / 1000.0)
                self.offsets.recovered(tp, record.offset + 1)
        if self.owns(tp):
            self.offsets.recovered(tp, end)
            # faust commits only partitions with an entry here; the stream may
            # not have delivered anything on this one since the assignment.
            self.app.consumer._acked[tp]  # type: ignore[attr-defined]
            log.info("%s[%d]: offsets %d..%d re-read", tp.topic, tp.partition, start, end - 1)

    # -- health -------------------------------------------------------------------

    def lag(self) -> list[tuple[tuple[str, int], int]]:
        """Records behind the end of each assigned partition this worker reads."""
        consumer = self.app.consumer
        if consumer is None:
            return []
        behind = []
        for tp in sorted(consumer.assignment()):
            if tp.topic in self.input_topics:
                high = consumer.highwater(tp)
                if high is not None and high >= 0:
                    behind.append(((tp.topic, tp.partition), max(0, high - self.progress(tp))))
        return behind

    def is_ready(self) -> bool:
        app = self.app
        assigned = bool(app.consumer.assignment()) if app.consumer is not None else False
        recovered = app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
        return assigned and recovered and self.loaded() and not app.rebalancing

    # -- agents -------------------------------------------------------------------

    def loaded(self) -> bool:
        """ICPs and firmographics have been read to their end once."""
        return self.icps_ready.is_set() and self.firmographics_ready.is_set()

    async def _score_agent(self, stream: Any) -> None:
        await self.icps_ready.wait()
        await self.firmographics_ready.wait()
        # faust's send buffer holds 100 messages by default and then blocks to
        # flush; the commit flushes anyway, so let it batch more.
        self.app.producer.buffer.max_messages = SEND_BUFFER_MESSAGES
        async for event in stream.events():
            message = event.message
            tp = message.tp
            await self.begin(tp, message.offset)
            await self.process_event(message, tp, message.timestamp)
            if self.first_event_s is None:
                self.first_event_s = time.monotonic() - self.started
                log.info("first event processed %.1f s after start", self.first_event_s)

    async def process_event(self, message: Any, tp: Any, produced_at: float) -> None:
        """Score one record from the stream or the re-reader, then mark it finished."""
        async with self.lock:
            if tp in self.fenced:
                return
            try:
                pending = self.handle_event(message, tp, produced_at)
            except Exception:  # a bug must not stop the partition: dead-letter it
                log.exception("scoring failed; record sent to the DLQ")
                self.dead_letter(message, "internal_error", "see worker log")
                pending = None
            if pending is not None:
                try:
                    await self.publish_alerts(pending)
                except Exception as exc:
                    # The account's state in memory says "alerted": never write it
                    # back or commit past it. Stop; the next start replays from the
                    # last commit and sends the alert again.
                    log.exception("an alert was not acknowledged; stopping without a commit")
                    self.offsets.frozen = True
                    await self.app.crash(exc)
                    return
            self.offsets.finish(tp, message.offset, time.monotonic())

    def handle_event(self, message: Any, tp: Any, produced_at: float) -> PendingAlerts | None:
        """Score one record (its Kafka timestamp `produced_at`, in seconds). Returns
        alerts still to publish, with the state write that must follow them;
        everything else is sent (buffered) here."""
        topics = self.topics
        stream = "lead" if message.topic == topics.lead else "visitor"
        raw = message.value
        if raw is None:
            self.dead_letter(message, "schema", "null value")
            self.metrics.event[stream, INVALID].inc()
            return None
        try:
            event = decode_event(raw, self.settings.max_message_bytes)
        except InvalidInputError as exc:
            self.dead_letter(message, exc.reason, exc.detail)
            self.metrics.event[stream, INVALID].inc()
            return None
        account = event.account
        if account is None:
            self.metrics.event[stream, UNRESOLVED].inc()
            return None
        key = account.encode()
        if message.key != key and message.topic != topics.rekey:
            self.rekey_topic.send_soon(key=key, value=raw, headers=list(message.headers or ()))
            return None
        entry = self.account_cache.get(key)
        if entry is None:
            if len(self.account_cache) >= ACCOUNT_CACHE_LIMIT:
                self.write_back()
                self.account_cache.clear()
            entry = self.account_cache[key] = load_account(self.accounts, key, self.bucket_width)
            if entry[1].changed:  # ids repaired after a torn write-back
                self.dirty[key] = tp
        state = entry[0]
        outcome, scores = self.engine.apply(state, event, self.company(account, key))
        self.metrics.event[stream, outcome].inc()
        now = time.time()
        if outcome == SCORED:
            self.metrics.ingest_to_score.observe(now - produced_at)
        alerts = []
        for score in scores:
            if score.alert:
                alerts.append(orjson.dumps(build_document(score, HOT_ACCOUNT, now)))
                self.metrics.alert(score.icp.id, score.tier or "")
            elif score.hot:
                self.metrics.suppressed(score.icp.id, "cooldown")
        if self.settings.emit_scores:
            for score in scores:
                doc = build_document(score, ACCOUNT_SCORE, now)
                self.scores_topic.send_soon(key=key, value=orjson.dumps(doc))
        if outcome != SCORED:
            return None
        if alerts:
            return PendingAlerts(key, alerts, tp, produced_at)
        self.dirty[key] = tp
        return None

    async def publish_alerts(self, pending: PendingAlerts) -> None:
        """Alerts are acknowledged before the state that records them can be
        written back: a crash in between re-sends an alert (same alert_id) but
        never loses one. Alerts are ~1 % of events, so the round trip is cheap."""
        sent = [await self.hot_topic.send(key=pending.key, value=doc) for doc in pending.alerts]
        await asyncio.gather(*sent)
        latency = time.time() - pending.produced_at
        for _ in sent:
            self.metrics.end_to_end.observe(latency)
        # Written back within WRITE_BACK_SECONDS: a crash before then replays
        # the event and re-sends its alert, same alert_id.
        self.dirty[pending.key] = pending.tp

    def company(self, account: str, key: bytes) -> Any:
        company = self.companies.get(account, _MISSING)
        if company is _MISSING:
            raw = self.firmographics.get(key)
            company = orjson.loads(raw) if raw is not None else None
            if len(self.companies) >= COMPANY_CACHE_LIMIT:
                self.companies.clear()
                self.engine.clear_company_cache()
            self.companies[account] = company
        self.metrics.lookup["miss" if company is None else "hit"].inc()
        return company

    def apply_company_record(self, message: Any) -> None:
        try:
            self.handle_company(message)
        except Exception:
            log.exception("firmographic update failed; record sent to the DLQ")
            self.dead_letter(message, "internal_error", "see worker log")

    def handle_company(self, message: Any) -> None:
        key = message.key
        try:
            domain = normalise_domain(key.decode()) if key else ""
        except UnicodeDecodeError:
            domain = ""
        if not domain or domain.encode() != key:
            self.dead_letter(message, "schema", "key must be the normalised company domain")
            return
        if message.value is None:
            self.firmographics.pop(key, None)
        else:
            try:
                if len(message.value) > self.settings.max_message_bytes:
                    raise InvalidInputError("oversize", f"{len(message.value)} bytes")
                record = check_record(orjson.loads(message.value))
            except orjson.JSONDecodeError:
                self.dead_letter(message, "invalid_json", "not valid UTF-8 JSON")
                return
            except InvalidInputError as exc:
                self.dead_letter(message, exc.reason, exc.detail)
                return
            if record["domain"] != domain:
                self.dead_letter(message, "schema", "domain differs from the key")
                return
            self.firmographics[key] = orjson.dumps(record)
        self.companies.pop(domain, None)
        self.engine.forget_company(domain)

    def dead_letter(self, message: Any, reason: str, detail: str) -> None:
        """Original bytes and headers to the DLQ, with why and where from
        (a faust message or an aiokafka record: both carry these fields)."""
        headers = dlq_headers(
            reason,
            detail,
            message.topic,
            message.partition,
            message.offset,
            list(message.headers or ()),
        )
        self.dlq_topic.send_soon(key=message.key, value=message.value, headers=headers)
        self.metrics.dlq(reason)

    # -- ICPs ---------------------------------------------------------------------

    async def _icp_loader(self) -> None:
        """Read icp-profiles from the beginning, then follow it, on every worker."""
        await self._follow(self.topics.icp, self.apply_icp_record, self.icps_ready)

    async def _firmographics_loader(self) -> None:
        """Read firmographics from the beginning, then follow it, on every worker."""
        await self._follow(
            self.topics.firmographics, self.apply_company_record, self.firmographics_ready
        )

    async def _follow(self, topic: str, apply: Any, ready: asyncio.Event) -> None:
        """Every partition of a compacted topic, with a plain consumer outside the
        group: `ready` is set once the records there at startup are applied."""
        consumer = reader(self.settings, max_partition_fetch_bytes=4 * 1024 * 1024)
        await consumer.start()
        try:
            partitions = await partitions_of(consumer, topic)
            assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(assigned)
            await consumer.seek_to_beginning(*assigned)
            ends = await consumer.end_offsets(assigned)
            started = time.monotonic()
            count = 0
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
                for records in batches.values():
                    for record in records:
                        apply(record)
                    count += len(records)
                    await asyncio.sleep(0)  # let health checks answer during a big backlog
                if not ready.is_set() and all(
                    await asyncio.gather(
                        *(self._caught_up(consumer, tp, ends[tp]) for tp in assigned)
                    )
                ):
                    log.info(
                        "%s: %d records read in %.1f s", topic, count, time.monotonic() - started
                    )
                    ready.set()
        finally:
            await consumer.stop()

    @staticmethod
    async def _caught_up(consumer: AIOKafkaConsumer, tp: TopicPartition, end: int) -> bool:
        return bool(await consumer.position(tp) >= end)

    def apply_icp_record(self, record: Any) -> None:
        icp_id = record.key.decode(errors="replace") if record.key else ""
        if record.value is None:
            if self.engine.remove_icp(icp_id):
                log.info("ICP %s removed", icp_id)
            return
        try:
            document = loads_icp(record.value, source=f"icp-profiles key {icp_id}")
        except InvalidICPError as exc:
            log.error("invalid ICP ignored: %s", exc)
            self.dead_letter(record, "invalid_icp", "; ".join(exc.problems))
            return
        if document.id != icp_id:
            self.dead_letter(record, "schema", "key must be the ICP id")
            return
        if self.engine.set_icp(document):
            log.info("ICP %s v%d active", document.id, document.version)
            self.metrics.icp_active(document.id, document.tiers)


def _credentials(settings: Settings) -> Any:
    """faust's form of the SASL / TLS settings (None for plaintext)."""
    protocol = settings.security_protocol
    if protocol.startswith("SASL"):
        password = settings.sasl_password.get_secret_value() if settings.sasl_password else None
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=password,
            mechanism=settings.sasl_mechanism,
            ssl_context=ssl_context(settings),
        )
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context(settings))
    return None
