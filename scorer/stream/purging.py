"""The re-key topic purged of what has been processed, as Kafka Streams purges
its repartition topics (`repartition.purge.interval.ms`, 30 s).

An event not keyed by its account goes through `<app id>-events-by-account`
(the re-key topic) to the task that owns the account. Once that task has
committed past it, nothing reads it again: a restart, a rebalance or a rewind
resumes from the committed offset. Without a purge the topic kept every such
event, as it came (a lead's email and title included), for the broker's
default retention, a week. Every `SCORER_REKEY_PURGE_INTERVAL` the task manager
asks this module to delete, in each re-key partition of this worker's tasks,
the records before the task's committed offset (DeleteRecords, which needs
the Delete ACL on the topic: `scorer acls`). Refused, the worker says so once
and goes on without purging; the retention then bounds the topic, as before.

One owner: the task manager decides when (after a commit round), from the
tasks' committed offsets; this module only sends the deletion, one at a time,
in the background, and remembers what it deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError

from scorer.config import Settings
from scorer.kafka.client import client_options
from scorer.kafka.refusals import REFUSED, explain
from scorer.stream.tasks import Task, TaskState

log = logging.getLogger("scorer.worker")


def purgeable(
    tasks: Iterable[Task], topic: str, purged: dict[int, int]
) -> dict[TopicPartition, int]:
    """For each running task, its re-key partition and committed offset there,
    where that offset is past what was purged already."""
    found: dict[TopicPartition, int] = {}
    for task in tasks:
        if task.state is not TaskState.RUNNING:
            continue
        tp = TopicPartition(topic, task.partition)
        offset = task.committed.get(tp)
        if offset is not None and offset > purged.get(task.partition, 0):
            found[tp] = offset
    return found


class RekeyPurger:
    """Deletes the re-key topic's processed records, at most one request at a time."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self.purged: dict[int, int] = {}  # partition -> the offset records were deleted before
        self.last = time.monotonic()  # the first purge an interval after the start
        self.inflight: asyncio.Future[Any] | None = None
        self.refused = False
        self.admin: AIOKafkaAdminClient | None = None

    def maybe_purge(self, tasks: Mapping[int, Task], now: float) -> None:
        """Start a deletion when one is due and a committed offset has moved
        (`tasks`: the task manager's, by partition; read only then)."""
        interval = self.settings.rekey_purge_interval
        if interval <= 0 or self.refused or now - self.last < interval:
            return
        if self.inflight is not None and not self.inflight.done():
            return
        self.last = now
        offsets = purgeable(tasks.values(), self.topic, self.purged)
        if offsets:
            self.inflight = asyncio.ensure_future(self._purge(offsets))

    async def _purge(self, offsets: dict[TopicPartition, int]) -> None:
        try:
            if self.admin is None:  # kept only once started: a failed start is retried
                admin = AIOKafkaAdminClient(**client_options(self.settings))
                try:
                    await admin.start()
                except BaseException:
                    await admin.close()
                    raise
                self.admin = admin
            request = {tp: RecordsToDelete(offset) for tp, offset in offsets.items()}
            await self.admin.delete_records(request)
        except REFUSED:
            self.refused = True
            refusal = TopicAuthorizationFailedError(self.topic)
            log.warning(
                "%s; until then the re-key topic keeps processed events for its retention",
                explain(refusal, "worker", self.settings, "Delete"),
            )
            return
        except (KafkaError, OSError) as exc:  # a leader moving, the broker away: next time
            log.info("re-key topic not purged this time (%s); retrying", type(exc).__name__)
            return
        for tp, offset in offsets.items():
            self.purged[tp.partition] = max(offset, self.purged.get(tp.partition, 0))

    async def close(self) -> None:
        """The deletion in flight cancelled (the next start redoes it), the client closed."""
        if self.inflight is not None:
            self.inflight.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.inflight
        if self.admin is not None:
            await self.admin.close()
