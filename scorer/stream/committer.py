"""One commit of a task, as numbered steps (after quixstreams' Checkpoint).

The task manager takes a *snapshot* of a task between two batches
(`Task.prepare_commit`, step 1: the changed accounts serialised, the
outbox, the input positions and the changelog writes as they are now) and
hands it here. The rest runs while the loop goes on scoring the next
batches (a task has at most one commit in flight). Exactly-once (the
default), in the task's transaction:
  2. begin the transaction;
  3. send the outputs (alerts, scores, dead letters, re-keyed events) in order;
  4. send the changelog writes (and the changelog marker, the first time);
  5. add the input offsets to the transaction;
  6. commit it: outputs, state and offsets become visible together.
At-least-once: the same steps on one shared producer without a transaction;
step 6 waits for every send to be acknowledged, then commits the offsets on
the consumer. A crash between the two replays the batch; the account state
(applied event ids) makes the replay change nothing, and alerts carry
deterministic ids.

The committer changes no task: it returns what happened (`Outcome`), and
the task manager records it (step 7, `Task.post_commit`: the committed
state into the local store), or rewinds the task when the commit failed.
A refusal for want of an ACL is raised instead: no retry can fix it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import IllegalOperation, KafkaError, ProducerFenced
from aiokafka.structs import OffsetAndMetadata

from scorer.kafka.client import send_batches
from scorer.kafka.refusals import REFUSED, refusal
from scorer.stream.metrics import Metrics
from scorer.stream.store import MARKER_KEY
from scorer.stream.tasks import Snapshot

log = logging.getLogger("scorer.worker")
COMMIT_TIMEOUT_SECONDS = 20.0
# A transaction begun within a millisecond or so of the task's last commit
# finds the broker still writing that commit's markers: the broker answers
# CONCURRENT_TRANSACTIONS and aiokafka retries after a fixed 20 ms. A pause
# of a few milliseconds costs less (see the README's performance section).
TRANSACTION_GAP = 0.003


class Status(enum.Enum):
    COMMITTED = "committed"
    FAILED = "failed"  # rolled back (or never begun): the task must rewind
    FENCED = "fenced"  # another worker owns the task now


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one commit did; the offsets only when it committed."""

    status: Status
    changelog_offset: int | None = None  # the changelog's next offset after the writes
    marker_offset: int | None = None  # where the marker was written, if it was


class Committer:
    """Runs commits; the same object serves both guarantees."""

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
        self.last_end: dict[int, float] = {}  # partition -> its last transaction's end

    async def commit(
        self, snap: Snapshot, producer: AIOKafkaProducer | None, committed: dict[Any, int]
    ) -> Outcome:
        """Steps 2-6 for one snapshot, with the task's own producer (exactly-once)
        or the shared one (`producer` None); `committed`: the task's input
        offsets committed before, so at-least-once commits only what moved."""
        started = time.monotonic()
        sends: list[asyncio.Future[Any]] = []
        try:
            if producer is not None:
                work = self._transactional(snap, producer, sends)
            else:
                work = self._at_least_once(snap, committed, sends)
            outcome = await asyncio.wait_for(work, COMMIT_TIMEOUT_SECONDS)
        except ProducerFenced:
            log.warning("partition %d: producer fenced; the task moved away", snap.partition)
            _forget(sends)
            return Outcome(Status.FENCED)
        except REFUSED:
            _forget(sends)
            raise  # a missing ACL: redoing the work cannot help (the worker stops)
        except (KafkaError, TimeoutError, IllegalOperation) as exc:
            _forget(sends)
            refused = refusal(exc)
            if refused is not None:  # wrapped by the producer's sender
                raise refused from None
            # IllegalOperation is not a KafkaError: aiokafka raises it for a
            # send after its sender has put the transaction in an error state,
            # which can happen when the broker goes away in the middle of a commit.
            log.warning(
                "partition %d: commit failed (%s); rewinding to the last commit",
                snap.partition,
                type(exc).__name__,
            )
            self.metrics.commit_failures_total.inc()
            return Outcome(Status.FAILED)
        self.metrics.commit_seconds.observe(time.monotonic() - started)
        return outcome

    async def _send_all(
        self, snap: Snapshot, producer: AIOKafkaProducer, sends: list[asyncio.Future[Any]]
    ) -> tuple[Any, int, Any]:
        """Steps 3 and 4. Returns the future of the last changelog batch (or
        None), its record count, and the future of the marker's write; every
        send's future is added to `sends`."""
        append = sends.append
        for topic, key, value, headers, partition in snap.outbox:  # 3
            append(await producer.send(topic, value, key=key, headers=headers, partition=partition))
        marker_future = None
        changelog = snap.changelog
        if snap.marker is not None:  # 4
            marker_future = await producer.send(
                changelog.topic, snap.marker, key=MARKER_KEY, partition=changelog.partition
            )
            append(marker_future)
        sent = await send_batches(
            producer, changelog.topic, changelog.partition, snap.writes.items()
        )
        sends += [future for future, _ in sent]
        last_batch, count = sent[-1] if sent else (None, 0)
        return last_batch, count, marker_future

    async def _transactional(
        self, snap: Snapshot, producer: AIOKafkaProducer, sends: list[asyncio.Future[Any]]
    ) -> Outcome:
        pause = self.last_end.get(snap.partition, 0.0) + TRANSACTION_GAP - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
        await producer.begin_transaction()  # 2
        try:
            sent = await self._send_all(snap, producer, sends)
        except (IllegalOperation, AssertionError) as exc:
            # aiokafka takes no more sends once its sender has failed the
            # transaction (a partition the broker would not add to it: a
            # missing ACL, say), and asserts on a send caught half-way. Its
            # commit raises that failure; raise it, else report the send's.
            with contextlib.suppress(IllegalOperation, AssertionError):
                await producer.commit_transaction()
            raise IllegalOperation(f"send refused: {type(exc).__name__}") from exc
        offsets = {tp: OffsetAndMetadata(pos, "") for tp, pos in snap.positions.items()}
        await producer.send_offsets_to_transaction(offsets, self.group_id)  # 5
        await producer.commit_transaction()  # 6
        self.last_end[snap.partition] = time.monotonic()
        return self._committed(*sent)

    async def _at_least_once(
        self, snap: Snapshot, committed: dict[Any, int], sends: list[asyncio.Future[Any]]
    ) -> Outcome:
        producer = self.shared_producer
        assert producer is not None
        sent = await self._send_all(snap, producer, sends)
        await producer.flush()  # 6: every send acknowledged, then the offsets
        offsets = {tp: pos for tp, pos in snap.positions.items() if committed.get(tp) != pos}
        if offsets:
            await self.consumer.commit(offsets)
        return self._committed(*sent)

    @staticmethod
    def _committed(batch: Any, count: int, marker_future: Any) -> Outcome:
        changelog_offset = batch.result().offset + count if batch is not None else None
        marker_offset = marker_future.result().offset if marker_future is not None else None
        return Outcome(Status.COMMITTED, changelog_offset, marker_offset)


def _forget(sends: list[asyncio.Future[Any]]) -> None:
    """The sends of a commit that failed: their errors are the commit's, reported
    once by it; read each (now or when it ends) so asyncio does not log every
    one with a traceback."""
    for future in sends:
        if future.done():
            _read(future)
        else:
            future.add_done_callback(_read)


def _read(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
