"""Steady traffic and a progress meter for the cluster fault tests.

`Traffic` produces visitor events at a fixed rate with an idempotent producer
and never waits on an acknowledgement in line: a partition whose leader is
gone queues its records while the others go on, so the input itself never
stalls the services. `StallMeter` samples, every half second, the worker
group's committed offsets against the input's end offsets (per partition)
and the alerts visible on hot-accounts (read_committed) against those the
webhook has received: a service *stalls* while it has work waiting and makes
no progress. Each stall is kept as an interval, so a test can say which
fault it overlapped; so is each alert's wait, from visible to received. The
meter's own Kafka clients see the faults too: a sample that cannot be taken
counts as no progress, so a stall is never under-reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from scorer.events import event_from_document

SAMPLE_SECONDS = 0.5


@dataclass
class Traffic:
    """Events to one topic, keyed by account, `rate` a second, until stopped."""

    bootstrap: str
    topic: str
    events: list[dict[str, Any]]
    rate: float
    sent: int = 0
    futures: list[asyncio.Future[Any]] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            # a request to a node killed mid-flight must not hold its partition long
            request_timeout_ms=10_000,
        )
        await producer.start()
        started = time.monotonic()
        try:
            for doc in self.events:
                if self.stopping.is_set():
                    break
                due = started + self.sent / self.rate
                if due > time.monotonic():
                    await asyncio.sleep(due - time.monotonic())
                account = event_from_document(doc).account
                key = account.encode() if account else None
                self.futures.append(await producer.send(self.topic, orjson.dumps(doc), key=key))
                self.sent += 1
            await asyncio.gather(*self.futures)  # every record acknowledged
        finally:
            await producer.stop()

    def raws(self) -> list[bytes]:
        """The records sent, in order."""
        return [orjson.dumps(doc) for doc in self.events[: self.sent]]


@dataclass
class Stall:
    service: str
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


class Clock:
    """Since when one input has had work waiting without progress."""

    def __init__(self, service: str, now: float) -> None:
        self.service = service
        self.fine_at = now  # last time it progressed or had nothing to do

    def sample(self, now: float, pending: bool, progressed: bool, stalls: list[Stall]) -> None:
        if progressed or not pending:
            if now - self.fine_at > SAMPLE_SECONDS * 1.5:
                stalls.append(Stall(self.service, self.fine_at, now))
            self.fine_at = now

    def close(self, now: float, pending: bool, stalls: list[Stall]) -> None:
        if pending and now - self.fine_at > SAMPLE_SECONDS * 1.5:
            stalls.append(Stall(self.service, self.fine_at, now))


class StallMeter:
    """Watches the worker group's and the router's progress, each source on its
    own half-second loop, so one slow answer delays no other sample."""

    def __init__(
        self, bootstrap: str, group: str, topic: str, partitions: int, hot: str, receipts: Any
    ) -> None:
        self.bootstrap = bootstrap
        self.group = group
        self.tps = [TopicPartition(topic, p) for p in range(partitions)]
        self.hot = hot
        self.receipts = receipts  # a callable: the alert ids the webhook has received
        self.stalls: list[Stall] = []
        self.blind: list[float] = []  # when the group's offsets could not be read
        self.started = asyncio.Event()  # set once every client has answered
        self.stopping = asyncio.Event()
        self.visible: dict[str, float] = {}  # alert id -> when first read (read_committed)
        self.delivered: dict[str, float] = {}  # alert id -> when the webhook first had it
        self.options = {
            "bootstrap_servers": bootstrap,
            "enable_auto_commit": False,
            "request_timeout_ms": 5_000,
            "metadata_max_age_ms": 2_000,
        }

    async def run(self) -> None:
        offsets = AIOKafkaConsumer(group_id=self.group, **self.options)
        tail = AIOKafkaConsumer(
            group_id=None,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            **self.options,
        )
        await offsets.start()
        await tail.start()
        try:
            tail.subscribe([self.hot])
            while True:  # connected, before any traffic
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._offsets(offsets), 5.0)
                    break
            self.started.set()
            await asyncio.gather(
                self._watch_workers(offsets), self._tail(tail), self._watch_router()
            )
        finally:
            await offsets.stop()
            await tail.stop()

    async def _watch_workers(self, consumer: AIOKafkaConsumer) -> None:
        now = time.monotonic()
        clocks = {tp: Clock("worker", now) for tp in self.tps}
        last: dict[TopicPartition, int] = {}
        pending = dict.fromkeys(self.tps, False)
        while not self.stopping.is_set():
            await asyncio.sleep(SAMPLE_SECONDS)
            try:
                committed, ends = await asyncio.wait_for(self._offsets(consumer), 5.0)
            except Exception:  # blind: no progress seen until the next answer
                self.blind.append(time.monotonic())
                continue
            now = time.monotonic()
            for tp in self.tps:
                done = committed.get(tp) or 0
                pending[tp] = ends[tp] > done
                clocks[tp].sample(now, pending[tp], done > last.get(tp, 0), self.stalls)
                last[tp] = done
        for tp, clock in clocks.items():
            clock.close(time.monotonic(), pending[tp], self.stalls)

    async def _tail(self, consumer: AIOKafkaConsumer) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(Exception):
                batch = await consumer.getmany(timeout_ms=200)
                now = time.monotonic()
                for records in batch.values():
                    for record in records:
                        self.visible.setdefault(orjson.loads(record.value)["alert_id"], now)

    async def _watch_router(self) -> None:
        clock = Clock("router", time.monotonic())
        waiting = False
        while not self.stopping.is_set():
            await asyncio.sleep(SAMPLE_SECONDS)
            now = time.monotonic()
            received = set(self.receipts())
            fresh = received - self.delivered.keys()
            for alert_id in fresh:
                self.delivered[alert_id] = now
            waiting = bool(self.visible.keys() - received)
            clock.sample(now, waiting, bool(fresh), self.stalls)
        clock.close(time.monotonic(), waiting, self.stalls)

    async def _offsets(
        self, consumer: AIOKafkaConsumer
    ) -> tuple[dict[TopicPartition, int | None], dict[TopicPartition, int]]:
        committed = {tp: await consumer.committed(tp) for tp in self.tps}
        return committed, await consumer.end_offsets(self.tps)

    def delay(self, start: float, end: float) -> float:
        """The longest an alert that became visible in [start, end) waited for the
        webhook (to the half second; one not delivered counts to the end)."""
        last = time.monotonic()
        return max(
            (
                self.delivered.get(alert_id, last) - seen
                for alert_id, seen in self.visible.items()
                if start <= seen < end
            ),
            default=0.0,
        )

    def blind_seconds(self, start: float, end: float) -> float:
        """About how long the meter could not read the group's offsets in [start, end)."""
        return (SAMPLE_SECONDS + 5.0) * sum(1 for t in self.blind if start <= t < end)

    def longest(self, service: str, start: float, end: float) -> float:
        """The longest stall of a service whose middle falls in [start, end): a
        stall that began at the last sample before a fault is that fault's."""
        return max(
            (
                s.seconds
                for s in self.stalls
                if s.service == service and start <= (s.start + s.end) / 2 < end
            ),
            default=0.0,
        )
