# cython: boundscheck=False, wraparound=False
"""Timestamps and durations as the documents spell them.

Event time is carried as float seconds since the Unix epoch: cheap to compare
and to feed into the decay formula.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from scorer.errors import InvalidInputError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: object) -> float:
    """Seconds in a duration such as ``7d``, ``24h``, ``30m`` or ``90s``.

    The unit is required: a bare ``7`` is refused rather than read as seconds.
    """
    if not isinstance(text, str):
        raise ValueError("expected a duration with a unit, such as 7d, 24h, 30m or 90s")
    match = _DURATION.match(text)
    if match is None:
        raise ValueError("expected a duration with a unit, such as 7d, 24h, 30m or 90s")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of a duration, for messages and docs."""
    for unit in ("d", "h", "m"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def parse_event_time(text: object, field: str = "occurred_at") -> float:
    """Epoch seconds of an RFC 3339 timestamp that must carry a time zone."""
    if type(text) is not str:
        raise InvalidInputError("timestamp", f"{field}: expected an RFC 3339 string")
    if _COMPILED:
        at = common_event_time(text)
        if at == at:  # not NaN: the common shape, read without a datetime
            return at
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInputError("timestamp", f"{field}: not an RFC 3339 timestamp") from None
    if parsed.tzinfo is None or ("T" not in text and "t" not in text):
        raise InvalidInputError("timestamp", f"{field}: needs a date, a time and a time zone")
    return parsed.timestamp()


# The common shape of an event time, read by hand (`common_event_time`): the
# datetime route below costs about 2,200 instructions an event more, 4.7 % of the
# scoring loop (callgrind, 2026-12-05). Years outside this range take that route:
# inside it, the microseconds since the epoch are below 2**53, so the division
# below rounds exactly as datetime's `timestamp()` does.
_FIRST_YEAR = 1970
_LAST_YEAR = 2200
_DAYS_BEFORE_1970 = 719_468  # days from 0000-03-01 to 1970-01-01, proleptic Gregorian
_NOT_COMMON = float("nan")
# Digit by digit is ~1.7x faster than datetime in the compiled core and ~12x slower in
# pure Python (measured: 155-177 ns against 272-284 ns; 3,514 ns): the pure-Python
# build keeps datetime's route. Same values either way (tests/unit/test_timefmt.py).
_COMPILED = not __file__.endswith(".py")


def _digits(data: bytes, start: int, count: int) -> int:
    """The ASCII decimal number in data[start:start + count]; -1 if any is not a digit."""
    value = 0
    for i in range(start, start + count):
        digit = data[i] - 48
        if digit < 0 or digit > 9:
            return -1
        value = value * 10 + digit
    return value


def common_event_time(text: str) -> float:
    """Epoch seconds of ``YYYY-MM-DDTHH:MM:SS[.fff|.ffffff](Z|+HH:MM|-HH:MM)``, the
    shape nearly every producer writes, equal to `datetime.fromisoformat(text).timestamp()`
    (a property test holds the two together); NaN for anything else, which
    `parse_event_time` then reads (or refuses) through datetime."""
    if not text.isascii():
        return _NOT_COMMON
    data = text.encode("ascii")
    return common_time_at(data, 0, len(data))


def common_time_at(data: bytes, start: int, n: int) -> float:
    """`common_event_time` of the ASCII text in data[start:start + n]: the event
    decoder reads it there, from the event's bytes, before any string is made."""
    if n < 20 or n > 32:
        return _NOT_COMMON
    if (
        data[start + 4] != _DASH
        or data[start + 7] != _DASH
        or data[start + 10] != _T
        or data[start + 13] != _COLON
        or data[start + 16] != _COLON
    ):
        return _NOT_COMMON
    year = _digits(data, start, 4)
    month = _digits(data, start + 5, 2)
    day = _digits(data, start + 8, 2)
    hour = _digits(data, start + 11, 2)
    minute = _digits(data, start + 14, 2)
    second = _digits(data, start + 17, 2)
    if year < _FIRST_YEAR or year > _LAST_YEAR or month < 1 or month > 12 or day < 1:
        return _NOT_COMMON
    if hour < 0 or hour > 23 or minute < 0 or minute > 59 or second < 0 or second > 59:
        return _NOT_COMMON
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        last = 29 if leap else 28
    elif month == 4 or month == 6 or month == 9 or month == 11:
        last = 30
    else:
        last = 31
    if day > last:
        return _NOT_COMMON
    end = start + n
    i = start + 19
    micro = 0
    if data[i] == _DOT:  # milliseconds or microseconds; any other precision takes datetime's route
        i += 1
        while i < end and _ZERO <= data[i] <= _NINE:
            i += 1
        if i == start + 23:
            micro = _digits(data, start + 20, 3) * 1000
        elif i == start + 26:
            micro = _digits(data, start + 20, 6)
        else:
            return _NOT_COMMON
    offset = 0
    if i + 1 == end and data[i] == _Z:
        pass
    elif i + 6 == end and (data[i] == _PLUS or data[i] == _DASH) and data[i + 3] == _COLON:
        zone_hours = _digits(data, i + 1, 2)
        zone_minutes = _digits(data, i + 4, 2)
        if zone_hours < 0 or zone_hours > 23 or zone_minutes < 0 or zone_minutes > 59:
            return _NOT_COMMON
        offset = zone_hours * 3600 + zone_minutes * 60
        if data[i] == _DASH:
            offset = -offset
    else:
        return _NOT_COMMON
    # Days since the epoch of a civil date (H. Hinnant's days_from_civil; year > 0).
    y = year - 1 if month <= 2 else year
    era = y // 400
    year_of_era = y - era * 400
    day_of_year = (153 * (month - 3 if month > 2 else month + 9) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    days = era * 146_097 + day_of_era - _DAYS_BEFORE_1970
    seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset
    micros = seconds * 1_000_000 + micro
    return micros / 1e6


# The bytes `common_time_at` compares.
_DASH, _COLON, _DOT, _PLUS, _T, _Z, _ZERO, _NINE = b"-:.+TZ09"


_RECORD_TIME_MEMO_LIMIT = 10_000
_record_times: dict[str, float | None] = {}


def parse_record_time(value: object) -> float | None:
    """Epoch seconds of a date or timestamp field in a company record.

    Dates and naive timestamps are read as UTC (enrichment vendors often give
    bare dates). Anything unparseable gives None.

    Strings are memoised (bounded by clearing): records repeat the same dates,
    and datetime's route took 1.2 µs a call against 50 ns for the memo.
    """
    if type(value) is not str:
        return _record_time(value)
    try:
        return _record_times[value]
    except KeyError:
        pass
    if len(_record_times) >= _RECORD_TIME_MEMO_LIMIT:
        _record_times.clear()
    at = _record_times[value] = _record_time(value)
    return at


def _record_time(value: object) -> float | None:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def format_epoch(seconds: float) -> str:
    """RFC 3339 UTC with milliseconds, e.g. ``2026-11-20T10:00:00.012Z``."""
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
