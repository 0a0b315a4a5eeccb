"""Which input offsets the worker has finished, and so which offset it may commit.

faust 0.15 commits from its own acknowledgements, and it can skip records
around a rebalance or a restart and then commit past them (faust #216, #221,
#681; faust-streaming #318; seen in tests/fault). The worker therefore commits
from this record instead (`faust_fixes` routes faust's commit offset here): a
partition is committed up to the first offset that is not finished, never
beyond. A range the stream skipped is `missing` until the worker has read it
itself (`ScorerApp._reread`); re-reading is harmless because state updates are
idempotent.

Pure bookkeeping, no I/O: tested in tests/unit/test_offsets.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class OffsetTracker:
    """Per partition: the offset after the highest finished record, the skipped
    range still to read ([start, end)), and when the partition last moved."""

    done: dict[Any, int] = field(default_factory=dict)
    missing: dict[Any, tuple[int, int]] = field(default_factory=dict)
    moved_at: dict[Any, float] = field(default_factory=dict)
    frozen: bool = False  # set when state in memory can no longer be trusted: no commits

    def begin(self, tp: Any, offset: int, start: int) -> tuple[int, int] | None:
        """Before a record is processed: returns the range it skipped, if any.

        `start` is where the partition was to resume (its committed offset, 0 if
        none) and counts only for the first record since the assignment."""
        expected = self.done.get(tp, start)
        if offset <= expected:
            return None
        self.add_missing(tp, expected, offset)
        return expected, offset

    def finish(self, tp: Any, offset: int, now: float) -> None:
        """After a record's effects are queued for sending."""
        if offset >= self.done.get(tp, -1):
            self.done[tp] = offset + 1
        self.moved_at[tp] = now

    def add_missing(self, tp: Any, start: int, end: int) -> None:
        if start >= end:
            return
        if tp in self.missing:
            old_start, old_end = self.missing[tp]
            start, end = min(start, old_start), max(end, old_end)
        self.missing[tp] = (start, end)

    def recovered(self, tp: Any, upto: int) -> None:
        """Everything before `upto` in the missing range has been read again."""
        if tp not in self.missing:
            return
        start, end = self.missing[tp]
        if upto >= end:
            del self.missing[tp]
        elif upto > start:
            self.missing[tp] = (upto, end)

    def commit_point(self, tp: Any) -> int | None:
        """The offset that may be committed: nothing before it is unfinished."""
        if self.frozen:
            return None
        done = self.done.get(tp)
        if done is None:
            return None
        missing = self.missing.get(tp)
        return min(done, missing[0]) if missing else done

    def forget(self) -> None:
        """On a rebalance: the next owner resumes from the committed offsets."""
        self.done.clear()
        self.missing.clear()
        self.moved_at.clear()
