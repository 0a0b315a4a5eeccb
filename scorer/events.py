"""Decoding raw event bytes into `Event` values, fast.

This is the hot path's decoder. A well-formed event is decoded by msgspec
straight into a typed struct (`_Fields`: every field the rules read, and the
other known ones type-checked), which is several times cheaper than orjson
building a dict; anything msgspec refuses goes the checked way (orjson and
hand-written checks, `event_from_document`), which names what is wrong. So
the two paths accept exactly the same documents and give the same `Event`,
and only bad input pays for the second decode. It accepts the documents
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
from scorer.timefmt import parse_event_time

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


def decode_event(raw: bytes | str, max_bytes: int = MAX_EVENT_BYTES) -> Event:
    """Validate one JSON event document; raise `InvalidInputError` naming why."""
    if len(raw) > max_bytes:
        raise InvalidInputError("oversize", f"{len(raw)} bytes > {max_bytes}")
    try:
        fields = _decode_fields(raw)
    except msgspec.DecodeError:
        return _checked_decode(raw)
    event_id = fields.event_id
    kind = fields.type
    occurred_at = fields.occurred_at
    if not event_id or not kind or occurred_at is None:
        return _checked_decode(raw)  # it names the missing field
    at = parse_event_time(occurred_at)
    company_domain = fields.company_domain
    if kind == LEAD_CREATED:
        lead_id = fields.lead_id
        email = fields.email
        if not lead_id or not (email or (email is None and company_domain)):
            return _checked_decode(raw)
        account = lead_account(company_domain, email)
        return Event(event_id, kind, occurred_at, at, account, None, lead_id, fields.title)
    account = normalise_domain(company_domain) if company_domain else None
    return Event(event_id, kind, occurred_at, at, account or None, url_path(fields.page_url))


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
