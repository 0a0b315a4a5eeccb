"""`scorer route`: hot-accounts → rules → a lane per destination.

The cycle: getmany from hot-accounts (read_committed, consumer group
`SCORER_ROUTER_ID`) → for each alert, the destinations its rules pick, less
those the delivery log already holds → each destination's lane. About once a
second, and on a rebalance or shutdown, a commit: flush the delivery log and
DLQ records, then commit each partition up to its first alert whose
deliveries are not all finished. A lane that holds `queue_limit` alerts
pauses the input until it drains; the other lanes keep going.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from prometheus_client import CollectorRegistry

from scorer.config import Settings
from scorer.enrichment.companies import CompanyTable
from scorer.errors import AccessDenied, InvalidInputError
from scorer.kafka.client import (
    client_options,
    header,
    partitions_of,
    producer_options,
    reader,
    stop_consumer,
)
from scorer.kafka.follower import Follower
from scorer.kafka.refusals import REFUSED, check_readable, explain
from scorer.kafka.topics import Topics, ensure_topics
from scorer.logs import BrokerOutage
from scorer.route.crm import HubSpotSender, SalesforceSender
from scorer.route.delivery import DeliveryLog, Lane, Limits, Pending
from scorer.route.destinations import Job, Sender, SlackSender, WebhookSender
from scorer.route.erasures import RouteErasures
from scorer.route.feed import FeedHub, FeedSender
from scorer.route.metrics import RouteMetrics
from scorer.route.rules import (
    FeedDestination,
    HubSpotDestination,
    RoutesDocument,
    SalesforceDestination,
    SlackDestination,
    WebhookDestination,
    destinations_for,
)
from scorer.service.runner import raise_failed, until
from scorer.service.web import WebServer

log = logging.getLogger("scorer.route")
COMMIT_SECONDS = 1.0
MAX_BATCH = 500


def make_sender(config: Any, hub: FeedHub) -> Sender:
    if isinstance(config, WebhookDestination):
        return WebhookSender(config)
    if isinstance(config, SlackDestination):
        return SlackSender(config)
    if isinstance(config, HubSpotDestination):
        return HubSpotSender(config)
    if isinstance(config, SalesforceDestination):
        return SalesforceSender(config)
    if isinstance(config, FeedDestination):
        return FeedSender(config, hub)
    raise TypeError(f"unknown destination {config!r}")


def _alert_document(value: bytes | None) -> dict[str, Any] | None:
    """The alert, if the bytes are one the rules can read: an alert id, an account with
    a domain, and (when present) icp and score objects."""
    try:
        alert = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError:
        return None
    if not isinstance(alert, dict) or not isinstance(alert.get("alert_id"), str):
        return None
    account = alert.get("account")
    if not isinstance(account, dict) or not isinstance(account.get("domain"), str):
        return None
    for key in ("icp", "score", "trigger"):  # optional, but objects when present
        if key in alert and not isinstance(alert[key], dict):
            return None
    return alert


def _header(headers: Any, name: str) -> str | None:
    value = header(headers, name)
    return None if value is None else value.decode(errors="replace")


class Router(ConsumerRebalanceListener):  # type: ignore[misc]
    """One `scorer route` process."""

    def __init__(
        self,
        settings: Settings,
        routes: RoutesDocument,
        registry: CollectorRegistry | None = None,
        outage: BrokerOutage | None = None,
    ) -> None:
        self.settings = settings
        self.outage = outage if outage is not None else BrokerOutage()
        self.routes = routes
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = RouteMetrics(self.registry, routes.destinations)
        self.topics = Topics.from_settings(settings)
        self.hot_topic = self.topics.hot
        self.log = DeliveryLog(self.topics.deliveries)
        self.dlq_topic = self.topics.route_dlq
        self.hub = FeedHub(
            max(
                (d.keep for d in routes.destinations.values() if isinstance(d, FeedDestination)),
                default=200,
            )
        )
        self.senders = {name: make_sender(d, self.hub) for name, d in routes.destinations.items()}
        limits = Limits(settings.route_max_attempts, settings.route_max_age)
        self.lanes = {
            name: Lane(
                name,
                self.senders[name],
                d.concurrency,
                d.rate_per_second,
                d.queue_limit,
                limits,
                self.metrics,
                self.finish,
                lambda name, job: not job.replayed and self.log.seen(job.alert_id, name),
            )
            for name, d in routes.destinations.items()
        }
        # The workers dead-letter bad firmographic records; the router skips them.
        self.companies = CompanyTable(settings.max_message_bytes)
        self.pending: dict[int, Pending] = {}
        self.unacked: list[asyncio.Future[Any]] = []  # dead letters sent by `dispatch`
        self.stopping = asyncio.Event()
        self.failure: BaseException | None = None  # an assignment that could not be taken on
        self.assigned = False
        self.pauses = 0
        self.pause_logged = -60.0
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.log_reader: AIOKafkaConsumer | None = None
        self.background: list[asyncio.Task[Any]] = []
        self.follower = Follower(
            settings,
            settings.topic(settings.firmographics_topic),
            self._company_record,
            lambda record, reason, detail: None,
        )
        self.erasures = RouteErasures(settings, self.hub, self.log)
        self.erasure_follower = Follower(
            settings, self.topics.erasures, self.erasures.apply, lambda record, reason, detail: None
        )
        self.web = WebServer(
            settings.router_web_port,
            self.registry,
            self.not_ready,
            self.hub.routes(),
            host=settings.web_host,
            token=settings.web_token,
            scope=settings.web_token_scope,
        )

    def _company_record(self, record: Any, dead_letter: Any) -> None:
        with contextlib.suppress(InvalidInputError):
            self.companies.apply(record.key, record.value)

    def not_ready(self) -> str | None:
        if not self.follower.loaded.is_set() or not self.erasure_follower.loaded.is_set():
            return "reading firmographics and erasure requests"
        if not self.assigned:
            return "waiting for partitions of " + self.hot_topic
        return None

    def stop(self) -> None:
        self.stopping.set()

    # -- start-up ------------------------------------------------------------------

    async def start(self) -> None:
        await self.web.start()
        await self._ensure_topics()
        options = client_options(self.settings)
        # The worker's producer settings, with a linger: deliveries finish one by one.
        self.producer = AIOKafkaProducer(**{**producer_options(self.settings), "linger_ms": 5})
        await self.producer.start()
        for sender in self.senders.values():
            await sender.start()
        self.background.append(asyncio.create_task(self.follower.run()))
        self.background.append(asyncio.create_task(self.erasure_follower.run()))
        self.background.append(asyncio.create_task(self.erasures.run(self.producer)))
        self.log_reader = reader(self.settings)
        await self.log_reader.start()
        parts = await partitions_of(options, self.log.topic)
        self.log_reader.assign([TopicPartition(self.log.topic, p) for p in sorted(parts)])
        started = time.monotonic()
        try:
            count = await self._catch_up_log()
        except REFUSED as exc:
            raise AccessDenied(explain(exc, "router", self.settings, "Read")) from None
        log.info("delivery log: %d records read in %.1f s", count, time.monotonic() - started)
        loaded = asyncio.gather(self.follower.loaded.wait(), self.erasure_follower.loaded.wait())
        await until(loaded, *self.background)
        self.consumer = AIOKafkaConsumer(
            **options,
            group_id=self.settings.router_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            session_timeout_ms=int(self.settings.session_timeout * 1000),
            max_poll_interval_ms=300_000,
        )
        await self.consumer.start()
        self.consumer.subscribe([self.hot_topic], listener=self)
        for lane in self.lanes.values():
            lane.start()
        log.info(
            "routing %s to %s; feed on http://%s:%d/feed%s",
            self.hot_topic,
            ", ".join(self.routes.destinations),
            self.web.host,
            self.web.port,
            " (SCORER_WEB_TOKEN required)" if self.settings.web_token else "",
        )

    async def _ensure_topics(self) -> None:
        try:
            await ensure_topics(self.settings, self.topics, self.topics.router())
        except REFUSED as exc:  # missing, and this principal may not create them
            raise AccessDenied(explain(exc, "router", self.settings, "Create")) from None
        # An empty delivery log is never fetched at start: find a missing Read
        # now rather than at the first restart that needs the log.
        await check_readable(self.settings, "router", [self.log.topic])

    async def _catch_up_log(self) -> int:
        """Read the delivery log from where this process left it to its end."""
        consumer = self.log_reader
        assert consumer is not None
        parts = list(consumer.assignment())
        ends = await consumer.end_offsets(parts)
        count = 0
        while True:
            positions = {tp: await consumer.position(tp) for tp in parts}
            if all(positions[tp] >= ends[tp] for tp in parts):
                return count
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for records in batches.values():
                for record in records:
                    self.log.apply(record, self.senders)
                count += len(records)

    # -- rebalance -----------------------------------------------------------------

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.assigned = False
        with contextlib.suppress(Exception):  # the new owner resumes from the last commit
            await self.commit()
        for tp in revoked:
            self.pending.pop(tp.partition, None)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        try:
            await self._take_on(assigned)
        except REFUSED as exc:
            # Not raised: aiokafka would log it with a traceback and go on. The
            # cycle raises it, and the router stops with one line.
            self.failure = AccessDenied(explain(exc, "router", self.settings, "Read"))

    async def _take_on(self, assigned: list[TopicPartition]) -> None:
        consumer = self.consumer
        assert consumer is not None
        await self._catch_up_log()
        committed: dict[int, int] = {}
        # Every partition's commit, to drop the log entries no replay can reach;
        # the consumer's metadata knows them, no admin round trip needed.
        partitions = consumer.partitions_for_topic(self.hot_topic) or await partitions_of(
            client_options(self.settings), self.hot_topic
        )
        for p in partitions:
            offset = await consumer.committed(TopicPartition(self.hot_topic, p))
            if offset is not None:
                committed[p] = offset
        self.log.prune(committed)
        for tp in assigned:
            self.pending.setdefault(tp.partition, Pending())
        self.assigned = True
        log.info("assigned %s", sorted(tp.partition for tp in assigned))

    # -- the cycle -------------------------------------------------------------------

    async def run(self) -> None:
        consumer = self.consumer
        assert consumer is not None
        last_commit = time.monotonic()
        while not self.stopping.is_set():
            self._check_failures()
            self._flow_control(consumer)
            batches = await consumer.getmany(timeout_ms=200, max_records=MAX_BATCH)
            for tp, records in batches.items():
                pending = self.pending.setdefault(tp.partition, Pending())
                for record in records:
                    await self.dispatch(record, pending)
            now = time.monotonic()
            if now - last_commit >= COMMIT_SECONDS:
                await self.commit()
                self._update_lag(consumer)
                last_commit = now
        await self.drain()

    def _check_failures(self) -> None:
        """Stop on what cannot be retried: a refused delivery-log or DLQ write (a
        lane), a refused assignment, a failed follower."""
        raise_failed(self.background)
        if self.failure is not None:
            raise self.failure
        for lane in self.lanes.values():
            if lane.refused is not None:
                raise AccessDenied(explain(lane.refused, "router", self.settings, "Write"))

    def _flow_control(self, consumer: AIOKafkaConsumer) -> None:
        """Pause reading while a lane is full, resume once none is. The consumer's own
        paused set is the state: it survives a rebalance, which a flag here would not."""
        full = [name for name, lane in self.lanes.items() if lane.full()]
        paused = consumer.paused()
        if full:
            unpaused = consumer.assignment() - paused
            if not unpaused:
                return
            consumer.pause(*unpaused)
            self.pauses += 1
            now = time.monotonic()
            if now - self.pause_logged >= 60:  # a state change, not a line per pause
                log.warning(
                    "queue of %s full: reading paused until it drains (%d pauses in the "
                    "last minute)",
                    ", ".join(full),
                    self.pauses,
                )
                self.pause_logged, self.pauses = now, 0
        elif paused:
            consumer.resume(*paused)

    def _update_lag(self, consumer: AIOKafkaConsumer) -> None:
        lag = 0
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            pending = self.pending.get(tp.partition)
            if highwater is not None and pending is not None and pending.next is not None:
                lag += max(0, highwater - pending.next)
        self.metrics.lag.set(lag)

    async def dispatch(self, record: Any, pending: Pending) -> None:
        """One hot-accounts record into the lanes of the destinations it goes to."""
        alert = _alert_document(record.value)
        if alert is None:
            self.metrics.alert["invalid"].inc()
            detail = "not an alert document"
            # Not awaited here (a run of bad records would go one round trip
            # at a time): `commit` checks the ack before it commits the offset.
            self.unacked.append(
                await self._dead_letter(record.value, record, "", "invalid_json", detail)
            )
            pending.add(record.offset, 0)
            return
        if self.erasures.covers(alert):  # scored before an erasure, read after it
            self.metrics.alert["erased"].inc()
            pending.add(record.offset, 0)
            return
        domain = alert["account"]["domain"]
        company = self.companies.get(domain)
        replayed = _header(record.headers, "route-destination")
        if replayed in self.lanes:  # a route-DLQ record copied back: its destination only
            names = [replayed]
        else:
            names = destinations_for(self.routes, alert, company)
        self.metrics.alert["routed" if names else "unrouted"].inc()
        jobs = 0
        for name in names:
            if self.log.seen(str(alert["alert_id"]), name) and replayed != name:
                self.metrics.delivery[name, "skipped"].inc()
                continue
            job = Job(
                alert,
                record.value,
                company,
                record.partition,
                record.offset,
                record.timestamp / 1000.0,
                pending=pending,
                replayed=replayed == name,
            )
            self.lanes[name].queue.put_nowait(job)
            jobs += 1
        pending.add(record.offset, jobs)

    async def finish(self, name: str, job: Job, outcome: str, ref: str | None, reason: str) -> None:
        """A delivery ended: log it, dead-letter it if it failed, free its offset."""
        assert self.producer is not None
        if outcome == "skipped":  # an earlier copy of this job delivered it
            self.metrics.delivery[name, "skipped"].inc()
            job.pending.done(job.offset)
            return
        if outcome == "dlq":
            await (await self._dead_letter(job.raw, job, name, reason, ref or reason))
            self.metrics.dlq.labels(destination=name, reason=reason).inc()
        else:
            self.metrics.delivered_after[name].observe(max(0.0, time.time() - job.timestamp))
        key, value = self.log.entry(name, job, outcome, ref)
        # Wait for the broker's ack before the lane takes its next alert: a crash
        # then repeats at most the deliveries in flight (`concurrency` of them).
        await (await self.producer.send(self.log.topic, key=key, value=value))
        self.metrics.delivery[name, outcome].inc()
        job.pending.done(job.offset)

    async def _dead_letter(
        self, value: bytes | None, source: Any, destination: str, reason: str, detail: str
    ) -> asyncio.Future[Any]:
        """Queue a route-DLQ record; returns the future of the broker's ack."""
        assert self.producer is not None
        headers = [
            ("route-reason", reason.encode()),
            ("route-destination", destination.encode()),
            ("route-detail", detail[:300].encode()),
            ("original-topic", self.hot_topic.encode()),
            ("original-partition", str(source.partition).encode()),
            ("original-offset", str(source.offset).encode()),
        ]
        key = source.key if hasattr(source, "key") else source.domain.encode()
        future: asyncio.Future[Any] = await self.producer.send(
            self.dlq_topic, value=value, key=key, headers=headers
        )
        return future

    async def commit(self) -> None:
        """Delivery records and DLQ records first, then the input offsets they cover."""
        consumer, producer = self.consumer, self.producer
        if consumer is None or producer is None:
            return
        offsets = {}
        assignment = consumer.assignment()
        for p, pending in self.pending.items():
            tp = TopicPartition(self.hot_topic, p)
            offset = pending.committable()
            if offset is not None and tp in assignment:
                offsets[tp] = offset
        covered = self.unacked[:]  # a revoke's commit may run beside `run`: only these
        await producer.flush()
        errors = [future.exception() for future in covered]  # each one read: none logged
        for error in errors:  # a refused dead letter stays listed: no offset is ever committed
            if error is not None:
                raise error
        done = set(covered)
        self.unacked = [future for future in self.unacked if future not in done]
        if offsets:
            await consumer.commit(offsets)
            self.log.prune({tp.partition: offset for tp, offset in offsets.items()})
        self.outage.healthy()  # a commit went through: log "back" after an outage

    async def drain(self, seconds: float = 6.0) -> None:
        """On shutdown: let lanes finish what they hold for a while, then commit."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and any(lane.depth() for lane in self.lanes.values()):
            await asyncio.sleep(0.05)
        await self.commit()

    async def close(self) -> None:
        for lane in self.lanes.values():
            await lane.stop()
        for task in self.background:
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        for client in (self.consumer, self.log_reader):
            if client is not None:
                with contextlib.suppress(Exception):
                    await stop_consumer(client)
        if self.producer is not None:
            with contextlib.suppress(Exception):
                await self.producer.stop()
        for sender in self.senders.values():
            with contextlib.suppress(Exception):
                await sender.close()
        await self.web.stop()
