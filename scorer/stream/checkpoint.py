"""One commit of a task, as numbered steps (after quixstreams' Checkpoint).

A commit starts from a *snapshot*, taken synchronously between two batches:
  1. serialise the accounts changed since the last snapshot, and take the
     outbox, the input positions and the changelog writes as they are now.
The rest runs while the loop goes on scoring the next batches (a task has
at most one commit in flight). Exactly-once (the default), in the task's
transaction:
  2. begin the transaction;
  3. send the outputs (alerts, scores, dead letters, re-keyed events) in order;
  4. send the changelog writes (and the changelog marker, the first time);
  5. add the input offsets to the transaction;
  6. commit it: outputs, state and offsets become visible together;
  7. write the committed state into the local store, with its changelog offset.
A failure (or no answer within `COMMIT_TIMEOUT_SECONDS`) marks the task
broken. Under the loop's lock, before it scores anything more, the task is
rewound to its last commit (state, outbox, input positions, including what
was scored after the snapshot) and the consumer is sent back to those
positions (`settle`); the rewind must not happen here, in the background,
or a batch fetched before the seek would be scored past the rewound
position and the records between lost. Its producer is replaced, and
the new producer's start aborts the open transaction on the broker: nothing
is half-applied. (A fresh producer, not an abort on the old one: aiokafka
0.14's sender task dies on a connection error while it looks up the
transaction coordinator, and then nothing on that producer ever completes.)
A fenced producer means another worker owns the task now: the task is dropped.

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
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import IllegalOperation, KafkaError, ProducerFenced
from aiokafka.structs import OffsetAndMetadata

from scorer.kafka.client import send_batches
from scorer.stream.metrics import Metrics
from scorer.stream.store import MARKER_KEY
from scorer.stream.tasks import Output, Task

log = logging.getLogger("scorer.worker")
COMMIT_TIMEOUT_SECONDS = 20.0
TRANSACTION_GAP = 0.003


class CommitFailed(Exception):
    """A task's commit failed; it was rewound and its producer must be renewed."""


@dataclass(slots=True)
class Snapshot:
    """What one commit of a task carries (step 1)."""

    task: Task
    outbox: list[Output]
    writes: dict[bytes, bytes | None]
    positions: dict[TopicPartition, int]
    alert_times: list[float]
    marker: bytes | None


def snapshot(task: Task) -> Snapshot:
    """Step 1, synchronous: the task's work up to now, handed to one commit."""
    outbox, task.outbox = task.outbox, []
    alert_times, task.alert_times = task.alert_times, []
    return Snapshot(
        task, outbox, task.store.prepare(), dict(task.positions), alert_times, task.marker
    )


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
        self.inflight: asyncio.Future[Any] | None = None
        self.last_end: dict[int, float] = {}  # partition -> its last transaction's end

    @property
    def busy(self) -> bool:
        return self.inflight is not None and not self.inflight.done()

    def start(self, tasks: list[Task]) -> bool:
        """Snapshot every task with work and commit them, concurrently, in the
        background. Call only when no commit is in flight."""
        assert not self.busy
        snapshots = [snapshot(task) for task in tasks if task.has_work and not task.broken]
        if not snapshots:
            return False
        self.inflight = asyncio.ensure_future(
            asyncio.gather(*(self.commit(s) for s in snapshots), return_exceptions=True)
        )
        return True

    async def wait(self) -> None:
        """The commit in flight, if any, finished; CommitFailed if a task's failed
        (that task was rewound, the others committed)."""
        inflight, self.inflight = self.inflight, None
        if inflight is None:
            return
        for result in await inflight:
            if isinstance(result, BaseException):
                raise result

    async def commit_all(self, tasks: list[Task]) -> None:
        """Everything done so far, committed before returning (CommitFailed if a
        task's commit, in flight or this one, failed)."""
        failed = None
        try:
            await self.wait()
        except CommitFailed as exc:
            failed = exc
        self.start(tasks)
        try:
            await self.wait()
        except CommitFailed as exc:
            failed = exc
        for task in tasks:  # callers hold the loop's lock: rewind here
            if task.broken:
                task.rewind()
        if failed is not None:
            raise failed

    async def commit(self, snap: Snapshot) -> None:
        task = snap.task
        started = time.monotonic()
        try:
            if task.producer is not None:
                work = self._transactional(snap, task.producer)
            else:
                work = self._at_least_once(snap)
            await asyncio.wait_for(work, COMMIT_TIMEOUT_SECONDS)
        except ProducerFenced:
            log.warning("partition %d: producer fenced; the task moved away", task.partition)
            self.lost.append(task)
            return
        except (KafkaError, TimeoutError, IllegalOperation) as exc:
            # IllegalOperation is not a KafkaError: aiokafka raises it for a
            # send after its sender has put the transaction in an error state,
            # which can happen when the broker goes away in the middle of a commit.
            log.warning(
                "partition %d: commit failed (%s); rewinding to the last commit",
                task.partition,
                type(exc).__name__,
            )
            task.broken = True
            self.metrics.commit_failures_total.inc()
            raise CommitFailed(task.partition) from exc
        self.metrics.commit_seconds.observe(time.monotonic() - started)

    async def _send_all(self, snap: Snapshot, producer: AIOKafkaProducer) -> tuple[Any, int, Any]:
        """Steps 3 and 4. Returns the future of the last changelog batch (or
        None), its record count, and the future of the marker's write."""
        for topic, key, value, headers, partition in snap.outbox:  # 3
            await producer.send(topic, value, key=key, headers=headers, partition=partition)
        marker_future = None
        changelog = snap.task.changelog
        if snap.marker is not None:  # 4
            marker_future = await producer.send(
                changelog.topic, snap.marker, key=MARKER_KEY, partition=changelog.partition
            )
        sent = await send_batches(
            producer, changelog.topic, changelog.partition, snap.writes.items()
        )
        last_batch, count = sent[-1] if sent else (None, 0)
        return last_batch, count, marker_future

    async def _transactional(self, snap: Snapshot, producer: AIOKafkaProducer) -> None:
        # A transaction begun within a millisecond or so of the task's last
        # commit finds the broker still writing that commit's markers: the
        # broker answers CONCURRENT_TRANSACTIONS and aiokafka retries after a
        # fixed 20 ms. A 3 ms pause costs less (measured here: back-to-back
        # transactions 27 ms each, with a 1-3 ms gap 5 ms each).
        pause = self.last_end.get(snap.task.partition, 0.0) + TRANSACTION_GAP - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
        await producer.begin_transaction()  # 2
        sent = await self._send_all(snap, producer)
        offsets = {tp: OffsetAndMetadata(pos, "") for tp, pos in snap.positions.items()}
        await producer.send_offsets_to_transaction(offsets, self.group_id)  # 5
        await producer.commit_transaction()  # 6
        self.last_end[snap.task.partition] = time.monotonic()
        self._committed(snap, *sent)  # 7

    async def _at_least_once(self, snap: Snapshot) -> None:
        producer = self.shared_producer
        assert producer is not None
        sent = await self._send_all(snap, producer)
        await producer.flush()  # 6: every send acknowledged, then the offsets
        committed = snap.task.committed
        offsets = {tp: pos for tp, pos in snap.positions.items() if committed.get(tp) != pos}
        if offsets:
            await self.consumer.commit(offsets)
        self._committed(snap, *sent)  # 7

    def _committed(self, snap: Snapshot, batch: Any, count: int, marker_future: Any) -> None:
        now = time.time()
        for produced_at in snap.alert_times:
            self.metrics.end_to_end.observe(now - produced_at)
        task = snap.task
        task.committed = snap.positions
        store = task.store
        if marker_future is not None:
            store.backing.set_marker(snap.marker or b"", marker_future.result().offset)
            if task.marker == snap.marker:
                task.marker = None
        offset = batch.result().offset + count if batch is not None else store.backing.offset
        store.committed(offset)
