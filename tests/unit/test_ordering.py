"""A task's inputs merged in timestamp order (scorer.stream.ordering)."""

from __future__ import annotations

import gc
import weakref
from collections import namedtuple

from aiokafka import TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from scorer.stream.ordering import COMPACT, INPUT_TIMESTAMP, InputQueue, slices

Record = namedtuple("Record", "topic partition offset timestamp")
VISITS, LEADS, REKEYED = (TopicPartition(t, 0) for t in ("visitor", "lead", "rekey"))
INPUTS = [VISITS, LEADS, REKEYED]


def records(tp: TopicPartition, stamps: list[int], first: int = 0) -> list[Record]:
    return [Record(tp.topic, tp.partition, first + i, s) for i, s in enumerate(stamps)]


def flat(runs: list[tuple[TopicPartition, list[Record]]]) -> list[tuple[str, int]]:
    return [(r.topic, r.offset) for _, run in runs for r in run]


def test_a_backlog_goes_in_timestamp_order_across_topics() -> None:
    """The lead topic's few records do not run ahead of the visitor topic's."""
    queue = InputQueue(INPUTS)
    queue.add(VISITS, records(VISITS, [1, 2, 3, 5, 8, 9]), 0)
    queue.add(LEADS, records(LEADS, [4, 7, 20]), 0)
    runs = queue.take(set())
    assert [r.timestamp for _, run in runs for r in run] == [1, 2, 3, 4, 5, 7, 8, 9, 20]
    assert [(tp.topic, len(run)) for tp, run in runs] == [
        ("visitor", 3), ("lead", 1), ("visitor", 1), ("lead", 1), ("visitor", 2), ("lead", 1),
    ]  # fmt: skip


def test_an_input_with_more_to_come_and_nothing_buffered_stops_the_merge() -> None:
    queue = InputQueue(INPUTS)
    queue.add(VISITS, records(VISITS, [1, 5, 9]), 0)
    queue.add(LEADS, records(LEADS, [2]), 0)
    assert queue.take({REKEYED}) == []  # the re-key topic's next record may be the oldest
    runs = queue.take({LEADS})  # leads: more on the broker
    assert flat(runs) == [("visitor", 0), ("lead", 0)]  # stops once the lead buffer is empty
    assert queue.buffered(VISITS) == 2
    queue.add(LEADS, records(LEADS, [7], first=1), 0)
    assert flat(queue.take({LEADS})) == [("visitor", 1), ("lead", 1)]
    assert flat(queue.take(set())) == [("visitor", 2)]  # the leads caught up


def test_ties_go_to_the_input_listed_first() -> None:
    queue = InputQueue(INPUTS)
    queue.add(LEADS, records(LEADS, [5, 5]), 0)
    queue.add(VISITS, records(VISITS, [5, 6]), 0)
    queue.add(REKEYED, records(REKEYED, [5]), 0)
    assert flat(queue.take(set())) == [
        ("visitor", 0), ("lead", 0), ("lead", 1), ("rekey", 0), ("visitor", 1),
    ]  # fmt: skip


def test_records_fetched_again_are_not_buffered_twice() -> None:
    queue = InputQueue(INPUTS)
    queue.add(VISITS, records(VISITS, [1, 2, 3], first=10), 11)  # 10 is processed already
    queue.add(VISITS, records(VISITS, [2, 3, 4], first=11), 11)  # a fetch after a seek
    assert flat(queue.take(set())) == [("visitor", 11), ("visitor", 12), ("visitor", 13)]
    queue.add(VISITS, records(VISITS, [4], first=13), 14)
    assert queue.buffered(VISITS) == 0
    queue.clear()
    queue.add(VISITS, records(VISITS, [1], first=13), 13)  # cleared: from the position again
    assert queue.buffered(VISITS) == 1


def test_slices_cut_runs_and_give_each_partitions_next_offset() -> None:
    runs = [
        (VISITS, records(VISITS, [1, 2, 3])),
        (LEADS, records(LEADS, [4])),
        (VISITS, records(VISITS, [5, 6], first=3)),
    ]
    out = [([(r.topic, r.offset) for r in part], ends) for part, ends in slices(runs, 2)]
    assert out == [
        ([("visitor", 0), ("visitor", 1)], {VISITS: 2}),
        ([("visitor", 2), ("lead", 0)], {VISITS: 3, LEADS: 1}),
        ([("visitor", 3), ("visitor", 4)], {VISITS: 5}),
    ]


stamps = st.lists(st.integers(0, 50), max_size=30)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(stamps, min_size=3, max_size=3),
    st.lists(st.tuples(st.integers(0, 2), st.integers(1, 8), st.booleans()), max_size=20),
)
def test_every_record_once_each_partition_in_order_and_sorted_when_they_are(
    inputs: list[list[int]], steps: list[tuple[int, int, bool]]
) -> None:
    """Fed in pieces, in any order, with a take after some pieces (every input
    with records still to come said to be waiting): every record comes out
    once, each partition's in offset order; when each input is in timestamp
    order, so is everything taken, across the takes."""
    queue = InputQueue(INPUTS)
    fed = dict.fromkeys(INPUTS, 0)
    out: list[Record] = []
    for index, count, take in steps:
        tp = INPUTS[index]
        every = records(tp, inputs[index])
        queue.add(tp, every[fed[tp] : fed[tp] + count], fed[tp])
        fed[tp] = min(len(every), fed[tp] + count)
        if take:
            waiting = {t for t, values in zip(INPUTS, inputs, strict=True) if fed[t] < len(values)}
            out += [r for _, run in queue.take(waiting) for r in run]
    for tp, values in zip(INPUTS, inputs, strict=True):
        queue.add(tp, records(tp, values)[fed[tp] :], fed[tp])
    out += [r for _, run in queue.take(set()) for r in run]
    for tp, values in zip(INPUTS, inputs, strict=True):
        assert [r.offset for r in out if r.topic == tp.topic] == list(range(len(values)))
    if all(values == sorted(values) for values in inputs):
        assert [r.timestamp for r in out] == sorted(r.timestamp for r in out)


class Held:
    """A record that can be watched for being freed."""

    __slots__ = ("__weakref__", "offset", "partition", "timestamp", "topic")

    def __init__(self, tp: TopicPartition, offset: int, timestamp: int) -> None:
        self.topic, self.partition, self.offset, self.timestamp = tp.topic, 0, offset, timestamp


def test_taken_records_are_not_kept_once_processed() -> None:
    """The queue lets go of what it hands out: a fetch's records live on only in the
    runs (the worker's memory once held every input partition's last fetch)."""
    queue = InputQueue(INPUTS)
    visits = [Held(VISITS, i, i * 2) for i in range(3000)]
    leads = [Held(LEADS, i, i * 2 + 1) for i in range(2000)]
    queue.add(VISITS, visits, 0)
    queue.add(LEADS, leads, 0)
    watched = [weakref.ref(r) for r in visits + leads]
    del visits, leads
    runs = queue.take({LEADS})  # leads run out first: 1,000 visits stay queued
    assert queue.buffered(VISITS) == 1000 and queue.buffered(LEADS) == 0
    del runs
    gc.collect()
    alive = sum(ref() is not None for ref in watched)
    assert alive <= 1000 + COMPACT  # the queued visits, and at most COMPACT taken ones
    runs = queue.take(set())
    del runs
    gc.collect()
    assert sum(ref() is not None for ref in watched) == 0


def test_rekeyed_records_go_by_the_input_timestamp_they_carry() -> None:
    """The re-key topic's records are stamped when re-keyed (retention goes by that);
    their order is the input timestamp in their header, else their own."""
    Stamped = namedtuple("Stamped", "topic partition offset timestamp headers")
    queue = InputQueue(INPUTS, [REKEYED])
    queue.add(VISITS, records(VISITS, [10, 30]), 0)
    queue.add(REKEYED, [
        Stamped("rekey", 0, 0, 999, [("other", b"x"), (INPUT_TIMESTAMP, b"20")]),
        Stamped("rekey", 0, 1, 999, [(INPUT_TIMESTAMP, b"not a number")]),
        Stamped("rekey", 0, 2, 25, None),
    ], 0)  # fmt: skip
    assert flat(queue.take(set())) == [
        ("visitor", 0), ("rekey", 0), ("visitor", 1), ("rekey", 1), ("rekey", 2),
    ]  # fmt: skip
