"""One commit of a task, as numbered steps (after quixstreams' Checkpoint).

Exactly-once (the default), in the task's transaction:
  1. serialise the accounts changed since the last commit;
  2. begin the transaction;
  3. send the outputs (alerts, scores, dead letters, re-keyed events) in order;
  4. send the changelog writes (and the changelog marker, the first time);
  5. add the input offsets to the transaction;
  6. commit it: outputs, state and offsets become visible together;
  7. write the committed state into the local store, with its changelog offset.
A failure (or no answer within `COMMIT_TIMEOUT_SECONDS`) rewinds the task to
its last commit (state, outbox, input positions) and marks its producer
broken; the loop replaces it, and the new producer's start aborts the open
transaction on the broker: nothing is half-applied. (A fresh producer, not an
abort on the old one: aiokafka 0.14's sender task dies on a connection error
while it looks up the transaction coordinator, and then nothing on that
producer ever completes.) A fenced producer means another worker owns the task
now: the task is dropped.

At-least-once: the same steps on one shared producer without a transaction;
step 6 waits for every send to be acknowledged, then commits the offsets on
the consumer. A crash between the two replays the batch; the account state
(applied event ids) makes the replay change nothing, and alerts carry
deterministic ids.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError, ProducerFenced
from aiokafka.structs import OffsetAndMetadata

from scorer.stream.metrics import Metrics
from scorer.stream.store import MARKER_KEY
from scorer.stream.tasks import Task

log = logging.getLogger("scorer.worker")
COMMIT_TIMEOUT_SECONDS = 20.0


class CommitFailed(Exception):
    """A task's commit failed; it was rewound and its producer must be renewed."""


class Checkpoint:
    """Commits tasks; the same object serves both guarantees."""

    def __init__(
        self,
        group_id: str,
        consumer: AIOKafkaConsumer,
        metrics: Metrics,
        shared_producer: AIOKafkaProducer | None,
    ) -> None:
        self.group_id = group_id
        self.consumer = consumer
        self.metrics = metrics
        self.shared_producer = shared_producer  # at-least-once mode
        self.lost: list[Task] = []

    async def commit_all(self, tasks: list[Task]) -> None:
        """Commit every task with work, concurrently; CommitFailed if any failed
        (each failed task is rewound, the others committed)."""
        busy = [task for task in tasks if task.has_work and not task.broken]
        results = await asyncio.gather(
            *(self.commit(task) for task in busy), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        if any(task.broken for task in tasks):
            raise CommitFailed(-1)

    async def commit(self, task: Task) -> None:
        started = time.monotonic()
        try:
            if task.producer is not None:
                work = self._transactional(task, task.producer)
            else:
                work = self._at_least_once(task)
            await asyncio.wait_for(work, COMMIT_TIMEOUT_SECONDS)
        except ProducerFenced:
            log.warning("partition %d: producer fenced; the task moved away", task.partition)
            task.rewind()
            self.lost.append(task)
            return
        except (KafkaError, TimeoutError) as exc:
            log.warning(
                "partition %d: commit failed (%s); rewinding to the last commit",
                task.partition,
                type(exc).__name__,
            )
            task.rewind()
            task.broken = True
            self.metrics.commit_failures_total.inc()
            raise CommitFailed(task.partition) from exc
        self.metrics.commit_seconds.observe(time.monotonic() - started)

    async def _send_all(
        self, task: Task, producer: AIOKafkaProducer
    ) -> tuple[tuple[Any, int], Any]:
        """Steps 1, 3 and 4. Returns (the future of the last changelog batch, or
        None, and its record count) and the future of the marker's write."""
        writes = task.store.prepare()  # 1
        for topic, key, value, headers, partition in task.outbox:  # 3
            await producer.send(topic, value, key=key, headers=headers, partition=partition)
        marker_future = None
        changelog = task.changelog
        if task.marker is not None:  # 4
            marker_future = await producer.send(
                changelog.topic, task.marker, key=MARKER_KEY, partition=changelog.partition
            )
        # The changelog partition is known: build whole record batches, one
        # accumulator call per batch instead of one per record.
        last_batch, count = None, 0
        batch = producer.create_batch()
        for key, value in writes.items():
            if batch.append(key=key, value=value, timestamp=None) is None:
                batch.close()
                last_batch = await producer.send_batch(
                    batch, changelog.topic, partition=changelog.partition
                )
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
            count = batch.record_count()
        if batch.record_count():
            batch.close()
            last_batch = await producer.send_batch(
                batch, changelog.topic, partition=changelog.partition
            )
        return (last_batch, count), marker_future

    async def _transactional(self, task: Task, producer: AIOKafkaProducer) -> None:
        await producer.begin_transaction()  # 2
        last, marker_future = await self._send_all(task, producer)
        offsets = {tp: OffsetAndMetadata(pos, "") for tp, pos in task.positions.items()}
        await producer.send_offsets_to_transaction(offsets, self.group_id)  # 5
        await producer.commit_transaction()  # 6
        self._committed(task, last, marker_future)  # 7

    async def _at_least_once(self, task: Task) -> None:
        producer = self.shared_producer
        assert producer is not None
        last, marker_future = await self._send_all(task, producer)
        await producer.flush()  # 6: every send acknowledged, then the offsets
        offsets = {tp: pos for tp, pos in task.positions.items() if task.committed.get(tp) != pos}
        if offsets:
            await self.consumer.commit(offsets)
        self._committed(task, last, marker_future)  # 7

    def _committed(self, task: Task, last: tuple[Any, int], marker_future: Any) -> None:
        now = time.time()
        for produced_at in task.alert_times:
            self.metrics.end_to_end.observe(now - produced_at)
        task.alert_times.clear()
        task.outbox.clear()
        task.committed = dict(task.positions)
        store = task.store
        if marker_future is not None:
            store.backing.set_marker(task.marker or b"", marker_future.result().offset)
            task.marker = None
        batch, count = last
        offset = batch.result().offset + count if batch is not None else store.backing.offset
        store.committed(offset)
