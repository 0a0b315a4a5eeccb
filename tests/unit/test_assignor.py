"""The task assignor: partition numbers, not topic-partitions, are dealt out."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from scorer.stream.assignor import assign_tasks


@given(
    st.sets(st.text(min_size=1, max_size=8), min_size=1, max_size=6),
    st.integers(min_value=1, max_value=64),
)
def test_every_task_once_and_balanced(members: set[str], count: int) -> None:
    """Each task goes to exactly one member, and member loads differ by at most one."""
    assignment = assign_tasks(members, range(count))
    dealt = sorted(t for tasks in assignment.values() for t in tasks)
    assert dealt == list(range(count))
    loads = [len(tasks) for tasks in assignment.values()]
    assert max(loads) - min(loads) <= 1
    assert set(assignment) == members


def test_two_members_split_four_tasks() -> None:
    """Two workers, four partitions: two tasks each, by sorted member id."""
    assert assign_tasks(["b", "a"], [3, 0, 2, 1]) == {"a": [0, 2], "b": [1, 3]}
