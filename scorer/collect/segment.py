"""Segment-spec calls to this project's records (pure).

A call (`page`, `track`, `identify`, `group`; `screen` and `alias` are
accepted and ignored) is validated as Segment's HTTP Tracking API does (an
id, a name for `track`, 32 KB at most) and mapped through the `Mapping`:

- a `page` or mapped `track` becomes a `Visit`: a visitor event without a
  company, sent to the stitch stage under the visitor's identity;
- an `identify` with a work email becomes a `Lead` for the email's company
  (straight to lead-events) and a `Link` of each of its ids to that company;
- a `group` with a domain or website becomes a `Link` of each of its ids.

Only the fields named here are read. The email, the IP (`context.ip`), the
user agent, traits and properties never leave this module; identities are
kept as digests of the anonymousId / userId, never as given.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import orjson

from scorer.collect.mapping import Mapping, snake_case
from scorer.enrichment.domains import FREE_MAIL_DOMAINS, normalise_domain
from scorer.timefmt import format_epoch

MAX_CALL_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_BATCH_CALLS = 2500  # Segment's own batch limit
TYPES = ("page", "track", "identify", "group", "screen", "alias")
IGNORED_TYPES = ("screen", "alias")


class CallError(Exception):
    """A request the Tracking API answers 400 to. `reason` labels the metric;
    `message` names the field, never its value."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.message = message
        super().__init__(f"{reason}: {message}")


def json_body(body: bytes, expected: type, message: str) -> Any:
    """A request body decoded, of the `expected` JSON type, or a `CallError`."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise CallError("invalid_json", "the body is not JSON") from None
    if type(value) is not expected:
        raise CallError("invalid_call", message)
    return value


@dataclass(frozen=True, slots=True)
class Visit:
    """A visitor event not yet credited to a company, for the stitch stage."""

    identity: bytes
    document: dict[str, Any]
    at: float


@dataclass(frozen=True, slots=True)
class Link:
    """An identity now belongs to a company (from identify or group)."""

    identity: bytes
    domain: str
    at: float


@dataclass(frozen=True, slots=True)
class Lead:
    """A lead_created event for a company; no email in it."""

    domain: str
    document: dict[str, Any]


Output = Visit | Link | Lead


@dataclass(slots=True)
class Mapped:
    """What one request's calls became: records, and calls ignored by reason."""

    outputs: list[Output]
    calls: dict[str, int]  # accepted calls by type
    ignored: dict[str, int]


def identity(kind: str, value: str) -> bytes:
    """The stitch key of an anonymousId ("a") or userId ("u"): a digest, so the
    id as given (a userId may be an email) is never stored."""
    return hashlib.blake2b(f"{kind}:{value}".encode(), digest_size=16).hexdigest().encode()


def visitor_key(anonymous_id: str | None, user_id: str | None) -> bytes:
    """Where a visitor's events are kept: its anonymousId when it has one, else its userId."""
    if anonymous_id is not None:
        return identity("a", anonymous_id)
    return identity("u", user_id or "")


def _id(message: dict[str, Any], key: str) -> str | None:
    value = message.get(key)
    if value is None or value == "":
        return None
    if type(value) is str:
        return value
    if type(value) in (int, float):
        return str(value)
    raise CallError("invalid_field", f"{key}: expected a string")


def _object(message: dict[str, Any], key: str) -> dict[str, Any]:
    value = message.get(key)
    if value is None:
        return {}
    if type(value) is not dict:
        raise CallError("invalid_field", f"{key}: expected an object")
    return value


def _event_time(message: dict[str, Any], received: float) -> float:
    for key in ("timestamp", "originalTimestamp"):
        value = message.get(key)
        if value is None:
            continue
        if type(value) is not str:
            raise CallError("invalid_timestamp", f"{key}: expected an ISO 8601 string")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise CallError("invalid_timestamp", f"{key}: not an ISO 8601 timestamp") from None
        if parsed.tzinfo is None:  # Segment's SDKs read a naive time as UTC too
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    return received


def _trait(traits: dict[str, Any], path: str) -> Any:
    value: Any = traits
    for part in path.split("."):
        if type(value) is not dict:
            return None
        value = value.get(part)
    return value


def page_url(url: Any, path: Any) -> str | None:
    """The page's URL without query or fragment (they carry emails and ids), or its path."""
    if type(url) is str and url:
        try:
            parts = urlsplit(url)
        except ValueError:
            parts = None
        if parts is not None and parts.scheme in ("http", "https") and parts.netloc:
            host = parts.hostname or ""
            return f"{parts.scheme}://{host}{parts.path or '/'}"
    if type(path) is str and path.startswith("/"):
        return path.split("?", 1)[0].split("#", 1)[0]
    return None


def company_domain(value: Any) -> str | None:
    """A company's domain from a domain or website trait; None for free mail or junk."""
    if type(value) is not str or not value.strip():
        return None
    text = value.strip()
    if "://" in text:
        try:
            text = urlsplit(text).hostname or ""
        except ValueError:
            return None
    else:
        text = text.split("/", 1)[0].split(":", 1)[0]
    domain = normalise_domain(text)
    if "." not in domain or " " in domain or "@" in domain or domain in FREE_MAIL_DOMAINS:
        return None
    return domain


def why_no_company(value: Any) -> str:
    """The ignore reason of a value `company_domain` refused."""
    if type(value) is str:
        text = value.strip().rpartition("@")[2]
        host = text.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
        if normalise_domain(host) in FREE_MAIL_DOMAINS:
            return "free_mail"
    return "no_company"


def email_domain(value: Any) -> str | None:
    """The company domain of a work email; None for free mail or no email."""
    if type(value) is not str:
        return None
    _, at, host = value.strip().rpartition("@")
    return company_domain(host) if at else None


class Mapper:
    """Validates calls and maps them to records, with one `Mapping`."""

    def __init__(self, mapping: Mapping) -> None:
        self.mapping = mapping

    def map_calls(
        self, calls: list[Any], source: str, received: float, forced_type: str | None = None
    ) -> Mapped:
        """Every call of one request, or `CallError` for the first bad one (a
        request is all or nothing: no partial batch is produced)."""
        mapped = Mapped([], {}, {})
        for message in calls:
            if type(message) is not dict:
                raise CallError("invalid_call", "a call must be a JSON object")
            if forced_type is not None:
                message["type"] = forced_type
            if len(orjson.dumps(message)) > MAX_CALL_BYTES:
                raise CallError("too_large", f"a call is over {MAX_CALL_BYTES // 1024} KB")
            self.map_call(message, source, received, mapped)
        return mapped

    def map_call(self, message: dict[str, Any], source: str, received: float, out: Mapped) -> None:
        kind = message.get("type")
        if kind not in TYPES:
            raise CallError("invalid_type", f"type: expected one of {', '.join(TYPES)}")
        anonymous_id = _id(message, "anonymousId")
        user_id = _id(message, "userId")
        if anonymous_id is None and user_id is None:
            raise CallError("missing_id", "userId or anonymousId is required")
        if kind == "track":
            name = message.get("event")
            if type(name) is not str or not name:
                raise CallError("missing_event", "event: track calls need an event name")
        at = _event_time(message, received)
        message_id = _id(message, "messageId") or (
            "gen-" + hashlib.blake2b(orjson.dumps(message, option=orjson.OPT_SORT_KEYS),
                                     digest_size=16).hexdigest()
        )  # fmt: skip
        out.calls[kind] = out.calls.get(kind, 0) + 1
        if kind in IGNORED_TYPES:
            self._ignore(out, kind)
        elif kind == "page" or kind == "track":
            self._visit(message, kind, message_id, at, anonymous_id, user_id, out)
        elif kind == "identify":
            self._identify(message, source, at, anonymous_id, user_id, out)
        else:
            self._group(message, at, anonymous_id, user_id, out)

    @staticmethod
    def _ignore(out: Mapped, reason: str) -> None:
        out.ignored[reason] = out.ignored.get(reason, 0) + 1

    def _visit(
        self,
        message: dict[str, Any],
        kind: str,
        message_id: str,
        at: float,
        anonymous_id: str | None,
        user_id: str | None,
        out: Mapped,
    ) -> None:
        properties = _object(message, "properties")
        page = _object(_object(message, "context"), "page")
        if kind == "page":
            signal: str | None = self.mapping.page.type
            url = page_url(properties.get("url") or page.get("url"), properties.get("path"))
            if url is None:
                url = page_url(None, page.get("path"))
        else:
            name = message["event"]
            track = self.mapping.track
            signal = track.events.get(name)
            if signal is None and track.unmapped == "snake_case":
                signal = snake_case(name)
            if signal is None:
                self._ignore(out, "unmapped_event")
                return
            url = page_url(page.get("url"), page.get("path"))
        document: dict[str, Any] = {
            "event_id": message_id,
            "type": signal,
            "occurred_at": format_epoch(at),
        }
        if url is not None:
            document["page_url"] = url
        key = (
            identity("a", anonymous_id)
            if anonymous_id is not None
            else identity("u", user_id or "")
        )
        out.outputs.append(Visit(key, document, at))

    def _links(
        self, domain: str, at: float, anonymous_id: str | None, user_id: str | None, out: Mapped
    ) -> None:
        if anonymous_id is not None:
            out.outputs.append(Link(identity("a", anonymous_id), domain, at))
        if user_id is not None:
            out.outputs.append(Link(identity("u", user_id), domain, at))

    def _identify(
        self,
        message: dict[str, Any],
        source: str,
        at: float,
        anonymous_id: str | None,
        user_id: str | None,
        out: Mapped,
    ) -> None:
        rules = self.mapping.identify
        traits = _object(message, "traits")
        context_traits = _object(_object(message, "context"), "traits")
        email = None
        for path in rules.email_traits:
            email = _trait(traits, path) or _trait(context_traits, path)
            if email:
                break
        if not email:
            self._ignore(out, "no_email")
            return
        domain = email_domain(email)
        if domain is None:
            self._ignore(out, why_no_company(email))
            return
        if rules.lead:
            person = (
                identity("u", user_id) if user_id is not None else identity("a", anonymous_id or "")
            )
            title = None
            for path in rules.title_traits:
                value = _trait(traits, path) or _trait(context_traits, path)
                if type(value) is str and value:
                    title = value[:200]
                    break
            # One lead per person and company: identify calls repeat on every
            # login, and the workers drop an event id they have applied.
            digest = hashlib.blake2b(person + b"@" + domain.encode(), digest_size=12).hexdigest()
            document = {
                "event_id": f"lead-{digest}",
                "type": rules.lead_type,
                "occurred_at": format_epoch(at),
                "lead_id": f"{source}-{digest}",
                "company_domain": domain,
                "title": title,
                "source": source,
            }
            out.outputs.append(Lead(domain, document))
        if rules.link:
            self._links(domain, at, anonymous_id, user_id, out)

    def _group(
        self,
        message: dict[str, Any],
        at: float,
        anonymous_id: str | None,
        user_id: str | None,
        out: Mapped,
    ) -> None:
        traits = _object(message, "traits")
        context_traits = _object(_object(message, "context"), "traits")
        for path in self.mapping.group.domain_traits:
            value = _trait(traits, path) or _trait(context_traits, path)
            if value:
                domain = company_domain(value)
                if domain is None:
                    self._ignore(out, why_no_company(value))
                    return
                self._links(domain, at, anonymous_id, user_id, out)
                return
        self._ignore(out, "no_domain")
