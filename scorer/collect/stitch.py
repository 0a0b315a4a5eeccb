"""The stitch stage: a consumer group over `<collect id>-identities`, in the collector.

The intake writes each visit (a visitor event without a company) and each
link (identity -> company) to the identities topic, keyed by identity. This
stage owns the partitions Kafka assigns it, with their state (`Identities`,
restored from the compacted `<collect id>-identities-changelog` at
assignment), and turns visits of linked identities, and the kept visits of
identities a link arrives for, into visitor events on visitor-events (key =
account domain), with their original times and event ids.

A commit, every `COMMIT_SECONDS` and at revocation or shutdown, is three
steps, each waiting for the one before: (1) the visitor events, acknowledged;
(2) the changed identities to the changelog, acknowledged; (3) the input
offsets. A crash before (3) replays the input from the last commit against
a state that may already hold some of it: a visit already kept is not kept
twice, a visit already forwarded is forwarded again with the same event id,
and the workers drop an event id already applied to the account (PRODUCT.md
rule 11). Because (1) comes before (2), a link's state never says "credited"
for events that were not acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from scorer.collect.identities import Identities
from scorer.collect.metrics import CollectMetrics
from scorer.config import Settings
from scorer.kafka.client import (
    KeyPartitions,
    client_options,
    reader,
    send_batches,
    stop_consumer,
)
from scorer.kafka.topics import Topics

log = logging.getLogger("scorer.collect.stitch")
COMMIT_SECONDS = 0.1
# The stage shares the event loop with the intake's requests: it takes at most
# this many records (a few milliseconds of work) before letting them run.
STEP_RECORDS = 500
SWEEP_SECONDS = 30.0
MAX_FUTURE_SKEW = 3600.0  # a visitor's clock may run ahead; stream time does not follow it far


class StitchStage(ConsumerRebalanceListener):  # type: ignore[misc]
    """One collector's share of the identities topic and its state."""

    def __init__(
        self,
        settings: Settings,
        producer: AIOKafkaProducer,
        metrics: CollectMetrics,
        stopping: asyncio.Event,
        visitor_partitions: KeyPartitions,
    ) -> None:
        self.settings = settings
        self.producer = producer
        self.metrics = metrics
        self.stopping = stopping
        topics = Topics.from_settings(settings)
        self.topic = topics.identities
        self.changelog = topics.identities_changelog
        self.visitor_topic = topics.visitor
        self.visitor_partitions = visitor_partitions  # by account domain, as the workers expect
        self.stores: dict[int, Identities] = {}
        self.stream_time: dict[int, float] = {}
        self.offsets: dict[TopicPartition, int] = {}
        self.dirty: set[tuple[int, bytes]] = set()
        self.outputs: list[tuple[bytes, bytes]] = []
        self.consumer: AIOKafkaConsumer | None = None
        self.joined = asyncio.Event()
        self.last_commit = time.monotonic()
        self.last_sweep = time.monotonic()
        metrics.gauges(self.kept_events, self.identity_count)

    def kept_events(self) -> float:
        return float(sum(store.kept_events for store in self.stores.values()))

    def identity_count(self) -> float:
        return float(sum(len(store) for store in self.stores.values()))

    # -- the group -----------------------------------------------------------------

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if self.consumer is not None and self.stores:
            with contextlib.suppress(KafkaError):
                await self.commit()
        for tp in revoked:
            self.stores.pop(tp.partition, None)
            self.offsets.pop(tp, None)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        started = time.monotonic()
        partitions = sorted(tp.partition for tp in assigned if tp.partition not in self.stores)
        count = await self._restore(partitions)
        if partitions:
            log.info(
                "stitch: partitions %s assigned, %d changelog records restored in %.1f s",
                partitions,
                count,
                time.monotonic() - started,
            )
        self.joined.set()

    async def _restore(self, partitions: list[int]) -> int:
        if not partitions:
            return 0
        stores = {
            p: Identities(self.settings.collect_keep_max_count, self.settings.collect_keep_max_age)
            for p in partitions
        }
        consumer = reader(self.settings, max_partition_fetch_bytes=4 * 1024 * 1024)
        await consumer.start()
        count = 0
        try:
            tps = [TopicPartition(self.changelog, p) for p in partitions]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            remaining = {tp for tp in tps if ends[tp] > 0}
            while remaining:
                batches = await consumer.getmany(*remaining, timeout_ms=500)
                for tp, records in batches.items():
                    store = stores[tp.partition]
                    for record in records:
                        store.load(record.key, record.value)
                    count += len(records)
                for tp in list(remaining):
                    if await consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
        finally:
            await stop_consumer(consumer)
        self.stores.update(stores)
        return count

    # -- the loop ------------------------------------------------------------------

    async def run(self) -> None:
        """Consume, stitch and commit until stopped; a failed commit restarts the
        session from the last commit (the replay is harmless, see the docstring)."""
        while not self.stopping.is_set():
            try:
                await self._session()
            except KafkaError as exc:
                log.warning(
                    "stitch: %s: %s; restarting from the last commit", type(exc).__name__, exc
                )
                await asyncio.sleep(1.0)

    async def _session(self) -> None:
        self.stores.clear()
        self.offsets.clear()
        self.dirty.clear()
        self.outputs.clear()
        self.consumer = AIOKafkaConsumer(
            **client_options(self.settings),
            group_id=self.settings.collect_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(self.settings.session_timeout * 1000),
            heartbeat_interval_ms=int(self.settings.session_timeout * 1000 / 5),
            max_poll_records=STEP_RECORDS,
        )
        await self.consumer.start()
        try:
            self.consumer.subscribe([self.topic], listener=self)
            while not self.stopping.is_set():
                batches = await self.consumer.getmany(timeout_ms=100, max_records=STEP_RECORDS)
                for tp, records in batches.items():
                    self._process(tp, records)
                    await asyncio.sleep(0)
                now = time.monotonic()
                if now - self.last_sweep > SWEEP_SECONDS:
                    self._sweep()
                    self.last_sweep = now
                if self.offsets and (not batches or now - self.last_commit >= COMMIT_SECONDS):
                    await self.commit()
            await self.commit()
        finally:
            consumer, self.consumer = self.consumer, None
            await stop_consumer(consumer)

    def _process(self, tp: TopicPartition, records: list[Any]) -> None:
        store = self.stores.get(tp.partition)
        if store is None:
            # Fetched while the partition's restore was still running (or after it
            # was revoked): read it again from here once the state is in place,
            # or the consumer's position would skip these records for good.
            consumer = self.consumer
            if consumer is not None and tp in consumer.assignment():
                consumer.seek(tp, records[0].offset)
            return
        send = self._send
        newest = self.stream_time.get(tp.partition, 0.0)
        links = 0
        for record in records:
            try:
                value = orjson.loads(record.value)
                at = float(value["at"])
                if "v" in value:
                    out = store.visit(record.key, value["v"], at)
                else:
                    out = store.link(record.key, value["l"], at)
                    links += 1
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                log.error("stitch: an unreadable record at %s offset %d skipped", tp, record.offset)
                continue
            newest = max(newest, at)
            for domain, document in out:
                send(domain, document)
        if links:
            self.metrics.links.inc(links)
        self.dirty.update((tp.partition, key) for key in store.changed)
        store.changed.clear()
        self.stream_time[tp.partition] = min(newest, time.time() + MAX_FUTURE_SKEW)
        self.offsets[tp] = records[-1].offset + 1
        self._count(store)

    def _send(self, domain: str, document: dict[str, Any]) -> None:
        self.outputs.append((domain.encode(), orjson.dumps(document)))

    def _count(self, store: Identities) -> None:
        for outcome, n in store.counts.items():
            if n:
                self.metrics.stitch.labels(outcome=outcome).inc(n)
        store.counts.clear()

    def _sweep(self) -> None:
        for partition, store in self.stores.items():
            stream_time = self.stream_time.get(partition)
            if stream_time is None:
                continue
            store.sweep(stream_time)
            self.dirty.update((partition, key) for key in store.changed)
            store.changed.clear()
            self._count(store)

    async def commit(self) -> None:
        """(1) visitor events acknowledged, (2) changed identities acknowledged,
        (3) input offsets committed."""
        consumer = self.consumer
        if consumer is None:
            return
        outputs, self.outputs = self.outputs, []
        partition_of = self.visitor_partitions
        events: dict[int, list[tuple[bytes, bytes | None]]] = {}
        for key, value in outputs:
            partition = partition_of(key)
            group = events.get(partition)
            if group is None:
                group = events[partition] = []
            group.append((key, value))
        await self._publish(self.visitor_topic, events)
        dirty, self.dirty = self.dirty, set()
        changes: dict[int, list[tuple[bytes, bytes | None]]] = {}
        for partition, key in dirty:
            store = self.stores.get(partition)
            if store is not None:
                changes.setdefault(partition, []).append((key, store.record(key)))
        await self._publish(self.changelog, changes)
        offsets, self.offsets = dict(self.offsets), {}
        if offsets:
            await consumer.commit(offsets)
        self.last_commit = time.monotonic()

    async def _publish(
        self, topic: str, records: dict[int, list[tuple[bytes, bytes | None]]]
    ) -> None:
        """Records by partition, as whole record batches (no future per record);
        returns once the broker acknowledged them all."""
        sent = []
        for partition, group in records.items():
            sent += [f for f, _ in await send_batches(self.producer, topic, partition, group)]
        await asyncio.gather(*sent)

    def not_ready(self) -> str | None:
        return None if self.joined.is_set() else "joining the stitch stage's group"
