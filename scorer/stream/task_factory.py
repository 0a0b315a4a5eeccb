"""Making, restoring and closing tasks.

Exactly-once: each task has its own transactional producer (transactional id
= app id + partition). aiokafka speaks only v0 of the transaction APIs (no
KIP-447), so a per-task producer is what fences a zombie: starting it aborts
whatever transaction the task's previous owner left open, and that owner's
next commit fails with ProducerFenced. The task manager keeps the order:
fence first (`create`), then read the committed offsets (now stable) and
seek to them, then `restore` the state.

Restore brings each task's local store to its changelog's end. A store whose
changelog marker does not read back the same (another cluster, a deleted and
recreated topic) is wiped and rebuilt from the changelog, never reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from scorer.config import Settings
from scorer.errors import ConfigError
from scorer.kafka.client import producer_options, reader, stop_consumer
from scorer.kafka.topics import Topics
from scorer.stream.account_codec import (
    FORMAT_1_BUCKETS_PER_WINDOW,
    UnknownFormat,
    unreadable_state,
)
from scorer.stream.backing import Backing, MemoryBacking, RocksBacking, new_marker, store_path
from scorer.stream.metrics import Metrics
from scorer.stream.store import AccountStore
from scorer.stream.tasks import Task

log = logging.getLogger("scorer.worker")


class TaskFactory:
    """Makes, restores and closes tasks."""

    def __init__(
        self, settings: Settings, topics: Topics, metrics: Metrics, partitions: int
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.metrics = metrics
        # Every account of a task decoded in memory, up to its share of the
        # worker's budget: a worker that owns every partition may hold all of it.
        self.accounts_per_task = max(1, settings.accounts_in_memory // max(1, partitions))
        self.exactly_once = settings.guarantee == "exactly_once"
        self.bucket_width = max(1.0, settings.dedup_window / FORMAT_1_BUCKETS_PER_WINDOW)

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
        try:
            await producer.start()
        except BaseException:  # refused (a transactional id ACL), or cancelled
            await producer.stop()
            raise
        return producer

    async def renew(self, task: Task) -> AIOKafkaProducer | None:
        """A new producer for a task whose commit failed (its old one stopped).
        The new producer's start aborts the transaction the old one left open."""
        old = task.producer
        if old is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(old.stop(), 2.0)
        return await self.producer(task.partition)

    async def create(self, partition: int) -> Task:
        producer = await self.producer(partition)
        store = AccountStore(
            self.backing(partition),
            self.settings.dedup_window,
            self.bucket_width,
            self.accounts_per_task,
        )
        inputs = [TopicPartition(topic, partition) for topic in self.topics.inputs()]
        changelog = TopicPartition(self.topics.changelog, partition)
        rekeyed = TopicPartition(self.topics.rekey, partition)
        return Task(partition, inputs, changelog, store, producer, rekeyed=rekeyed)

    async def close(self, task: Task) -> None:
        if task.producer is not None:
            await task.producer.stop()
        task.store.close()
        task.closed()

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
            restored_at = time.monotonic()
            accounts = 0
            for task in tasks:
                try:
                    accounts += task.store.preload()
                except UnknownFormat as exc:
                    raise ConfigError(unreadable_state(task.changelog.topic, exc)) from exc
                task.restored(new_marker() if task.store.backing.marker is None else None)
            log.info(
                "restored %d account records for partitions %s in %.2f s; "
                "%d accounts decoded into memory in %.2f s",
                count,
                sorted(task.partition for task in tasks),
                restored_at - started,
                accounts,
                time.monotonic() - restored_at,
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
