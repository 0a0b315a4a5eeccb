# cython: boundscheck=False, wraparound=False
"""Decoding raw event bytes into `Event` values, fast.

This is the hot path's decoder, in up to three routes that give the same
`Event` (or the same error) for any document. The compiled core first reads
the common document (an object of plain ASCII strings and nulls, nearly every
producer's event) from its bytes in one pass (`_scan_common`). Any other is
decoded by msgspec straight into a typed struct (`_Fields`: every field the
rules read, and the other known ones type-checked), several times cheaper than
orjson building a dict; the pure-Python build starts there. Anything msgspec
refuses goes the checked way (orjson and hand-written checks,
`event_from_document`), which names what is wrong, so only bad input pays for
a second decode. It accepts the documents
`scorer.models.VisitorEvent` and `LeadEvent` describe, and a test keeps the
two in agreement. The IP address is dropped here, on ingest.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import msgspec
import orjson

from scorer.enrichment.domains import lead_account, normalise_domain
from scorer.errors import InvalidInputError
from scorer.timefmt import common_time_at, parse_event_time

MAX_EVENT_BYTES = 64 * 1024
LEAD_CREATED = "lead_created"


class Event:
    """A decoded, validated event. `account` is None when unresolved.

    A plain slotted class, not a dataclass: `events.pxd` declares it as an
    extension type for the compiled core (see `scorer.native`), Cython's
    dataclasses refuse `slots=True`, and a dataclass with defaults cannot
    list its `__slots__` by hand (`CompanyFit` can)."""

    __slots__ = ("account", "at", "event_id", "lead_id", "occurred_at", "path", "title", "type")

    def __init__(
        self,
        event_id: str,
        type: str,
        occurred_at: str,
        at: float,
        account: str | None,
        path: str | None = None,
        lead_id: str | None = None,
        title: str | None = None,
    ) -> None:
        self.event_id = event_id
        self.type = type
        self.occurred_at = occurred_at
        self.at = at
        self.account = account
        self.path = path
        self.lead_id = lead_id
        self.title = title


_STR = {str}
_VISITOR_OPTIONAL = ("company_domain", "visitor_id", "session_id", "page_url", "referrer", "ip")
_LEAD_OPTIONAL = ("company_domain", "title", "full_name", "source")


def _not_a_string(key: str, value: Any, required: bool) -> InvalidInputError:
    if value is None:
        return InvalidInputError("schema", f"{key}: required")
    kind = "a non-empty string" if required else "a string or null"
    return InvalidInputError("schema", f"{key}: expected {kind}")


_PATH_MEMO_LIMIT = 20_000  # a site has few pages (urlsplit's own cache: 128)
_paths: dict[str, str | None] = {}


def url_path(page_url: str | None) -> str | None:
    """The path of a page URL (``/pricing``), or None when there is none.

    A memo in a plain dict, bounded by clearing: an event's call of
    `functools.lru_cache`'s wrapper cost about 900 instructions (callgrind)."""
    if not page_url:
        return None
    try:
        return _paths[page_url]
    except KeyError:
        pass
    try:
        path = urlsplit(page_url).path or "/"
    except ValueError:
        path = None
    if len(_paths) >= _PATH_MEMO_LIMIT:
        _paths.clear()
    _paths[page_url] = path
    return path


class _Fields(msgspec.Struct, gc=False):
    """The known fields of both event kinds: strings or null (or missing).
    Unknown fields are skipped by the decoder, as the contract says."""

    # In the order producers write them (the models' order): msgspec looks a key up
    # from the field after the last one found first, so in-order keys cost least
    # (3 % of the decode, measured).
    event_id: str | None = None
    type: str | None = None
    occurred_at: str | None = None
    company_domain: str | None = None
    visitor_id: str | None = None
    session_id: str | None = None
    page_url: str | None = None
    referrer: str | None = None
    ip: str | None = None
    lead_id: str | None = None
    email: str | None = None
    title: str | None = None
    full_name: str | None = None
    source: str | None = None


_decode_fields = msgspec.json.Decoder(_Fields).decode

# The compiled core reads the common event's bytes itself (`_scan_common`); the
# pure-Python build leaves every event to msgspec, which is faster there. Same
# events either way (tests/unit/test_events.py holds the two routes together).
_COMPILED = not __file__.endswith(".py")


def decode_event(raw: bytes | str, max_bytes: int = MAX_EVENT_BYTES) -> Event:
    """Validate one JSON event document; raise `InvalidInputError` naming why."""
    if len(raw) > max_bytes:
        raise InvalidInputError("oversize", f"{len(raw)} bytes > {max_bytes}")
    if _COMPILED and type(raw) is bytes:
        event = _scan_common(raw)
        if event is not None:
            return event
    return _typed_decode(raw)


def _typed_decode(raw: bytes | str) -> Event:
    """msgspec's typed decode, then the rules' checks (`_from_fields`)."""
    try:
        fields = _decode_fields(raw)
    except msgspec.DecodeError:
        return _checked_decode(raw)
    return _from_fields(
        raw,
        fields.event_id,
        fields.type,
        fields.occurred_at,
        fields.company_domain,
        fields.page_url,
        fields.lead_id,
        fields.email,
        fields.title,
        _UNPARSED,
    )


def _from_fields(
    raw: bytes | str,
    event_id: str | None,
    kind: str | None,
    occurred_at: str | None,
    company_domain: str | None,
    page_url: str | None,
    lead_id: str | None,
    email: str | None,
    title: str | None,
    at: float,
) -> Event:
    """The event of a document whose known fields are strings or null; what the
    rules refuse goes the checked way (`_checked_decode`), which names why. `at`:
    the event time when the caller read it already, else NaN (`_UNPARSED`)."""
    if not event_id or not kind or occurred_at is None:
        return _checked_decode(raw)  # it names the missing field
    if at != at:
        at = parse_event_time(occurred_at)
    # Made without `__init__`: its argument parsing cost about 350 instructions an
    # event in the compiled core (callgrind).
    event = Event.__new__(Event)
    event.event_id = event_id
    event.type = kind
    event.occurred_at = occurred_at
    event.at = at
    if kind == LEAD_CREATED:
        if not lead_id or not (email or (email is None and company_domain)):
            return _checked_decode(raw)
        event.account = lead_account(company_domain, email)
        event.path = None
        event.lead_id = lead_id
        event.title = title
        return event
    account = normalise_domain(company_domain) if company_domain else None
    event.account = account or None
    event.path = url_path(page_url)
    event.lead_id = None
    event.title = None
    return event


_UNPARSED = float("nan")  # an event time not read yet

# The byte values `_scan_common` reads.
_QUOTE = 34
_COLON = 58
_COMMA = 44
_OPEN = 123
_CLOSE = 125
_SPACE = 32
# The bytes that end a plain string's run: its closing quote, and what the common
# document never holds inside one (an escape, a control character, non-ASCII).
_STOPS = bytes(1 if b == _QUOTE or b == 92 or b < _SPACE or b >= 128 else 0 for b in range(256))


def _scan_common(raw: bytes) -> Event | None:
    """The event of the common document, read from its bytes; None for any other.

    The common document is a JSON object whose values are all strings or null,
    every key and string plain printable ASCII (no escape, no control character),
    and no field the rules read given twice: nearly every producer's event. Its
    fields are read in one pass over the bytes and only the ones the rules use
    become strings, where msgspec makes a string of every field and a struct
    (about 5,600 instructions an event, a quarter of the scoring loop; callgrind).
    Whatever is not of that shape (None) goes to msgspec (`_typed_decode`), so the
    two routes agree by construction: a property test holds them together.
    """
    data = raw
    n = len(raw)
    event_id = kind = occurred_at = company_domain = page_url = lead_id = email = title = None
    at = _UNPARSED
    seen = 0
    i = _skip_space(data, 0, n)
    if i >= n or data[i] != _OPEN:
        return None
    i = _skip_space(data, i + 1, n)
    more = i >= n or data[i] != _CLOSE  # not the empty object
    while more:
        # A key: plain ASCII between quotes.
        if i >= n or data[i] != _QUOTE:
            return None
        key_start = i + 1
        i = _string_end(data, key_start, n)
        if i < 0:
            return None
        key_end = i
        i = _skip_space(data, i + 1, n)
        if i >= n or data[i] != _COLON:
            return None
        i = _skip_space(data, i + 1, n)
        if i >= n:
            return None
        # A value: a plain ASCII string, or null.
        if data[i] == _QUOTE:
            value_start = i + 1
            i = _string_end(data, value_start, n)
            if i < 0:
                return None
            value_end = i
            i += 1
        elif i + 4 <= n and data[i] == 110 and data[i + 1] == 117 and data[i + 2] == 108:
            if data[i + 3] != 108:  # "null"
                return None
            value_start = value_end = -1
            i += 4
        else:
            return None  # a number, a boolean, an object or an array: msgspec's
        field = _field_number(data, key_start, key_end)
        if field >= 0:
            if seen & (1 << field):
                return None  # given twice: msgspec keeps the last
            seen |= 1 << field
            if value_start < 0:
                value = None
            elif field == 1:  # the event type: one of a few, kept as one string each
                value = _kind(raw, data, value_start, value_end)
            else:
                value = raw[value_start:value_end].decode("ascii")
            if field == 0:
                event_id = value
            elif field == 1:
                kind = value
            elif field == 2:
                occurred_at = value
                if value_start >= 0:  # read here from the bytes, in its common shape
                    at = common_time_at(data, value_start, value_end - value_start)
            elif field == 3:
                company_domain = value
            elif field == 4:
                page_url = value
            elif field == 5:
                lead_id = value
            elif field == 6:
                email = value
            else:
                title = value
        i = _skip_space(data, i, n)
        if i >= n:
            return None
        c = data[i]
        if c == _COMMA:
            i = _skip_space(data, i + 1, n)
        elif c == _CLOSE:
            more = False
        else:
            return None
    if _skip_space(data, i + 1, n) != n:
        return None
    return _from_fields(
        raw, event_id, kind, occurred_at, company_domain, page_url, lead_id, email, title, at
    )


def _string_end(data: bytes, i: int, n: int) -> int:
    """The index of the quote that closes the plain string starting at i, or -1
    when the string is not plain (or not closed)."""
    stops = _STOPS
    while i < n:
        if stops[data[i]]:
            return i if data[i] == _QUOTE else -1
        i += 1
    return -1


# The event types met so far, as bytes and as the one string the scanner gives for
# each: the points memo's key then has its hash already (a new string per event
# cost its allocation and hash, ~300 instructions). Bounded: a producer inventing
# types gets a new string for each past the first few.
_KINDS_LIMIT = 16
_kind_bytes: list[bytes] = []
_kind_texts: list[str] = []


def _kind(raw: bytes, data: bytes, start: int, end: int) -> str:
    """The event type in raw[start:end] (plain ASCII), as a string."""
    size = end - start
    for k in range(len(_kind_bytes)):
        known = _kind_bytes[k]
        if len(known) == size and _same(data, start, known):
            return _kind_texts[k]
    text = raw[start:end].decode("ascii")
    if len(_kind_bytes) < _KINDS_LIMIT:
        _kind_bytes.append(raw[start:end])
        _kind_texts.append(text)
    return text


def _skip_space(data: bytes, i: int, n: int) -> int:
    """The index of the first byte at or after i that is not JSON whitespace."""
    while i < n:
        c = data[i]
        if c != _SPACE and c != 10 and c != 13 and c != 9:  # space, LF, CR, tab
            return i
        i += 1
    return i


def _field_number(data: bytes, start: int, end: int) -> int:
    """Which field the rules read data[start:end] names (0 to 7, the order of
    `_scan_common`'s fields), or -1: any other key, skipped as the contract says."""
    size = end - start
    first = data[start]
    if size == 8:
        if first == 101:  # e
            return 0 if _same(data, start, b"event_id") else -1
        return 4 if _same(data, start, b"page_url") else -1
    if size == 4:
        return 1 if _same(data, start, b"type") else -1
    if size == 11:
        return 2 if _same(data, start, b"occurred_at") else -1
    if size == 14:
        return 3 if _same(data, start, b"company_domain") else -1
    if size == 7:
        return 5 if _same(data, start, b"lead_id") else -1
    if size == 5:
        if first == 101:  # e
            return 6 if _same(data, start, b"email") else -1
        return 7 if _same(data, start, b"title") else -1
    return -1


def _same(data: bytes, start: int, name: bytes) -> bool:
    """Whether data holds `name` at `start` (the caller checked the length)."""
    text = name
    # A loop, not all(...): Cython makes a generator of that.
    for j in range(len(name)):  # noqa: SIM110
        if data[start + j] != text[j]:
            return False
    return True


def _checked_decode(raw: bytes | str) -> Event:
    """orjson to a dict, then every check by hand: the error names the field."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        reason = "undecodable" if "utf-8" in str(exc).lower() else "invalid_json"
        raise InvalidInputError(reason, "not valid UTF-8 JSON") from None
    if type(doc) is not dict:
        raise InvalidInputError("schema", "expected a JSON object")
    return event_from_document(doc)


def event_from_document(doc: dict[str, Any]) -> Event:
    """Validate an already-parsed event document (the hot path: kept flat)."""
    get = doc.get
    event_id = get("event_id")
    kind = get("type")
    # Every field the engine reads is a string (or null, or missing); when
    # every value is a string, one C-level pass over the values says so.
    strings_only = {*map(type, doc.values())} == _STR
    if not strings_only:
        if type(event_id) is not str:
            raise _not_a_string("event_id", event_id, True)
        if type(kind) is not str:
            raise _not_a_string("type", kind, True)
    if not event_id:
        raise _not_a_string("event_id", event_id, True)
    if not kind:
        raise _not_a_string("type", kind, True)
    occurred_at = get("occurred_at")
    if occurred_at is None:
        raise InvalidInputError("timestamp", "occurred_at: required")
    at = parse_event_time(occurred_at)
    is_lead = kind == LEAD_CREATED
    if not strings_only:
        for key in _LEAD_OPTIONAL if is_lead else _VISITOR_OPTIONAL:
            value = get(key)
            if value is not None and type(value) is not str:
                raise _not_a_string(key, value, False)
    company_domain = get("company_domain")
    if is_lead:
        lead_id = get("lead_id")
        if type(lead_id) is not str or not lead_id:
            raise _not_a_string("lead_id", lead_id, True)
        email = get("email")
        # The email may be left out when the company domain is given (what
        # `scorer collect` sends: it drops emails at ingest); never empty.
        needed = email is not None or type(company_domain) is not str or not company_domain
        if needed and (type(email) is not str or not email):
            raise _not_a_string("email", email, True)
        return Event(
            event_id,
            kind,
            occurred_at,
            at,
            lead_account(company_domain, email),
            None,
            lead_id,
            get("title"),
        )
    account = normalise_domain(company_domain) if company_domain else None
    return Event(event_id, kind, occurred_at, at, account or None, url_path(get("page_url")))
