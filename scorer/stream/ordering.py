"""A task's input records in timestamp order across its topics.

A task reads partition p of the visitor topic, the lead topic and the re-key
topic. Each is in offset order, but nothing orders one topic against
another: a fetch brings up to a few megabytes of each, so while a worker
catches up on a backlog the small lead topic runs days ahead of the visitor
topic in event time. Applied in that order, every visitor event more than
the dedup window behind its account's newest (a lead's) is dropped as
`expired` (docs/icp.md, rule 10): 39 % of `make bench`'s drain was, before
this module.

`InputQueue` holds what was fetched for a task and hands it out as Kafka
Streams' `PartitionGroup` does: always the buffered record with the smallest
timestamp next, each partition's records staying in offset order, and none
at all while a partition that has more waiting (on the broker or in the
client) has nothing buffered, since its next record may be the oldest. Ties
go to the partition listed first (visitor, lead, re-key). Pure: the task
manager says which partitions have more waiting and does the fetching.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any

from aiokafka import TopicPartition

from scorer.kafka.client import header

Run = tuple[TopicPartition, list[Any]]  # consecutive records of one partition
# A re-keyed event's timestamp in its input topic (ms, ASCII digits), carried in a
# header: the re-key topic's own timestamps are append times, which its time
# retention goes by. The queue orders a re-keyed record by this header.
INPUT_TIMESTAMP = "scorer.input-timestamp"
COMPACT = 1024  # taken records a partly taken buffer keeps before they are cut off its front


class InputQueue:
    """Fetched, unprocessed records of one task, per input partition."""

    __slots__ = ("buffers", "heads", "inputs", "stamped", "stamps")

    def __init__(
        self, inputs: Sequence[TopicPartition], stamped: Collection[TopicPartition] = ()
    ) -> None:
        """`stamped`: inputs whose records carry their order in an INPUT_TIMESTAMP
        header (the re-key topic's); the others go by their record timestamp."""
        self.inputs = list(inputs)
        self.stamped = set(stamped)
        self.buffers: dict[TopicPartition, list[Any]] = {tp: [] for tp in self.inputs}
        self.stamps: dict[TopicPartition, list[int]] = {tp: [] for tp in self.inputs}
        self.heads: dict[TopicPartition, int] = dict.fromkeys(self.inputs, 0)

    def add(self, tp: TopicPartition, records: list[Any], position: int) -> None:
        """Records fetched for `tp`, in offset order. Those before `position` (the
        task's next to process) or already buffered are left out: a batch fetched
        again after a seek overlaps what is here."""
        buffer = self.buffers[tp]
        head = self.heads[tp]
        after = buffer[-1].offset + 1 if len(buffer) > head else position
        if records and records[0].offset < after:
            records = [r for r in records if r.offset >= after]
        if not records:
            return
        buffer.extend(records)
        if tp in self.stamped:
            self.stamps[tp].extend(map(input_timestamp, records))
        else:
            self.stamps[tp].extend([r.timestamp for r in records])

    def buffered(self, tp: TopicPartition) -> int:
        return len(self.buffers[tp]) - self.heads[tp]

    def clear(self) -> None:
        """Everything dropped (a rewind or a seek: it is fetched again)."""
        for tp in self.inputs:
            self.buffers[tp] = []
            self.stamps[tp] = []
            self.heads[tp] = 0

    def take(self, waiting: Collection[TopicPartition]) -> list[Run]:
        """The records that can be processed now, in timestamp order, as runs of
        one partition each. `waiting`: partitions with more records to come than
        are buffered here; the merge stops as soon as one of them has none
        buffered. What is not taken stays for the next call."""
        buffers, heads, stamps_of = self.buffers, self.heads, self.stamps
        live = [tp for tp in self.inputs if len(buffers[tp]) > heads[tp]]
        if any(tp in waiting for tp in self.inputs if tp not in live):
            return []
        runs: list[Run] = []
        while live:
            if len(live) == 1:
                tp = live[0]
                buffer = buffers[tp]
                runs.append((tp, buffer[heads[tp] :]))
                buffer.clear()  # the records live on in the run only, freed once processed
                stamps_of[tp].clear()
                heads[tp] = 0
                break
            # The partition whose next record is the oldest (the first listed on a
            # tie); its run ends before the oldest next record of the others (at
            # it, when that one is listed earlier).
            stamps = [stamps_of[tp][heads[tp]] for tp in live]
            index = stamps.index(min(stamps))
            first = live[index]
            bound = min(stamps[:index] + stamps[index + 1 :])
            strict = bound in stamps[:index]
            buffer, head, times = buffers[first], heads[first], stamps_of[first]
            end, size = head + 1, len(buffer)
            while end < size and (times[end] < bound or (times[end] == bound and not strict)):
                end += 1
            runs.append((first, buffer[head:end]))
            heads[first] = end
            if end == size:
                buffer.clear()
                times.clear()
                heads[first] = 0
                live.remove(first)
                if first in waiting:
                    break
        for tp in self.inputs:  # what was taken is not kept (beyond COMPACT records)
            if heads[tp] >= COMPACT:
                del buffers[tp][: heads[tp]]
                del stamps_of[tp][: heads[tp]]
                heads[tp] = 0
        return runs


def input_timestamp(record: Any) -> int:
    """A re-keyed record's input timestamp (its own when the header is missing or
    unreadable: one written by another client, or before the header existed)."""
    value = header(record.headers, INPUT_TIMESTAMP)
    if value is not None and value.isdigit():
        return int(value)
    stamp: int = record.timestamp
    return stamp


def slices(runs: Iterable[Run], size: int) -> Iterable[tuple[list[Any], dict[TopicPartition, int]]]:
    """Runs cut and joined into lists of at most `size` records, each with the next
    offset of every partition it holds records of (the positions it moves)."""
    part: list[Any] = []
    ends: dict[TopicPartition, int] = {}
    for tp, run in runs:
        start = 0
        while start < len(run):
            stop = min(len(run), start + size - len(part))
            part += run[start:stop]
            ends[tp] = run[stop - 1].offset + 1
            start = stop
            if len(part) == size:
                yield part, ends
                part, ends = [], {}
    if part:
        yield part, ends
