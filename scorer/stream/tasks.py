"""Tasks: one partition number of the co-partitioned inputs, its state and
its changelog partition, as in Kafka Streams; and their assignment.

Exactly-once: each task has its own transactional producer (transactional id
= app id + partition). aiokafka speaks only v0 of the transaction APIs (no
KIP-447), so a per-task producer is what fences a zombie: starting it aborts
whatever transaction the task's previous owner left open, and that owner's
next commit fails with ProducerFenced. The ordering matters: fence first, then
read the committed offsets (now stable) and seek to them, then restore the
state; records fetched before that are dropped by the loop (`generation`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from scorer.config import Settings
from scorer.kafka.client import producer_options, reader, stop_consumer
from scorer.kafka.topics import Topics
from scorer.stream.metrics import Metrics
from scorer.stream.store import (
    AccountStore,
    Backing,
    MemoryBacking,
    RocksBacking,
    new_marker,
    store_path,
)

log = logging.getLogger("scorer.worker")
# Decoded accounts per task, about 2 KB each: 30,000 over four tasks hold about
# 95 % of the bench's Zipf traffic (40,000 held 98 % for about 20 MB more).
ACCOUNT_CACHE_LIMIT = 7_500
BUCKETS_PER_WINDOW = 168  # see scorer.stream.account_codec
Output = tuple[str, bytes | None, bytes | None, Any, int | None]


@dataclass(eq=False)
class Task:
    """One partition number p: its inputs' positions, state and outbox."""

    partition: int
    inputs: list[TopicPartition]
    changelog: TopicPartition
    store: AccountStore
    producer: AIOKafkaProducer | None  # the task's own in exactly-once mode
    positions: dict[TopicPartition, int] = field(default_factory=dict)  # next offset to process
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    outbox: list[Output] = field(default_factory=list)
    alert_times: list[float] = field(default_factory=list)  # input timestamps of queued alerts
    marker: bytes | None = None  # a changelog marker to write in the next commit
    broken: bool = False  # the producer failed a commit: renew it before the next

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Any = None,
        partition: int | None = None,
    ) -> None:
        self.outbox.append((topic, key, value, headers, partition))

    @property
    def has_work(self) -> bool:
        return bool(
            self.outbox
            or self.store.dirty
            or self.store.pending
            or self.marker
            or self.positions != self.committed
        )

    def rewind(self) -> None:
        """Back to the last commit: uncommitted state and outputs are dropped."""
        self.store.discard()
        self.outbox.clear()
        self.alert_times.clear()
        self.positions = dict(self.committed)


class TaskFactory:
    """Makes, restores and closes tasks."""

    def __init__(self, settings: Settings, topics: Topics, metrics: Metrics) -> None:
        self.settings = settings
        self.topics = topics
        self.metrics = metrics
        self.exactly_once = settings.guarantee == "exactly_once"
        self.bucket_width = max(1.0, settings.dedup_window / BUCKETS_PER_WINDOW)

    def backing(self, partition: int) -> Backing:
        if self.settings.store == "rocksdb":
            path = store_path(
                self.settings.data_dir, self.settings.app_id, self.topics.changelog, partition
            )
            return RocksBacking(path)
        return MemoryBacking()

    async def producer(self, partition: int) -> AIOKafkaProducer | None:
        """The task's transactional producer, started: its init_transactions
        fences the task's previous owner and aborts what it left open."""
        if not self.exactly_once:
            return None
        producer = AIOKafkaProducer(
            **producer_options(self.settings),
            transactional_id=f"{self.settings.app_id}-{partition}",
        )
        await producer.start()
        return producer

    async def renew(self, task: Task) -> None:
        """A new producer for a task whose commit failed (the old one is dropped)."""
        old = task.producer
        if old is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(old.stop(), 2.0)
        task.producer = None
        task.producer = await self.producer(task.partition)
        task.broken = False

    async def create(self, partition: int) -> Task:
        producer = await self.producer(partition)
        store = AccountStore(self.backing(partition), self.bucket_width, ACCOUNT_CACHE_LIMIT)
        inputs = [TopicPartition(topic, partition) for topic in self.topics.inputs()]
        changelog = TopicPartition(self.topics.changelog, partition)
        return Task(partition, inputs, changelog, store, producer)

    async def close(self, task: Task) -> None:
        if task.producer is not None:
            await task.producer.stop()
        task.store.close()

    async def restore(self, tasks: list[Task]) -> None:
        """Each task's store brought to its changelog's end, in getmany batches.
        A store whose marker does not read back is wiped first."""
        if not tasks:
            return
        started = time.monotonic()
        consumer = reader(self.settings, max_partition_fetch_bytes=8 * 1024 * 1024)
        await consumer.start()
        try:
            by_tp = {task.changelog: task for task in tasks}
            ends = await consumer.end_offsets(list(by_tp))
            for tp, task in by_tp.items():
                if not await self._belongs(consumer, task, ends[tp]):
                    log.warning(
                        "%s[%d]: local state belongs to another changelog; rebuilding it",
                        tp.topic,
                        tp.partition,
                    )
                    task.store.backing.wipe()
            consumer.assign(list(by_tp))
            todo = {}
            for tp, task in by_tp.items():
                start = task.store.backing.offset
                if start < ends[tp]:
                    consumer.seek(tp, start)
                    todo[tp] = ends[tp]
            count = 0
            while todo:
                batch = await consumer.getmany(*todo, timeout_ms=500, max_records=20_000)
                for tp, records in batch.items():
                    restored = by_tp[tp].store.apply_changelog(records)
                    self.metrics.restored_total.inc(restored)
                    count += restored
                for tp in list(todo):
                    if await consumer.position(tp) >= todo[tp]:
                        del todo[tp]
            for task in tasks:
                if task.store.backing.marker is None:
                    task.marker = new_marker()
            log.info(
                "restored %d account records for partitions %s in %.2f s",
                count,
                sorted(task.partition for task in tasks),
                time.monotonic() - started,
            )
        finally:
            await stop_consumer(consumer)

    @staticmethod
    async def _belongs(consumer: AIOKafkaConsumer, task: Task, end: int) -> bool:
        """Does the local store describe this changelog partition?"""
        backing = task.store.backing
        if backing.offset == 0 and backing.marker is None:
            return True  # empty: nothing to check
        if backing.marker is None or backing.marker_offset is None or backing.offset > end:
            return False
        tp = task.changelog
        consumer.assign([tp])
        consumer.seek(tp, backing.marker_offset)
        batch = await consumer.getmany(tp, timeout_ms=5_000, max_records=1)
        records = batch.get(tp, [])
        return bool(
            records
            and records[0].offset == backing.marker_offset
            and records[0].value == backing.marker
        )


class TaskManager(ConsumerRebalanceListener):  # type: ignore[misc]
    """Owns the tasks of this worker and follows the group's assignment.

    The loop holds `lock` while it processes a batch and commits; the
    rebalance callbacks take it too, so a task is never moved mid-batch.
    `generation` changes on every assignment change: a batch fetched across
    one is dropped and its partitions re-read from the tasks' positions.
    """

    def __init__(
        self, settings: Settings, topics: Topics, factory: TaskFactory, checkpoint: Any
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.factory = factory
        self.checkpoint = checkpoint
        self.consumer: AIOKafkaConsumer | None = None
        self.tasks: dict[int, Task] = {}
        self.lock = asyncio.Lock()
        self.generation = 0
        self.rebalancing = False
        self.assigned_once = asyncio.Event()

    def bind(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.rebalancing = True
        self.generation += 1
        async with self.lock:
            # Commit what is done: the next owner resumes from there.
            revoked_partitions = {tp.partition for tp in revoked}
            tasks = [t for p, t in self.tasks.items() if p in revoked_partitions]
            try:
                await self.checkpoint.commit_all(tasks)
            except Exception as exc:  # rewound: the next owner redoes the work
                log.warning("commit before a rebalance failed: %s", type(exc).__name__)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        assert self.consumer is not None
        async with self.lock:
            self.generation += 1
            wanted = {tp.partition for tp in assigned if tp.topic in self.topics.inputs()}
            for partition in [p for p in self.tasks if p not in wanted]:
                await self.factory.close(self.tasks.pop(partition))
            new = sorted(wanted - set(self.tasks))
            created = await asyncio.gather(*(self.factory.create(p) for p in new))
            # Fenced: the committed offsets are stable now. Read them, seek.
            for task in created:
                self.tasks[task.partition] = task
            mine = set(self.consumer.assignment())
            for task in self.tasks.values():
                for tp in task.inputs:
                    if tp not in mine:  # a topic with fewer partitions
                        continue
                    committed = await self.consumer.committed(tp)
                    if committed is None:
                        await self.consumer.seek_to_beginning(tp)
                        committed = await self.consumer.position(tp)
                    else:
                        self.consumer.seek(tp, committed)
                    task.positions[tp] = task.committed[tp] = committed
            for task in created:
                task.store.discard()
            await self.factory.restore(list(created))
            log.info("tasks: partitions %s", sorted(self.tasks))
        self.rebalancing = False
        self.assigned_once.set()

    def rewind(self) -> None:
        """Seek every owned input back to its task's position (a dropped batch)."""
        assert self.consumer is not None
        assignment = self.consumer.assignment()
        for task in self.tasks.values():
            for tp, position in task.positions.items():
                if tp in assignment:
                    self.consumer.seek(tp, position)

    async def close_all(self) -> None:
        for task in list(self.tasks.values()):
            await self.factory.close(task)
        self.tasks.clear()
