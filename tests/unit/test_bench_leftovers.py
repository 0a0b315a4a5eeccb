"""`make bench` deletes the topics of earlier runs stopped before their clean-up,
and only those: not a run still going, not anyone else's topics."""

from __future__ import annotations

from bench.paced import LEFTOVER_AGE, leftovers


def test_only_topics_of_runs_older_than_an_hour_are_leftovers() -> None:
    now = 1_796_600_000.0
    old = int(now - LEFTOVER_AGE - 1)
    going = int(now - 600)  # a run started ten minutes ago
    names = [
        f"bench{old}-visitor-events",
        f"bench{old}-floor-changelog",
        f"bench{going}-visitor-events",
        "visitor-events",
        "benchmarks-results",
        f"mybench{old}-x",
        "__consumer_offsets",
    ]
    assert leftovers(names, now) == [f"bench{old}-visitor-events", f"bench{old}-floor-changelog"]
