"""The worker: start-up, the consume–score–produce cycle and shutdown.

The cycle, on one asyncio loop:
  getmany (a batch from every assigned input partition)
  → for each partition's records, in offset order: decode, enrich, score,
    queue the outputs on the partition's task (`Processor`)
  → commit every task with work (`Checkpoint`) once `SCORER_COMMIT_INTERVAL`
    has passed, or at once when the batch was the last one waiting (a worker
    that keeps up commits, and so publishes its alerts, every cycle), never
    sooner than `SCORER_COMMIT_MIN_GAP` after the last commit began.
The compacted inputs are followed beside it (`followers`); the assignment is
the `TaskManager`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

from scorer import gcpolicy, native
from scorer.config import Settings
from scorer.kafka.client import client_options, partitions_of, producer_options, stop_consumer
from scorer.kafka.dlq import dlq_headers
from scorer.kafka.follower import Follower
from scorer.kafka.topics import Topics, ensure_topics
from scorer.logs import BrokerOutage, configure_logging
from scorer.scoring.engine import Engine
from scorer.service.runner import serve_service
from scorer.service.web import WebServer
from scorer.stream.assignor import TaskAssignor
from scorer.stream.checkpoint import Checkpoint, CommitFailed
from scorer.stream.metrics import Metrics
from scorer.stream.processor import Processor
from scorer.stream.tables import Firmographics, Icps
from scorer.stream.tasks import Task, TaskFactory, TaskManager

log = logging.getLogger("scorer.worker")
# SIGTERM to exit: below the 10 s most orchestrators wait before SIGKILL.
SHUTDOWN_SECONDS = 8.0
# Records per getmany: 1,000 events are about 30 ms of work.
MAX_BATCH = 1_000
# While a commit is in flight, the loop yields after every SLICE records: a
# transaction is five round trips, each resumed only when the loop turns, so
# a batch scored without yielding stalls it (with whole 1,000-record batches
# a commit took 100 ms at half load and 670 ms at 80 % on the bench).
SLICE = 100
# A fetch returns once it has this much, or after FETCH_MAX_WAIT_MS: under a
# steady trickle, one fetch per few milliseconds instead of one per record or
# two (each fetch costs a request, a response and a socket write).
FETCH_MIN_BYTES = 64 * 1024
FETCH_MAX_WAIT_MS = 10
FETCH_RETRY_SECONDS = 1.0


class Worker:
    """One `scorer worker` process."""

    def __init__(
        self, settings: Settings, metrics: Metrics | None = None, outage: BrokerOutage | None = None
    ) -> None:
        self.settings = settings
        self.topics = Topics.from_settings(settings)
        self.metrics = metrics if metrics is not None else Metrics()
        self.outage = outage if outage is not None else BrokerOutage()
        self.engine = Engine(dedup_window=settings.dedup_window)
        self.firmographics = Firmographics(self.engine, self.metrics, settings.max_message_bytes)
        self.icps = Icps(self.engine, self.metrics)
        self.stopping = asyncio.Event()
        self.started = time.monotonic()
        self.fetch_error: str | None = None
        self.side_producer: AIOKafkaProducer | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.manager: TaskManager | None = None
        self.background: list[asyncio.Task[Any]] = []
        self.side_sends: set[asyncio.Future[Any]] = set()
        self.first_event_logged = False
        self.web = WebServer(settings.web_port, self.metrics.registry, self.not_ready)
        self.icp_follower = Follower(settings, self.topics.icp, self.icps.apply, self.dead_letter)
        self.firm_follower = Follower(
            settings, self.topics.firmographics, self.firmographics.apply, self.dead_letter
        )

    # -- health ------------------------------------------------------------------

    def not_ready(self) -> str | None:
        """Why /readyz says 503, or None when ready."""
        if not self.icp_follower.loaded.is_set() or not self.firm_follower.loaded.is_set():
            return "reading ICPs and firmographics"
        manager = self.manager
        if manager is None or not manager.assigned_once.is_set():
            return "waiting for an assignment"
        if manager.rebalancing:
            return "rebalancing"
        if not manager.tasks:
            return "no partitions assigned"
        if self.fetch_error is not None:
            return f"cannot read input: {self.fetch_error}"
        return None

    def lag(self) -> list[tuple[tuple[str, int], int]]:
        """Records behind the end of each input partition this worker owns."""
        consumer, manager = self.consumer, self.manager
        if consumer is None or manager is None:
            return []
        behind = []
        for task in list(manager.tasks.values()):
            for tp, position in list(task.positions.items()):
                end = consumer.last_stable_offset(tp)
                if end is not None and end >= 0:
                    behind.append(((tp.topic, tp.partition), max(0, end - position)))
        return behind

    # -- side outputs ------------------------------------------------------------

    def dead_letter(self, record: Any, reason: str, detail: str) -> None:
        """A bad firmographics or ICP record (outside any task) to the DLQ."""
        headers = dlq_headers(
            reason, detail, record.topic, record.partition, record.offset, record.headers
        )
        self.metrics.dlq(reason)
        producer = self.side_producer
        if producer is not None:
            send = producer.send(self.topics.dlq, record.value, key=record.key, headers=headers)
            future = asyncio.ensure_future(send)
            self.side_sends.add(future)
            future.add_done_callback(self._side_sent)

    def _side_sent(self, future: asyncio.Future[Any]) -> None:
        self.side_sends.discard(future)
        if not future.cancelled() and future.exception() is not None:
            log.error("a dead letter could not be sent: %s", future.exception())

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        settings, topics = self.settings, self.topics
        created = await ensure_topics(settings, topics, check_partitions=True)
        if created:
            log.info("created topics: %s", ", ".join(created))
        await self.web.start()
        self.metrics.watch(self.lag, lambda: self.not_ready() is None)
        self.side_producer = AIOKafkaProducer(**producer_options(settings))
        await self.side_producer.start()
        self.background += [
            asyncio.create_task(self.icp_follower.run(), name="icp-follower"),
            asyncio.create_task(self.firm_follower.run(), name="firmographics-follower"),
        ]
        loaded = asyncio.gather(self.icp_follower.loaded.wait(), self.firm_follower.loaded.wait())
        stopping = asyncio.ensure_future(self.stopping.wait())
        await self._until(loaded, stopping, *self.background)
        stopping.cancel()
        if self.stopping.is_set():
            return
        gcpolicy.settle()  # the firmographics and ICPs are loaded
        consumer = AIOKafkaConsumer(
            **client_options(settings),
            group_id=settings.app_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            session_timeout_ms=int(settings.session_timeout * 1000),
            heartbeat_interval_ms=int(min(3.0, settings.session_timeout / 3) * 1000),
            max_partition_fetch_bytes=2 * 1024 * 1024,
            fetch_min_bytes=FETCH_MIN_BYTES,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            partition_assignment_strategy=(TaskAssignor,),
        )
        self.consumer = consumer
        await consumer.start()
        partitions = len(await partitions_of(client_options(settings), topics.visitor))
        shared = None if settings.guarantee == "exactly_once" else self.side_producer
        checkpoint = Checkpoint(settings.app_id, consumer, self.metrics, shared)
        self.checkpoint = checkpoint
        self.manager = TaskManager(
            settings, topics, TaskFactory(settings, topics, self.metrics), checkpoint
        )
        self.manager.bind(consumer)
        self.processor = Processor(
            settings, topics, self.engine, self.firmographics, self.metrics, partitions
        )
        consumer.subscribe(list(topics.inputs()), listener=self.manager)
        self.background.append(asyncio.create_task(self._watch_broker(), name="broker-watch"))

    @staticmethod
    async def _until(awaitable: Any, *watched: asyncio.Task[Any]) -> None:
        """Wait for `awaitable`, unless a watched task fails first (raise its error)."""
        waiter = asyncio.ensure_future(awaitable)
        done, _ = await asyncio.wait([waiter, *watched], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            error = None if task is waiter or task.cancelled() else task.exception()
            if error is not None:
                waiter.cancel()
                raise error
        if not waiter.done():
            waiter.cancel()

    async def run(self) -> None:
        """The cycle, until `stop()`; then the last commit."""
        if self.consumer is None:  # stopped during start-up
            await self.close()
            return
        consumer, manager, processor, checkpoint = (
            self.consumer,
            self.manager,
            self.processor,
            self.checkpoint,
        )
        assert consumer is not None and manager is not None
        interval, min_gap = self.settings.commit_interval, self.settings.commit_min_gap
        last_commit = time.monotonic()
        due_at: float | None = None  # when the next commit may begin, if not yet
        retry = FETCH_RETRY_SECONDS
        while not self.stopping.is_set():
            for job in self.background:
                if job.done() and not job.cancelled() and job.exception() is not None:
                    raise job.exception()  # type: ignore[misc]
            generation = manager.generation
            # Short waits while a commit is in flight (the next one starts as
            # soon as it ends) or due soon.
            if checkpoint.busy:
                wait_ms = 5
            elif due_at is not None:
                wait_ms = min(100, max(1, int((due_at - time.monotonic()) * 1000) + 1))
            else:
                wait_ms = 100
            try:
                batch = await consumer.getmany(timeout_ms=wait_ms, max_records=MAX_BATCH)
            except (KafkaConnectionError, KafkaTimeoutError):
                continue  # the client reconnects by itself; BrokerOutage logs it
            except KafkaError as exc:
                self._fetch_failed(exc, retry)
                await asyncio.sleep(retry)
                retry = min(30.0, retry * 2)
                continue
            if self.fetch_error is not None:
                log.warning("input readable again")
                self.fetch_error = None
            retry = FETCH_RETRY_SECONDS
            async with manager.lock:
                if generation != manager.generation:
                    manager.rewind()  # fetched across a rebalance: read it again
                    continue
                tasks = manager.tasks
                if checkpoint.lost or any(task.broken for task in tasks.values()):
                    # A commit failed while this batch was fetched: rewind first;
                    # the batch may hold records past a rewound position.
                    await self._settle(manager, checkpoint)
                    continue
                for tp, records in batch.items():
                    task = tasks.get(tp.partition)
                    position = task.positions.get(tp) if task is not None else None
                    if task is None or position is None:
                        continue
                    if records[0].offset < position:  # already processed
                        records = [r for r in records if r.offset >= position]
                        if not records:
                            continue
                    for start in range(0, len(records), SLICE):
                        part = records[start : start + SLICE]
                        processor.process(task, part)
                        task.positions[tp] = part[-1].offset + 1
                        if checkpoint.busy:
                            await asyncio.sleep(0)  # let the commit's next round trip go
                if not self.first_event_logged and processor.first_event_at is not None:
                    self.first_event_logged = True
                    log.info(
                        "first event processed %.1f s after start",
                        processor.first_event_at - self.started,
                    )
                if checkpoint.busy:
                    # getmany returns buffered records without suspending: let the
                    # commit in flight (and the clients' own tasks) move on.
                    await asyncio.sleep(0)
                    continue
                if not await self._settle(manager, checkpoint):
                    continue
                # Behind: commit every SCORER_COMMIT_INTERVAL. Caught up: after
                # every batch. Either way no sooner than SCORER_COMMIT_MIN_GAP
                # after the last commit began.
                now = time.monotonic()
                gap = min_gap if self._caught_up(consumer, tasks) else max(interval, min_gap)
                due_at = last_commit + gap if now - last_commit < gap else None
                if due_at is None:
                    await self._advance_positions(consumer, manager)
                    if checkpoint.start(list(tasks.values())):
                        last_commit = now
        await self.drain()

    @staticmethod
    def _caught_up(consumer: AIOKafkaConsumer, tasks: dict[int, Task]) -> bool:
        """Nothing more is waiting on any input: commit now rather than at the interval."""
        for task in tasks.values():
            for tp, position in task.positions.items():
                end = consumer.last_stable_offset(tp)
                if end is not None and position < end:
                    return False
        return True

    async def _advance_positions(self, consumer: AIOKafkaConsumer, manager: TaskManager) -> None:
        """Input positions move past control records (transaction markers), so a
        caught-up partition shows no lag."""
        assignment = consumer.assignment()
        for task in manager.tasks.values():
            for tp in task.inputs:
                if tp in assignment and tp in task.positions:
                    position = await consumer.position(tp)
                    if position > task.positions[tp]:
                        task.positions[tp] = position

    async def _settle(self, manager: TaskManager, checkpoint: Checkpoint) -> bool:
        """The outcome of the last commit, under the lock: False if a task's
        failed (it is rewound to its last commit, its producer renewed, and
        every owned input read again from its task's position)."""
        failed = False
        try:
            await checkpoint.wait()
        except CommitFailed:
            failed = True
        for task in checkpoint.lost:
            manager.tasks.pop(task.partition, None)
            await manager.factory.close(task)
        checkpoint.lost.clear()
        broken = [task for task in manager.tasks.values() if task.broken]
        if failed or broken:
            for task in broken:
                task.rewind()
            await self._renew_broken(manager)
            manager.rewind()
            return False
        if any(task.committed for task in manager.tasks.values()):
            self.outage.healthy()
        return True

    async def _renew_broken(self, manager: TaskManager) -> None:
        delay = 1.0
        while not self.stopping.is_set():
            broken = [task for task in manager.tasks.values() if task.broken]
            if not broken:
                return
            try:
                for task in broken:
                    await manager.factory.renew(task)
            except KafkaError as exc:
                log.info("producer not renewed yet (%s); retrying in %.0f s", exc, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), delay)
                delay = min(10.0, delay * 2)

    def _fetch_failed(self, exc: KafkaError, retry: float) -> None:
        kind = type(exc).__name__
        self.metrics.fetch_errors_total.labels(kind).inc()
        if self.fetch_error is None:
            log.error(
                "cannot read an input batch (%s: %s); not ready, retrying every %.0f-30 s. "
                "See README, 'Input that cannot be read'.",
                kind,
                exc,
                retry,
            )
        self.fetch_error = kind

    async def _watch_broker(self) -> None:
        """While the broker is reported lost, probe it every few seconds, so
        'back after T s' is logged even when no input arrives."""
        consumer = self.consumer
        assert consumer is not None
        while True:
            await asyncio.sleep(2.0)
            if self.outage.down_since is None:
                continue
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.topics(), timeout=2.0)
                self.outage.healthy()

    def stop(self) -> None:
        self.stopping.set()

    async def drain(self) -> None:
        """Finish: the last commit, leave the group, stop the clients."""
        manager, consumer = self.manager, self.consumer
        if manager is not None and consumer is not None:
            async with manager.lock:
                with contextlib.suppress(CommitFailed):
                    await self.checkpoint.commit_all(list(manager.tasks.values()))
                await manager.close_all()
        await self.close()

    async def close(self) -> None:
        for task in self.background:
            task.cancel()
        for task in self.background:
            with contextlib.suppress(BaseException):
                await task
        if self.manager is not None:
            await self.manager.close_all()
        if self.consumer is not None:
            await stop_consumer(self.consumer)  # leaves the group
        if self.side_producer is not None:
            await self.side_producer.stop()
        await self.web.stop()


async def serve(settings: Settings) -> int:
    """`scorer worker`: the exit statuses of `scorer.service.runner`."""
    outage = configure_logging(settings.log_level, settings.log_format)
    log.info("scoring core: %s", native.describe())
    return await serve_service(Worker(settings, outage=outage), "worker", log, SHUTDOWN_SECONDS)


def run_worker(settings: Settings) -> int:
    return asyncio.run(serve(settings))
