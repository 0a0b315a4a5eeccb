"""The worker: start-up, the consume–score–produce cycle and shutdown.

The cycle, on one asyncio loop, reads as Kafka Streams' StreamThread:
  poll: getmany, a batch from every assigned input partition;
  process: the task manager queues each partition's records on its task
    and hands them, in timestamp order across the task's inputs
    (`scorer.stream.ordering`), to the `Processor` (decode, enrich, score,
    queue the outputs on the task);
  maybe commit: the task manager commits every task with work once
    `SCORER_COMMIT_INTERVAL` has passed, or at once when the batch was the
    last one waiting (a worker that keeps up publishes its alerts every
    cycle), never sooner than `SCORER_COMMIT_MIN_GAP` after the last began.
The loop never touches a task: tasks, their assignment, commits and
failures are the `TaskManager`'s. The compacted inputs (ICPs, erasure requests,
firmographics) are followed beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

from scorer import gcpolicy, mallocpolicy, native
from scorer.config import Settings
from scorer.errors import AccessDenied
from scorer.kafka.client import client_options, partitions_of, producer_options, stop_consumer
from scorer.kafka.dlq import dlq_headers
from scorer.kafka.follower import Follower
from scorer.kafka.refusals import REFUSED, check_readable, explain
from scorer.kafka.topics import Topics, ensure_topics
from scorer.logs import BrokerOutage, configure_logging
from scorer.scoring.engine import Engine
from scorer.service.runner import raise_failed, serve_service, until
from scorer.service.web import WebServer
from scorer.stream.assignor import TaskAssignor
from scorer.stream.committer import Committer
from scorer.stream.erasing import ErasureLog
from scorer.stream.manager import TaskManager
from scorer.stream.metrics import Metrics
from scorer.stream.processor import Processor
from scorer.stream.purging import RekeyPurger
from scorer.stream.tables import Firmographics, Icps
from scorer.stream.task_factory import TaskFactory

log = logging.getLogger("scorer.worker")
# SIGTERM to exit: below the 10 s most orchestrators wait before SIGKILL.
SHUTDOWN_SECONDS = 8.0
# Records per getmany: 1,000 events are about 30 ms of work.
MAX_BATCH = 1_000
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
        self.engine = Engine(dedup_window=settings.dedup_window, account_ttl=settings.account_ttl)
        self.firmographics = Firmographics(self.metrics, settings.max_message_bytes)
        self.icps = Icps(self.engine, self.metrics)
        self.stopping = asyncio.Event()
        self.started = time.monotonic()
        self.fetch_error: str | None = None
        self.side_producer: AIOKafkaProducer | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.manager: TaskManager | None = None
        self.purger: RekeyPurger | None = None
        self.background: list[asyncio.Task[Any]] = []
        self.side_sends: set[asyncio.Future[Any]] = set()
        self.first_event_logged = False
        self.web = WebServer(
            settings.web_port,
            self.metrics.registry,
            self.not_ready,
            host=settings.web_host,
            token=settings.web_token,
            scope=settings.web_token_scope,
        )
        self.icp_follower = Follower(settings, self.topics.icp, self.icps.apply, self.dead_letter)
        self.firm_follower = Follower(
            settings, self.topics.firmographics, self.firmographics.apply, self.dead_letter
        )
        self.erasures = ErasureLog(settings, self.topics.erasure_progress, self.metrics)
        self.erasure_follower = Follower(
            settings, self.topics.erasures, self.erasures.apply, self.dead_letter
        )

    # -- health ------------------------------------------------------------------

    def not_ready(self) -> str | None:
        """Why /readyz says 503, or None when ready."""
        followers = (self.icp_follower, self.firm_follower, self.erasure_follower)
        if not all(follower.loaded.is_set() for follower in followers):
            return "reading ICPs, firmographics and erasure requests"
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

    def accounts_in_memory(self) -> int:
        """Accounts decoded in the stores of this worker's tasks."""
        manager = self.manager
        tasks = list(manager.tasks.values()) if manager is not None else []
        return sum(len(task.store.cache) for task in tasks)

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
        try:
            await ensure_topics(settings, topics, topics.worker(), check_partitions=True)
        except REFUSED as exc:  # missing, and this principal may not create them
            raise AccessDenied(explain(exc, "worker", settings, "Create")) from None
        # The group's fetches and the restores would find a missing Read late
        # (or after a commit refused); find it now. The followers read the rest.
        await check_readable(settings, "worker", [*topics.inputs(), topics.changelog])
        await self.web.start()
        self.metrics.watch(self.lag, lambda: self.not_ready() is None, self.accounts_in_memory)
        self.side_producer = AIOKafkaProducer(**producer_options(settings))
        await self.side_producer.start()
        self.background += [
            asyncio.create_task(self.icp_follower.run(), name="icp-follower"),
            asyncio.create_task(self.firm_follower.run(), name="firmographics-follower"),
            asyncio.create_task(self.erasure_follower.run(), name="erasures-follower"),
        ]
        loaded = asyncio.gather(
            self.icp_follower.loaded.wait(),
            self.firm_follower.loaded.wait(),
            self.erasure_follower.loaded.wait(),
        )
        stopping = asyncio.ensure_future(self.stopping.wait())
        await until(loaded, stopping, *self.background)
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
        self.purger = RekeyPurger(settings, topics.rekey)
        self.processor = Processor(
            settings,
            topics,
            self.engine,
            self.firmographics,
            self.metrics,
            partitions,
            self.erasures.erasures,
        )
        self.manager = TaskManager(
            settings,
            topics,
            TaskFactory(settings, topics, self.metrics, partitions),
            Committer(settings.app_id, consumer, self.metrics, shared),
            self.processor,
            self.metrics,
            self.outage,
            self.stopping,
            self.erasures,
            self.purger,
        )
        self.manager.bind(consumer)
        consumer.subscribe(list(topics.inputs()), listener=self.manager)
        self.background.append(asyncio.create_task(self._watch_broker(), name="broker-watch"))
        if mallocpolicy.enabled():
            self.background.append(asyncio.create_task(self._trim_memory(), name="malloc-trim"))

    async def run(self) -> None:
        """Poll → process → maybe commit, until `stop()`; then the last commit."""
        consumer, manager = self.consumer, self.manager
        if consumer is None or manager is None:  # stopped during start-up
            await self.close()
            return
        retry = FETCH_RETRY_SECONDS
        while not self.stopping.is_set():
            raise_failed(self.background)
            generation = manager.generation
            try:
                batch = await consumer.getmany(
                    timeout_ms=manager.poll_timeout_ms(), max_records=MAX_BATCH
                )
            except (KafkaConnectionError, KafkaTimeoutError):
                continue  # the client reconnects by itself; BrokerOutage logs it
            except REFUSED as exc:  # a missing ACL: retrying cannot help
                raise AccessDenied(explain(exc, "worker", self.settings, "Read")) from None
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
                if not await manager.process(batch, generation):
                    continue
                self._log_first_event()
                await manager.maybe_commit()
        await self.drain()

    def _log_first_event(self) -> None:
        if not self.first_event_logged and self.processor.first_event_at is not None:
            self.first_event_logged = True
            log.info(
                "first event processed %.1f s after start",
                self.processor.first_event_at - self.started,
            )

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

    async def _trim_memory(self) -> None:
        """Every mallocpolicy.TRIM_SECONDS, the heap's free pages back to the system
        (scorer.mallocpolicy), on a thread: the loop goes on meanwhile."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(mallocpolicy.TRIM_SECONDS)
            await loop.run_in_executor(None, mallocpolicy.trim)

    def stop(self) -> None:
        self.stopping.set()

    async def drain(self) -> None:
        """Finish: the last commit, leave the group, stop the clients."""
        manager, consumer = self.manager, self.consumer
        if manager is not None and consumer is not None:
            async with manager.lock:
                await manager.commit_all(list(manager.tasks.values()))
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
        if self.purger is not None:
            await self.purger.close()
        await self.web.stop()


async def serve(settings: Settings) -> int:
    """`scorer worker`: the exit statuses of `scorer.service.runner`."""
    outage = configure_logging(settings.log_level, settings.log_format)
    log.info("scoring core: %s", native.describe())
    mallocpolicy.fix_thresholds()
    return await serve_service(Worker(settings, outage=outage), "worker", log, SHUTDOWN_SECONDS)


def run_worker(settings: Settings) -> int:
    return asyncio.run(serve(settings))
