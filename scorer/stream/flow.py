"""Input flow: what a task's merge waits for, and which inputs the consumer pauses.

`scorer.stream.ordering` merges a task's inputs in timestamp order and is
pure; this is its side that reads the consumer, as Kafka Streams splits
`PartitionGroup` (the merge, `max.task.idle.ms`) from the consumer's
pausing of a partition with `buffered.records.per.partition` records
waiting. It reads the tasks' inputs, positions and queues and never changes
a task (the task manager, `scorer.stream.manager`, owns them); it changes
only the consumer's paused set and its own clock of idle inputs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, TopicPartition

from scorer.stream.metrics import Metrics

if TYPE_CHECKING:
    from scorer.stream.tasks import Task

log = logging.getLogger("scorer.worker")
# An input with this many records in its task's queue is paused: the others are
# behind it in time. Kafka Streams pauses at 1,000 (buffered.records.per.partition).
BUFFERED = 2_000


class InputFlow:
    """The consumer's view of each task's inputs (bind the consumer first)."""

    def __init__(self, max_task_idle: float, metrics: Metrics) -> None:
        self.max_task_idle = max_task_idle
        self.metrics = metrics
        self.consumer: AIOKafkaConsumer | None = None
        # Since when (monotonic) an input with records to come has had none in its
        # task's queue (-inf: waited SCORER_MAX_TASK_IDLE already, counted).
        self.idle_since: dict[TopicPartition, float] = {}

    def reset(self) -> None:
        """An assignment changed: every input's idle clock starts again."""
        self.idle_since.clear()

    async def waiting(self, task: Task) -> set[TopicPartition]:
        """The task's inputs with more records to come than its queue holds (in the
        client's buffer or on the broker): the merge stops when one of them has
        none queued, since its next record may be the oldest. An input with none
        queued is waited for SCORER_MAX_TASK_IDLE at most; then the task goes on
        without it (counted in scorer_enforced_processing_total)."""
        consumer = self.consumer
        assert consumer is not None
        assignment = consumer.assignment()
        waiting: set[TopicPartition] = set()
        idle_since = self.idle_since
        for tp in task.inputs:
            if tp not in assignment:
                continue
            # As of its last fetch (None: none yet, or a broker too old to say).
            end = consumer.last_stable_offset(tp)
            if end is None:
                end = consumer.highwater(tp)
            if end is not None and await consumer.position(tp) >= end:
                idle_since.pop(tp, None)  # nothing more to come
                continue
            if task.queue.buffered(tp):
                idle_since.pop(tp, None)
                waiting.add(tp)
                continue
            now = time.monotonic()
            since = idle_since.setdefault(tp, now)
            if now - since < self.max_task_idle:
                waiting.add(tp)
            elif since > float("-inf"):
                idle_since[tp] = float("-inf")  # counted once until it has records again
                self.metrics.enforced_total.inc()
                log.info("input %s has records to come but none fetched for %.1f s; "
                         "its task goes on without them", tp, now - since)  # fmt: skip
        return waiting

    def hold_back(self, tasks: Iterable[Task]) -> None:
        """An input whose queue holds BUFFERED records or more is paused (it is ahead
        in time of the task's other inputs: they must catch up before its records
        go), and resumed once below."""
        consumer = self.consumer
        assert consumer is not None
        assignment, paused = consumer.assignment(), consumer.paused()
        full, drained = [], []
        for task in tasks:
            for tp in task.inputs:
                if tp not in assignment:
                    continue
                if task.queue.buffered(tp) >= BUFFERED:
                    if tp not in paused:
                        full.append(tp)
                elif tp in paused:
                    drained.append(tp)
        if full:
            consumer.pause(*full)
        if drained:
            consumer.resume(*drained)

    def resume_all(self) -> None:
        """Every owned input resumed (its task's queue is read again)."""
        consumer = self.consumer
        assert consumer is not None
        assignment = consumer.assignment()
        paused = [tp for tp in consumer.paused() if tp in assignment]
        if paused:
            consumer.resume(*paused)

    def caught_up(self, tasks: Iterable[Task]) -> bool:
        """Nothing more is waiting on any input as of the last fetches."""
        consumer = self.consumer
        assert consumer is not None
        for task in tasks:
            for tp, position in task.positions.items():
                end = consumer.last_stable_offset(tp)
                if end is not None and position < end:
                    return False
        return True
