"""Delivery: a lane per destination, the delivery log, and the input offsets
that are safe to commit.

- A `Lane` holds one destination's queue and its workers (`concurrency` of
  them), waits on its rate limit, retries retriable failures with exponential
  backoff and full jitter (honouring Retry-After), and gives up to the route
  DLQ after `max_attempts` tries, once the alert is older than `max_age`, or
  at once when the destination refused it for good. Lanes are independent: a
  destination that is down only fills its own queue.
- The `DeliveryLog` is a compacted topic keyed ``<alert_id>|<destination>``.
  Each finished delivery is written there before the input offset that
  carried it is committed, so a replay after a crash skips what was already
  delivered. Only entries above the group's committed offsets matter; the
  rest are dropped from memory, so it stays the size of the work in flight.
- `Pending` tracks, per input partition, the offsets whose deliveries are not
  all finished: the lowest of them is as far as a commit may go.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from scorer.kafka.refusals import REFUSED
from scorer.route.destinations import DeliveryError, Job, Sender
from scorer.route.metrics import RouteMetrics

log = logging.getLogger("scorer.route")
BACKOFF_BASE = 0.5
BACKOFF_CAP = 60.0

Finish = Callable[[str, Job, str, str | None, str], Awaitable[None]]
Seen = Callable[[str, Job], bool]
FINISH_RETRY_SECONDS = 1.0


def backoff(attempt: int, retry_after: float | None, rng: random.Random) -> float:
    """Seconds before the next try: Retry-After when the server gave one, else
    exponential with full jitter (AWS's "full jitter": uniform in [0, cap])."""
    if retry_after is not None:
        return min(retry_after, BACKOFF_CAP * 5)
    return rng.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1)))


class RateLimit:
    """At most `rate` starts per second, spaced evenly."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.next = 0.0

    async def wait(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        start = max(now, self.next)
        self.next = start + self.interval
        if start > now:
            await asyncio.sleep(start - now)


@dataclass(frozen=True)
class Limits:
    max_attempts: int
    max_age: float


class Lane:
    """One destination's queue, workers, rate limit and retries."""

    def __init__(
        self,
        name: str,
        sender: Sender,
        concurrency: int,
        rate: float | None,
        queue_limit: int,
        limits: Limits,
        metrics: RouteMetrics,
        finish: Finish,
        seen: Seen,
    ) -> None:
        self.name = name
        self.seen = seen
        self.sender = sender
        self.concurrency = concurrency
        self.limit = RateLimit(rate)
        self.queue_limit = queue_limit
        self.limits = limits
        self.metrics = metrics
        self.finish = finish
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self.busy = 0
        self.refused: Exception | None = None  # a delivery-log or DLQ write refused (ACL)
        self.tasks: list[asyncio.Task[None]] = []
        self.rng = random.Random()
        self.retries = metrics.retries.labels(destination=name)
        metrics.depth(name, self.depth)

    def depth(self) -> int:
        return self.queue.qsize() + self.busy

    def full(self) -> bool:
        return self.depth() >= self.queue_limit

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._work()) for _ in range(self.concurrency)]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _work(self) -> None:
        while True:
            job = await self.queue.get()
            self.busy += 1
            try:
                outcome = await self._attempt(job)
                await self._finish(job, *outcome)
            finally:
                self.busy -= 1

    async def _attempt(self, job: Job) -> tuple[str, str | None, str]:
        """(outcome, ref or detail, DLQ reason) of one job; never raises but cancellation."""
        try:
            return await self._deliver(job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or an odd answer: to the DLQ, never a stuck offset
            log.exception("%s: delivery of alert %s failed unexpectedly", self.name, job.alert_id)
            return "dlq", f"{self.name}: {type(exc).__name__}", "error"

    async def _finish(self, job: Job, outcome: str, ref: str | None, reason: str) -> None:
        """Record the end of a job; retried until the delivery log has it (broker
        trouble). A write refused for want of an ACL is kept in `refused` (the
        router stops on it) and the job's offset stays uncommitted."""
        while True:
            try:
                await self.finish(self.name, job, outcome, ref, reason)
                return
            except asyncio.CancelledError:
                raise
            except REFUSED as exc:
                self.refused = exc
                return
            except Exception as exc:
                log.warning(
                    "%s: recording alert %s failed (%s); retrying",
                    self.name,
                    job.alert_id,
                    type(exc).__name__,
                )
                await asyncio.sleep(FINISH_RETRY_SECONDS)

    async def _deliver(self, job: Job) -> tuple[str, str | None, str]:
        while True:
            if self.seen(self.name, job):  # delivered by an earlier copy of this job
                return "skipped", None, ""
            if time.time() - job.timestamp > self.limits.max_age:
                return "dlq", None, "max_age"
            await self.limit.wait()
            try:
                ref = await self.sender.send(job)
            except DeliveryError as exc:
                job.attempts += 1
                if not exc.retriable:
                    log.error("%s refused alert %s: %s", self.name, job.alert_id, exc.detail)
                    return "dlq", exc.detail, "rejected"
                if job.attempts >= self.limits.max_attempts:
                    log.warning(
                        "%s: alert %s failed %d times (%s); to the route DLQ",
                        self.name,
                        job.alert_id,
                        job.attempts,
                        exc.detail,
                    )
                    return "dlq", exc.detail, "max_attempts"
                self.retries.inc()
                await asyncio.sleep(backoff(job.attempts, exc.retry_after, self.rng))
                continue
            return "delivered", ref, ""


class Pending:
    """Offsets of one input partition whose deliveries are not all finished."""

    def __init__(self) -> None:
        self.open: dict[int, int] = {}
        self.next: int | None = None

    def add(self, offset: int, jobs: int) -> None:
        if jobs:
            self.open[offset] = jobs
        self.next = offset + 1

    def done(self, offset: int) -> None:
        left = self.open.get(offset)
        if left is None:
            return
        if left <= 1:
            del self.open[offset]
        else:
            self.open[offset] = left - 1

    def committable(self) -> int | None:
        """The offset a commit may name (the next record to read on restart)."""
        return min(self.open) if self.open else self.next

    def idle(self) -> bool:
        return not self.open


class DeliveryLog:
    """Finished (alert, destination) pairs, from and to a compacted topic."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.entries: dict[bytes, tuple[int, int]] = {}

    @staticmethod
    def key(alert_id: str, destination: str) -> bytes:
        return f"{alert_id}|{destination}".encode()

    def seen(self, alert_id: str, destination: str) -> bool:
        return self.key(alert_id, destination) in self.entries

    def apply(self, record: Any, senders: dict[str, Sender]) -> None:
        """One record read back from the topic (at start-up or a new assignment)."""
        if record.value is None or record.key is None:
            return
        try:
            value = orjson.loads(record.value)
            self.entries[record.key] = (int(value["p"]), int(value["o"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return
        sender = senders.get(str(value.get("d")))
        if sender is not None and value.get("ref"):
            sender.remember(str(value.get("a", "")), str(value["ref"]), float(value.get("t", 0)))

    def entry(
        self, destination: str, job: Job, outcome: str, ref: str | None
    ) -> tuple[bytes, bytes]:
        """(key, value) of the log record for a finished delivery; remembered here too."""
        key = self.key(job.alert_id, destination)
        self.entries[key] = (job.partition, job.offset)
        value = {
            "p": job.partition,
            "o": job.offset,
            "d": destination,
            "a": job.domain,
            "t": job.timestamp,
            "outcome": outcome,
            "ref": ref,
        }
        return key, orjson.dumps(value)

    def prune(self, committed: dict[int, int]) -> None:
        """Forget entries below a committed offset: no replay reaches them."""
        self.entries = {
            key: (p, o)
            for key, (p, o) in self.entries.items()
            if p not in committed or o >= committed[p]
        }
