"""The worker's erasure requests: read whole, applied once to every task.

A lead id does not say its account, so a request cannot be routed to one
task: every worker reads the erasures topic whole (a global table, as the
firmographics and ICPs) and applies each request to every task it owns.

Exactly once per task: the erasures topic has one partition, so its offsets
order the requests, and what a task has applied is one number, the offset
up to which (exclusive) it has applied every request. The task keeps that
number in its own changelog (key ``\\x00scorer:erasures``), and the state
changes a request makes (tombstones, rewritten records) go in the same
transaction as the new number and as the task's progress record on the
erasure-progress topic (`scorer erase --status`). A restore therefore gets
the state and the number together, after a clean stop or a `kill -9`
alike: a request is never applied twice (it would erase events scored after
it) nor missed, and a restored store never brings erased data back (its
latest values are the tombstones and rewrites). An aborted transaction
drops the number with the rest (`AccountStore.discard`), and the requests
are applied again before the next batch.

The task manager applies requests under its lock, before a batch is scored
(`ErasureLog.erase`), so a request takes effect for state and for event
dropping (`Erasures.covers`, through the processor) at the same point. A
task whose number is past what this worker has read (another worker applied
newer requests just before a rebalance) waits until the follower has read
that far, so the table that drops events is never behind the state.
"""

from __future__ import annotations

import bisect
import weakref
from typing import Any

import orjson

from scorer.config import Settings
from scorer.errors import ConfigError, InvalidInputError
from scorer.kafka.erasures import progress_key, progress_value
from scorer.kafka.follower import DeadLetter
from scorer.scoring.erasure import ErasureRequest, Erasures, apply_request
from scorer.stream.metrics import Metrics
from scorer.stream.tasks import Task

ERASURES_KEY = b"\x00scorer:erasures"


def applied_offset(task: Task) -> int:
    """The erasures offset up to which the task has applied every request."""
    raw = task.store.get(ERASURES_KEY)
    return int(orjson.loads(raw)["applied"]) if raw else 0


class ErasureLog:
    """The requests this worker has read, and which of them the processor's
    table (`erasures`) holds; applies them to tasks (`erase`)."""

    def __init__(self, settings: Settings, progress_topic: str, metrics: Metrics) -> None:
        self.app_id = settings.app_id
        self.salt = settings.salt
        self.progress_topic = progress_topic
        self.metrics = metrics
        self.erasures = Erasures(self.salt)  # the processor's: released requests only
        self.unreleased: list[tuple[int, ErasureRequest]] = []
        self.offsets: list[int] = []  # of the released requests, ascending
        self.requests: list[ErasureRequest] = []
        self.read_to = 0  # the next offset the follower will read
        self.released_to = 0  # `read_to` when the requests were last released
        # Each task's applied offset as last read or written here, with its rewind
        # count then. The offset changes only through `erase` and a rewind (which
        # takes it back to the last commit's), so the store is read once per task
        # and after each of its rewinds, not twice a task at every batch.
        self.known: weakref.WeakKeyDictionary[Task, tuple[int, int]] = weakref.WeakKeyDictionary()

    def apply(self, record: Any, dead_letter: DeadLetter) -> None:
        """One record of the erasures topic (the `Follower`'s callback)."""
        self.read_to = record.offset + 1
        if record.value is None:  # a request deleted from the topic: what it did stays done
            return
        try:
            request = ErasureRequest.from_json(record.value)
        except InvalidInputError as exc:
            dead_letter(record, exc.reason, exc.detail)
            return
        if request.suppress and self.salt is None:
            raise ConfigError(
                f"erasure request {request.id} is a suppression, and this worker has no "
                "SCORER_ERASURE_SALT to match it: set the salt the request was made with"
            )
        self.unreleased.append((record.offset, request))

    def release(self) -> None:
        """The requests read since the last call into the processor's table."""
        for offset, request in self.unreleased:
            self.erasures.add(request)
            self.offsets.append(offset)
            self.requests.append(request)
        self.unreleased = []
        self.released_to = self.read_to

    def applied(self, task: Task) -> int:
        """`applied_offset(task)`, read from the store only when not known here."""
        known = self.known.get(task)
        if known is not None and known[0] == task.rewinds:
            return known[1]
        applied = applied_offset(task)
        self.known[task] = (task.rewinds, applied)
        return applied

    def behind(self, task: Task) -> bool:
        """The task has applied requests this worker has not read yet."""
        return self.applied(task) > self.released_to

    def erase(self, task: Task) -> int:
        """The released requests the task has not applied, applied to its store, with
        its new offset and progress record queued for its next commit; how many."""
        applied = self.applied(task)
        if applied >= self.released_to:
            return 0
        due = self.requests[bisect.bisect_left(self.offsets, applied) :]
        for request in due:
            changed = apply_request(request, task.store, self.salt)
            self.metrics.erasures_applied_total.labels(request.kind).inc()
            if changed:
                self.metrics.erased_accounts_total.inc(changed)
        task.store[ERASURES_KEY] = orjson.dumps({"applied": self.released_to})
        self.known[task] = (task.rewinds, self.released_to)
        task.send(
            self.progress_topic,
            progress_key(self.app_id, task.partition),
            progress_value(self.app_id, task.partition, self.released_to),
        )
        return len(due)
