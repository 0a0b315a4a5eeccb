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
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInputError("timestamp", f"{field}: not an RFC 3339 timestamp") from None
    if parsed.tzinfo is None or ("T" not in text and "t" not in text):
        raise InvalidInputError("timestamp", f"{field}: needs a date, a time and a time zone")
    return parsed.timestamp()


def parse_record_time(value: object) -> float | None:
    """Epoch seconds of a date or timestamp field in a company record.

    Dates and naive timestamps are read as UTC (enrichment vendors often give
    bare dates). Anything unparseable gives None.
    """
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
