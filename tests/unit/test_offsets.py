"""The worker commits only offsets whose records are finished."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from scorer.stream.offsets import OffsetTracker

TP = ("visitor-events", 0)


def test_in_order_records_commit_after_the_last_finished() -> None:
    t = OffsetTracker()
    for offset in range(5):
        assert t.begin(TP, offset, start=0) is None
        t.finish(TP, offset, now=1.0)
    assert t.commit_point(TP) == 5


def test_nothing_finished_commits_nothing() -> None:
    t = OffsetTracker()
    assert t.begin(TP, 7, start=7) is None
    assert t.commit_point(TP) is None  # begun, not finished


def test_a_skip_holds_the_commit_until_the_range_is_read_again() -> None:
    t = OffsetTracker()
    t.begin(TP, 0, start=0)
    t.finish(TP, 0, now=1.0)
    assert t.begin(TP, 4, start=0) == (1, 4)
    t.finish(TP, 4, now=2.0)
    assert t.commit_point(TP) == 1
    t.recovered(TP, 3)
    assert t.commit_point(TP) == 3
    t.recovered(TP, 4)
    assert t.commit_point(TP) == 5
    assert not t.missing


def test_a_first_record_past_the_committed_offset_is_a_skip() -> None:
    t = OffsetTracker()
    assert t.begin(TP, 993, start=361) == (361, 993)
    t.finish(TP, 993, now=1.0)
    assert t.commit_point(TP) == 361


def test_redelivered_records_do_not_move_anything_back() -> None:
    t = OffsetTracker()
    for offset in (0, 1, 2, 1, 2):
        t.begin(TP, offset, start=0)
        t.finish(TP, offset, now=1.0)
    assert t.commit_point(TP) == 3 and not t.missing


def test_missing_ranges_merge_and_forget_clears() -> None:
    t = OffsetTracker()
    t.add_missing(TP, 10, 20)
    t.add_missing(TP, 5, 12)
    assert t.missing[TP] == (5, 20)
    t.add_missing(TP, 3, 3)  # empty
    assert t.missing[TP] == (5, 20)
    t.forget()
    assert not t.missing and t.commit_point(TP) is None


@given(
    st.lists(st.integers(min_value=0, max_value=60), max_size=80),
    st.integers(min_value=0, max_value=10),
)
def test_the_commit_point_never_passes_an_unfinished_record(
    deliveries: list[int], start: int
) -> None:
    """Any delivery order, with skips and repeats: every offset below the commit
    point (from `start`) was finished, directly or by re-reading a missing range."""
    t = OffsetTracker()
    finished: set[int] = set()
    for offset in deliveries:
        if offset < start:
            continue  # the stream resumes at `start`
        t.begin(TP, offset, start)
        t.finish(TP, offset, now=0.0)
        finished.add(offset)
        point = t.commit_point(TP)
        if point is not None:
            assert set(range(start, point)) <= finished
    # the re-reader reads each missing range in order
    while TP in t.missing:
        first, end = t.missing[TP]
        for offset in range(first, end):
            finished.add(offset)
            t.recovered(TP, offset + 1)
    point = t.commit_point(TP)
    if point is not None:
        assert set(range(start, point)) <= finished
        assert point == max(finished) + 1
