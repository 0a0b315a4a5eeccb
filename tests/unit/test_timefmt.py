"""Event times: the hand-read common shape agrees with datetime everywhere."""

from __future__ import annotations

import math
from datetime import datetime

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from scorer.errors import InvalidInputError
from scorer.timefmt import common_event_time, parse_event_time


def by_datetime(text: str) -> float | None:
    """The reference: what datetime makes of it (None: refused)."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    dated = "T" in text or "t" in text  # a date and a time
    return parsed.timestamp() if parsed.tzinfo is not None and dated else None


def two(lo: int, hi: int) -> st.SearchStrategy[str]:
    return st.integers(lo, hi).map(lambda n: f"{n:02d}")


# Near the common shape: fields a little out of range, every separator and
# precision a producer might write, a stray character now and then.
FRACTIONS = st.one_of(
    st.just(""),
    st.integers(0, 9)
    .flatmap(lambda n: st.text("0123456789", min_size=n, max_size=n))
    .map(lambda d: "." + d),
)
ZONES = st.one_of(
    st.sampled_from(["Z", "z", "", "+00:00", "-00:00", "+0100", "+01", "+24:00"]),
    st.tuples(st.sampled_from("+-"), two(0, 25), two(0, 61)).map(lambda t: f"{t[0]}{t[1]}:{t[2]}"),
)
STAMPS = st.builds(
    lambda y, mo, d, sep, h, mi, s, frac, zone: f"{y:04d}-{mo}-{d}{sep}{h}:{mi}:{s}{frac}{zone}",
    st.one_of(st.integers(1965, 2205), st.integers(1, 9999)),
    two(0, 13),
    two(0, 32),
    st.sampled_from(["T", "T", "T", "t", " "]),
    two(0, 24),
    two(0, 60),
    two(0, 60),
    FRACTIONS,
    ZONES,
)


@settings(max_examples=3000)
@given(STAMPS)
@example("2024-02-29T23:59:59.999999-05:30")
@example("2023-02-29T10:00:00Z")
@example("2100-02-29T10:00:00Z")
@example("2000-02-29T10:00:00.123Z")
@example("1970-01-01T00:00:00+00:01")
def test_the_common_shape_reads_as_datetime_does(text: str) -> None:
    fast = common_event_time(text)
    expected = by_datetime(text)
    if not math.isnan(fast):  # taken by the fast path: exactly datetime's value
        assert fast == expected
    if expected is None:
        with pytest.raises(InvalidInputError):
            parse_event_time(text)
    else:
        assert parse_event_time(text) == expected


@given(st.text(max_size=40))
def test_any_text_is_read_or_refused_as_datetime_would(text: str) -> None:
    expected = by_datetime(text)
    if expected is None:
        with pytest.raises(InvalidInputError):
            parse_event_time(text)
    else:
        assert parse_event_time(text) == expected


@pytest.mark.parametrize(
    "text",
    ["2026-11-20T10:00:00Z", "2026-11-20T10:00:00.123Z", "2026-11-20T10:00:00.123456+02:00"],
)
def test_producers_usual_times_take_the_fast_path(text: str) -> None:
    assert common_event_time(text) == datetime.fromisoformat(text).timestamp()


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-20T10:00:00.1234Z",
        "2026-11-20 10:00:00Z",
        "1969-12-31T23:59:59Z",
        "٢٠٢٦-11-20T10:00:00Z",
    ],
)
def test_other_shapes_go_to_datetime(text: str) -> None:
    assert math.isnan(common_event_time(text))
