"""Which re-key partitions the worker purges, and up to where (scorer.stream.purging)."""

from __future__ import annotations

from aiokafka import TopicPartition

from scorer.config import Settings
from scorer.stream.backing import MemoryBacking
from scorer.stream.purging import RekeyPurger, purgeable
from scorer.stream.store import AccountStore
from scorer.stream.tasks import Task, TaskState

REKEY = "p-app-events-by-account"


def task(partition: int, committed: int | None, state: TaskState = TaskState.RUNNING) -> Task:
    inputs = [TopicPartition("p-visitor-events", partition), TopicPartition(REKEY, partition)]
    store = AccountStore(MemoryBacking(), 86_400.0, 86_400.0, 1_000)
    changelog = TopicPartition("p-app-accounts-changelog", partition)
    made = Task(partition, inputs, changelog, store, None)
    made.state = state
    made.committed = {inputs[0]: 500}
    if committed is not None:
        made.committed[TopicPartition(REKEY, partition)] = committed
    return made


def test_only_committed_offsets_past_the_last_purge_of_running_tasks() -> None:
    """A running task's committed re-key offset, when past what was purged; not a
    task that is restoring or broken (its committed offsets are being settled), nor
    one that committed nothing on the re-key topic, nor the visitor topic's offset."""
    tasks = [
        task(0, 40),
        task(1, 10),
        task(2, None),
        task(3, 90, TaskState.BROKEN),
    ]
    assert purgeable(tasks, REKEY, {}) == {
        TopicPartition(REKEY, 0): 40,
        TopicPartition(REKEY, 1): 10,
    }
    assert purgeable(tasks, REKEY, {0: 40, 1: 7}) == {TopicPartition(REKEY, 1): 10}
    assert purgeable(tasks, REKEY, {0: 40, 1: 10}) == {}


def test_a_purge_is_due_once_an_interval_and_never_when_off() -> None:
    """No deletion before the interval has passed since the last (or the start),
    none at all with the interval 0, and none with nothing new to delete: no
    request is sent (no admin client is even made)."""
    tasks = {0: task(0, 40)}
    off = RekeyPurger(Settings(rekey_purge_interval=0), REKEY)
    off.maybe_purge(tasks, off.last + 3600)
    assert off.inflight is None
    purger = RekeyPurger(Settings(rekey_purge_interval=30), REKEY)
    purger.maybe_purge(tasks, purger.last + 29)
    assert purger.inflight is None
    purger.purged = {0: 40}
    purger.maybe_purge(tasks, purger.last + 31)
    assert purger.inflight is None and purger.admin is None
