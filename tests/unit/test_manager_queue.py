"""The task manager with records held in a task's input queue (scorer.stream.ordering)."""

from __future__ import annotations

import asyncio
from collections import namedtuple

from aiokafka import TopicPartition

from scorer.config import Settings
from scorer.kafka.topics import Topics
from scorer.logs import BrokerOutage
from scorer.stream.backing import MemoryBacking
from scorer.stream.flow import BUFFERED
from scorer.stream.manager import TaskManager
from scorer.stream.metrics import Metrics
from scorer.stream.store import FLUSH_SLICE, AccountStore
from scorer.stream.tasks import Task, TaskState
from tests.conftest import commit_writes

Record = namedtuple("Record", "topic partition offset timestamp")


class Consumer:
    """What the manager asks of aiokafka's consumer, answered from dicts: the
    consumed position of each input and the end its last fetch reported."""

    def __init__(self, positions: dict[TopicPartition, int], ends: dict[TopicPartition, int]):
        self.positions, self.ends = positions, ends
        self.held: set[TopicPartition] = set()

    def assignment(self) -> set[TopicPartition]:
        return set(self.positions)

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    def last_stable_offset(self, tp: TopicPartition) -> int | None:
        return None  # as a broker too old to report it

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.ends.get(tp)

    def paused(self) -> set[TopicPartition]:
        return self.held

    def pause(self, *tps: TopicPartition) -> None:
        self.held.update(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.held.difference_update(tps)


def manager_with_task() -> tuple[TaskManager, Task, list[TopicPartition]]:
    settings = Settings(topic_prefix="q-", topic_partitions=1)
    topics = Topics.from_settings(settings)
    inputs = [TopicPartition(t, 0) for t in topics.inputs()]
    manager = TaskManager(
        settings,
        topics,
        None,
        None,
        None,
        Metrics(),
        None,
        asyncio.Event(),  # type: ignore[arg-type]
    )
    store = AccountStore(MemoryBacking(), settings.dedup_window, 86_400.0, 1_000)
    task = Task(0, inputs, TopicPartition(topics.changelog, 0), store, None)
    task.state = TaskState.RUNNING
    for tp in inputs:
        task.start_at(tp, 0)
    manager.tasks[0] = task
    return manager, task, inputs


async def test_positions_do_not_move_past_queued_records() -> None:
    """The consumer's position covers records the queue still holds back: an offset
    committed there would skip them after a restart. Only an input with nothing
    queued moves to it (past transaction markers)."""
    manager, task, (visits, leads, rekeyed) = manager_with_task()
    task.queue.add(leads, [Record(leads.topic, 0, i, 100 + i) for i in range(10)], 0)
    manager.bind(Consumer({visits: 7, leads: 10, rekeyed: 3}, {}))  # type: ignore[arg-type]
    await manager._advance_positions()
    assert task.positions[leads] == 0  # ten lead records queued, none applied
    assert task.positions[visits] == 7 and task.positions[rekeyed] == 3


async def test_an_input_is_waited_for_by_its_high_watermark_without_a_stable_offset() -> None:
    manager, task, (visits, leads, rekeyed) = manager_with_task()
    consumer = Consumer({visits: 5, leads: 2, rekeyed: 0}, {visits: 5, leads: 4, rekeyed: 0})
    manager.bind(consumer)  # type: ignore[arg-type]
    assert await manager.flow.waiting(task) == {leads}  # two leads on the broker, none queued
    consumer.positions[leads] = 4
    assert await manager.flow.waiting(task) == set()


async def test_an_input_far_ahead_is_paused_until_its_queue_drains() -> None:
    """An input with BUFFERED records queued is ahead in time of the task's others:
    the consumer stops fetching it until the merge has taken them below that."""
    manager, task, (visits, leads, rekeyed) = manager_with_task()
    consumer = Consumer({visits: 0, leads: BUFFERED, rekeyed: 0}, {})
    manager.bind(consumer)  # type: ignore[arg-type]
    records = [Record(leads.topic, 0, i, 100 + i) for i in range(BUFFERED)]
    task.queue.add(leads, records, 0)
    manager.flow.hold_back([task])
    assert consumer.held == {leads}
    task.queue.clear()
    manager.flow.hold_back([task])
    assert consumer.held == set()


async def test_an_idle_worker_writes_its_stores_a_slice_a_turn() -> None:
    """Nothing to commit for a while: the committed writes go to the backing store
    one slice a loop turn (the fetch waits 5 ms meanwhile), not all at the
    commit after the next events."""
    manager, task, (visits, leads, rekeyed) = manager_with_task()
    manager.bind(Consumer({visits: 0, leads: 0, rekeyed: 0}, {}))  # type: ignore[arg-type]
    manager.outage = BrokerOutage()
    store = task.store
    store.flush_interval = 3600
    commit_writes(store, {f"a{i}.example".encode(): b"1" for i in range(FLUSH_SLICE + 1)}, 4)
    assert not store.backing.data  # the interval has not passed
    manager.last_commit -= 1.0  # the last commit began a second ago
    await manager.maybe_commit()
    assert len(store.backing.data) == FLUSH_SLICE and manager.poll_timeout_ms() == 5
    await manager.maybe_commit()
    assert len(store.backing.data) == FLUSH_SLICE + 1 and store.backing.offset == 4
    await manager.maybe_commit()  # nothing left to write: the fetch waits as long as before
    assert not manager.flushing_idle and manager.poll_timeout_ms() == 100


async def test_an_idle_flush_skips_tasks_that_are_not_running() -> None:
    manager, task, (visits, leads, rekeyed) = manager_with_task()
    manager.bind(Consumer({visits: 0, leads: 0, rekeyed: 0}, {}))  # type: ignore[arg-type]
    store = task.store
    store.flush_interval = 3600
    commit_writes(store, {b"a.example": b"1"}, 4)
    task.state = TaskState.BROKEN
    assert not manager._flush_idle() and store.backing.get(b"a.example") is None
