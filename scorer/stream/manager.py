"""The task manager: the one owner of this worker's tasks.

As Kafka Streams' `TaskManager`, it alone creates, restores, closes and
rewinds tasks, follows the group's assignment (it is the consumer's
rebalance listener), hands records to the processor, decides when to commit
(`maybe_commit`) and deals with what a commit returns: a committed task
records it (`post_commit`), a failed one is rewound to its last commit with
a new producer, a fenced one is dropped. The worker's loop only polls and
calls it; the committer only runs transactions; `InputFlow`
(`scorer.stream.flow`) says which inputs a task's merge waits for and
pauses the consumer's, reading the tasks but changing none.

The loop holds `lock` while it processes a batch and commits; the rebalance
callbacks take it too, so a task never moves mid-batch. `generation`
changes on every assignment change: a batch fetched across one is dropped
and its partitions read again from the tasks' positions.

A failed task is rewound only here, under the lock, before anything more is
scored, and the consumer is sent back to the rewound positions: a rewind in
the background would let a batch fetched before the seek be scored past the
rewound position, and the records between would be lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from scorer.config import Settings
from scorer.errors import AccessDenied
from scorer.kafka.refusals import REFUSED, explain
from scorer.kafka.topics import Topics
from scorer.logs import BrokerOutage
from scorer.scoring.state import SWEEPS_PER_IDLE
from scorer.stream.committer import Committer, Status
from scorer.stream.erasing import ErasureLog
from scorer.stream.flow import InputFlow
from scorer.stream.metrics import Metrics
from scorer.stream.ordering import slices
from scorer.stream.processor import Processor
from scorer.stream.purging import RekeyPurger
from scorer.stream.task_factory import TaskFactory
from scorer.stream.tasks import Snapshot, Task, TaskState

log = logging.getLogger("scorer.worker")
# While a commit is in flight, processing yields after every SLICE records: a
# transaction is five round trips, each resumed only when the loop turns, so
# a whole batch scored without yielding holds the commit up by the batch's
# scoring time at every round trip. 100 records are a few milliseconds.
SLICE = 100
# Idle accounts leave the stores (account expiry) at most this often, in wall time, or
# when a task's event time has moved on by 1/SWEEPS_PER_IDLE of the TTL plus the dedup
# window (a replay or a backlog runs days of event time in 30 s).
SWEEP_SECONDS = 30.0
# With nothing to commit for this long, the worker writes its stores' committed
# writes to RocksDB, a slice a loop turn, rather than at the commits after the
# next events arrive (scorer.stream.store.FLUSH_SLICE).
IDLE_FLUSH_AFTER = 0.5
# How long a batch waits for the erasures follower to catch up with a task.
ERASURE_WAIT = 0.1


class TaskManager(ConsumerRebalanceListener):  # type: ignore[misc]
    """Owns the tasks of this worker, their assignment and their commits."""

    def __init__(
        self,
        settings: Settings,
        topics: Topics,
        factory: TaskFactory,
        committer: Committer,
        processor: Processor,
        metrics: Metrics,
        outage: BrokerOutage,
        stopping: asyncio.Event,
        erasures: ErasureLog | None = None,
        purger: RekeyPurger | None = None,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.factory = factory
        self.committer = committer
        self.processor = processor
        self.metrics = metrics
        self.outage = outage
        self.stopping = stopping
        self.erasures = erasures
        self.purger = purger
        self.consumer: AIOKafkaConsumer | None = None
        self.tasks: dict[int, Task] = {}
        self.lock = asyncio.Lock()
        self.generation = 0
        self.rebalancing = False
        self.assigned_once = asyncio.Event()
        self.inflight: asyncio.Future[Any] | None = None
        self.last_commit = time.monotonic()
        self.flushing_idle = False  # a slice was written on the last idle turn: poll briefly
        self.due_at: float | None = None  # when the next commit may begin, if not yet
        # What each task's merge waits for, and which inputs are paused.
        self.flow = InputFlow(settings.max_task_idle, metrics)
        # An assignment that could not be taken on (aiokafka logs a listener's
        # error and goes on): raised by the next `process`, so the worker
        # exits rather than scoring on a half-restored store.
        self.failure: BaseException | None = None

    def bind(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = self.flow.consumer = consumer

    # -- assignment ------------------------------------------------------------------

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.rebalancing = True
        self.generation += 1
        async with self.lock:
            # Commit what is done: the next owner resumes from there.
            partitions = {tp.partition for tp in revoked}
            tasks = [task for p, task in self.tasks.items() if p in partitions]
            if not await self.commit_all(tasks):
                log.warning("commit before a rebalance failed; the next owner redoes the work")

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        try:
            await self._take_on(assigned)
        except REFUSED as exc:
            # Not raised: aiokafka would log it with a traceback. The next
            # `process` raises it, and the worker stops with one line.
            self.failure = AccessDenied(explain(exc, "worker", self.settings))
            return
        except Exception as exc:
            self.failure = exc
            raise
        self.rebalancing = False
        self.assigned_once.set()

    async def _take_on(self, assigned: list[TopicPartition]) -> None:
        consumer = self.consumer
        assert consumer is not None
        async with self.lock:
            self.generation += 1
            wanted = {tp.partition for tp in assigned if tp.topic in self.topics.inputs()}
            for partition in [p for p in self.tasks if p not in wanted]:
                await self.factory.close(self.tasks.pop(partition))
            new = sorted(wanted - set(self.tasks))
            made = await asyncio.gather(
                *(self.factory.create(p) for p in new), return_exceptions=True
            )
            created = [task for task in made if isinstance(task, Task)]
            failed = [error for error in made if isinstance(error, BaseException)]
            if failed:  # close the ones that started: the worker stops
                for task in created:
                    await self.factory.close(task)
                raise failed[0]
            # Fenced: the committed offsets are stable now. Read them, seek.
            for task in created:
                self.tasks[task.partition] = task
            mine = set(consumer.assignment())
            self.flow.reset()
            for task in self.tasks.values():
                task.queue.clear()  # read again from the committed offsets
                for tp in task.inputs:
                    if tp not in mine:  # a topic with fewer partitions
                        continue
                    committed = await consumer.committed(tp)
                    if committed is None:
                        await consumer.seek_to_beginning(tp)
                        committed = await consumer.position(tp)
                    else:
                        consumer.seek(tp, committed)
                    task.start_at(tp, committed)
            await self.factory.restore(list(created))
            log.info("tasks: partitions %s", sorted(self.tasks))

    async def close_all(self) -> None:
        for task in list(self.tasks.values()):
            await self.factory.close(task)
        self.tasks.clear()

    # -- processing ------------------------------------------------------------------

    async def process(self, batch: dict[TopicPartition, list[Any]], generation: int) -> bool:
        """A fetched batch, each partition's records in offset order, queued on its
        task and applied in timestamp order. False when the batch was dropped:
        fetched across a rebalance, or while a task waits to be rewound (its
        partitions are read again)."""
        if self.failure is not None:
            raise self.failure
        if generation != self.generation:
            self._seek_to_positions()
            return False
        tasks = self.tasks
        if (
            any(task.state is not TaskState.RUNNING for task in tasks.values())
            and not await self.settle()
        ):
            return False  # a task rewound: every input is read again from its position
        # (settled: fenced tasks are gone, the rest run; the batch goes on to them)
        if not self._erase():
            await asyncio.sleep(ERASURE_WAIT)
            self._seek_to_positions()
            return False
        for tp, records in batch.items():
            task = tasks.get(tp.partition)
            if task is None or task.state is not TaskState.RUNNING:
                continue  # rewound (and the consumer sent back) at the next settle
            position = task.positions.get(tp)
            if position is not None:
                task.queue.add(tp, records, position)
        # Each task's inputs in timestamp order (scorer.stream.ordering): what cannot
        # go yet waits in its queue for the next batch.
        processor = self.processor
        for task in list(tasks.values()):
            if task.state is not TaskState.RUNNING:
                continue
            runs = task.queue.take(await self.flow.waiting(task))
            for part, ends in slices(runs, SLICE):
                processor.process(task, part)
                for tp, end in ends.items():
                    task.advance(tp, end)
                if self.busy:
                    await asyncio.sleep(0)  # let the commit's next round trip go
        self.flow.hold_back(tasks.values())
        return True

    def _erase(self) -> bool:
        """Erasure requests read since the last batch, applied to every task (they go
        into its next commit: scorer.stream.erasing). False while a task has
        applied requests this worker has not read yet: the batch waits."""
        erasures = self.erasures
        if erasures is None:
            return True
        erasures.release()
        tasks = list(self.tasks.values())
        if any(erasures.behind(task) for task in tasks):
            return False
        for task in tasks:
            if erasures.erase(task):
                log.info("erasure requests applied to task %d", task.partition)
        return True

    def poll_timeout_ms(self) -> int:
        """How long the next fetch may wait: short while a commit is in flight
        (the next may start as soon as it ends) or due soon."""
        if self.busy or self.flushing_idle:
            return 5
        if self.due_at is not None:
            return min(100, max(1, int((self.due_at - time.monotonic()) * 1000) + 1))
        return 100

    # -- committing ------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self.inflight is not None and not self.inflight.done()

    async def maybe_commit(self) -> None:
        """Start a commit of every task with work when one is due. Behind: every
        SCORER_COMMIT_INTERVAL; caught up: after every batch; either way no
        sooner than SCORER_COMMIT_MIN_GAP after the last commit began."""
        if self.busy:
            # getmany returns buffered records without suspending: let the
            # commit in flight (and the clients' own tasks) move on.
            await asyncio.sleep(0)
            return
        if not await self.settle():
            return
        settings, now = self.settings, time.monotonic()
        interval, min_gap = settings.commit_interval, settings.commit_min_gap
        gap = min_gap if self.flow.caught_up(self.tasks.values()) else max(interval, min_gap)
        self.due_at = self.last_commit + gap if now - self.last_commit < gap else None
        if self.due_at is None:
            await self._advance_positions()
            self._sweep(now)
            if self._start(list(self.tasks.values())):
                self.last_commit, self.flushing_idle = now, False
            elif now - self.last_commit >= IDLE_FLUSH_AFTER:
                self.flushing_idle = self._flush_idle()
        if self.purger is not None:  # what the tasks have committed past, off the re-key topic
            self.purger.maybe_purge(self.tasks, now)

    def _flush_idle(self) -> bool:
        """Nothing to commit: one slice of a task's committed writes into its
        backing store, the tasks one after the other. False if none had any."""
        for task in self.tasks.values():
            if task.state is TaskState.RUNNING and task.store.flush_step(True):
                return True
        return False

    async def commit_all(self, tasks: list[Task]) -> bool:
        """Everything done so far on `tasks`, committed before returning; False
        if a commit (the one in flight or this one) failed (its task rewound)."""
        await self._wait_inflight()
        self._start(tasks)
        await self._wait_inflight()
        ok = True
        for task in tasks:
            if task.state is TaskState.BROKEN:
                task.rewind()
                ok = False
        return ok

    def _sweep(self, now: float) -> None:
        """Account expiry's housekeeping, before a commit, so the tombstones go in it."""
        settings = self.settings
        idle = settings.account_ttl + settings.dedup_window
        step = idle / SWEEPS_PER_IDLE
        for task in self.tasks.values():
            if task.state is not TaskState.RUNNING:
                continue
            moved = task.event_time - idle - task.store.swept_before >= step
            if moved or now - task.swept_at >= SWEEP_SECONDS:
                expired = task.expire_idle(settings.account_ttl, settings.dedup_window, now)
                if expired:
                    self.metrics.accounts_expired_total.inc(expired)

    def _start(self, tasks: list[Task]) -> bool:
        """Snapshot every running task with work and commit them concurrently,
        in the background. Only when no commit is in flight."""
        assert not self.busy
        commits = [
            self._commit(task, task.prepare_commit())
            for task in tasks
            if task.state is TaskState.RUNNING and task.has_work
        ]
        if not commits:
            return False
        self.inflight = asyncio.ensure_future(asyncio.gather(*commits, return_exceptions=True))
        return True

    async def _commit(self, task: Task, snapshot: Snapshot) -> None:
        try:
            outcome = await self.committer.commit(snapshot, task.producer, task.committed)
        except REFUSED as exc:  # raised by `_wait_inflight`: the worker stops
            raise AccessDenied(explain(exc, "worker", self.settings, "Write")) from None
        if outcome.status is Status.COMMITTED:
            task.post_commit(snapshot, outcome.changelog_offset, outcome.marker_offset)
            now = time.time()
            for produced_at in snapshot.alert_times:
                self.metrics.end_to_end.observe(now - produced_at)
        elif outcome.status is Status.FENCED:
            task.lose()
        else:
            task.fail()

    async def _wait_inflight(self) -> None:
        """The commit in flight, if any, finished (a bug in it is raised here)."""
        inflight, self.inflight = self.inflight, None
        if inflight is None:
            return
        for result in await inflight:
            if isinstance(result, BaseException):
                raise result

    # -- failures --------------------------------------------------------------------

    async def settle(self) -> bool:
        """The outcome of the last commit: False if a task's failed (it is
        rewound to its last commit, its producer renewed, and every owned input
        read again from its task's position). Fenced tasks are dropped."""
        await self._wait_inflight()
        for task in [t for t in self.tasks.values() if t.state is TaskState.LOST]:
            del self.tasks[task.partition]
            await self.factory.close(task)
        broken = [task for task in self.tasks.values() if task.state is TaskState.BROKEN]
        if broken:
            for task in broken:
                task.rewind()
            await self._revive(broken)
            self._seek_to_positions()
            return False
        if any(task.committed for task in self.tasks.values()):
            self.outage.healthy()
        return True

    async def _revive(self, broken: list[Task]) -> None:
        """A new producer for each broken task, retried until the broker answers."""
        delay = 1.0
        while not self.stopping.is_set():
            try:
                for task in broken:
                    if task.state is TaskState.BROKEN:
                        task.revive(await self.factory.renew(task))
                return
            except REFUSED:
                raise  # a missing ACL (transactional id): retrying cannot help
            except KafkaError as exc:
                log.info("producer not renewed yet (%s); retrying in %.0f s", exc, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), delay)
                delay = min(10.0, delay * 2)

    def _seek_to_positions(self) -> None:
        """Seek every owned input back to its task's position (a dropped batch);
        what the tasks' queues held is fetched again."""
        consumer = self.consumer
        assert consumer is not None
        self.flow.resume_all()
        assignment = consumer.assignment()
        for task in self.tasks.values():
            task.queue.clear()
            for tp, position in task.positions.items():
                if tp in assignment:
                    consumer.seek(tp, position)

    async def _advance_positions(self) -> None:
        """Input positions move past control records (transaction markers), so a
        caught-up partition shows no lag. Only for an input with nothing in its
        task's queue: the consumer's position is past the queued records too, and
        an offset committed past them would skip them after a restart."""
        consumer = self.consumer
        assert consumer is not None
        assignment = consumer.assignment()
        for task in self.tasks.values():
            for tp in task.inputs:
                if tp in assignment and tp in task.positions and not task.queue.buffered(tp):
                    task.advance(tp, await consumer.position(tp))
