"""Erasure requests (`scorer erase`) and what they do to account state (pure).

A request names a lead (by its lead key, `scorer.scoring.state.lead_key`,
never the id) or an account (by its domain), with the time it was made.
Applied to a table of account states (`apply_request`):
- an account's state is removed entirely;
- a lead's links and event ids leave the state of every account that has
  them (a lead id does not say its account, so every account is looked at);
  the account keeps its other signals, and its intent, an anonymous sum.

Erasure is of the past: an event of an erased account or lead is dropped as
`erased` when it occurred at or before the request's time, whenever it
arrives (a late event, or one still in flight when the request was
applied); a later one is processed as any other. With `suppress` the
request carries no target, only a salted hash of it (`suppression_hash`,
the salt from SCORER_ERASURE_SALT), and every event of the target, past or
future, is dropped as `suppressed`: the id is never stored again. A
suppressed target is found in state by hashing each candidate (each
account's domain, each lead link's key) with the same salt.

`Erasures` is the table of requests a worker or a replay has read: it
decides which events are dropped (`covers`). The stream, `scorer score` and
the backtest apply the same functions (docs/icp.md, item 14).
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from scorer.enrichment.domains import normalise_domain
from scorer.errors import InvalidInputError
from scorer.events import Event
from scorer.scoring.state import AccountState, lead_key
from scorer.timefmt import format_epoch, parse_event_time

LEAD = "lead"
ACCOUNT = "account"
KINDS = (LEAD, ACCOUNT)
ERASED = "erased"  # an event of an erased target from before the request
SUPPRESSED = "suppressed"  # an event of a suppressed target


def suppression_hash(salt: bytes, kind: str, target: str) -> str:
    """The salted hash a suppression keeps instead of the target (domain, or lead key hex)."""
    return hmac.new(salt, f"{kind}:{target}".encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class ErasureRequest:
    """One request: `target` (domain or lead key hex) or, suppressed, `hashed`."""

    id: str
    kind: str
    requested_at: float
    target: str | None = None
    hashed: str | None = None

    @property
    def suppress(self) -> bool:
        return self.hashed is not None

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "requested_at": format_epoch(self.requested_at),
        }
        if self.target is not None:
            doc["target"] = self.target
        if self.hashed is not None:
            doc["suppress"] = self.hashed
        return orjson.dumps(doc)

    @classmethod
    def from_json(cls, raw: bytes | str) -> ErasureRequest:
        """A request document; `InvalidInputError` naming the field when it is not one."""
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise InvalidInputError("schema", "not JSON") from None
        if not isinstance(doc, dict):
            raise InvalidInputError("schema", "not an object")
        request_id, kind = doc.get("id"), doc.get("kind")
        target, hashed = doc.get("target"), doc.get("suppress")
        if not isinstance(request_id, str) or not request_id:
            raise InvalidInputError("schema", "id must be a non-empty string")
        if kind not in KINDS:
            raise InvalidInputError("schema", "kind must be lead or account")
        if (target is None) == (hashed is None):
            raise InvalidInputError("schema", "exactly one of target and suppress")
        for name, value in (("target", target), ("suppress", hashed)):
            if value is not None and (not isinstance(value, str) or not value):
                raise InvalidInputError("schema", f"{name} must be a non-empty string")
        at = parse_event_time(doc.get("requested_at"), "requested_at")
        return cls(request_id, kind, at, target, hashed)


def new_request(
    request_id: str,
    kind: str,
    value: str,
    requested_at: float,
    salt: bytes | None = None,
) -> ErasureRequest:
    """The request for a lead id or an account domain; with a salt, a suppression
    (the request then carries only the salted hash)."""
    if kind not in KINDS:
        raise ValueError("kind must be lead or account")
    target = normalise_domain(value) if kind == ACCOUNT else lead_key(value).hex()
    if not target:
        raise ValueError("an empty target")
    if salt is None:
        return ErasureRequest(request_id, kind, requested_at, target=target)
    return ErasureRequest(
        request_id, kind, requested_at, hashed=suppression_hash(salt, kind, target)
    )


class Erasures:
    """The requests read so far: which events they drop. `salt` hashes events'
    targets once a suppression is known; without it a suppression cannot be
    matched, and `add` refuses it (`ValueError`)."""

    __slots__ = ("accounts", "hashed", "leads", "salt")

    def __init__(self, salt: bytes | None = None) -> None:
        self.salt = salt
        self.accounts: dict[str, float] = {}  # domain -> newest request time
        self.leads: dict[bytes, float] = {}  # lead key -> newest request time
        self.hashed: set[str] = set()  # suppressions

    def __bool__(self) -> bool:
        return bool(self.accounts or self.leads or self.hashed)

    def add(self, request: ErasureRequest) -> None:
        if request.hashed is not None:
            if self.salt is None:
                raise ValueError("a suppression needs SCORER_ERASURE_SALT to be matched")
            self.hashed.add(request.hashed)
            return
        assert request.target is not None
        at = request.requested_at
        if request.kind == ACCOUNT:
            domain = request.target
            self.accounts[domain] = max(self.accounts.get(domain, -math.inf), at)
        else:
            key = bytes.fromhex(request.target)
            self.leads[key] = max(self.leads.get(key, -math.inf), at)

    def covers(self, event: Event) -> str | None:
        """ERASED or SUPPRESSED when a request drops this resolved event, else None."""
        domain = event.account
        assert domain is not None
        return self.covers_target(domain, event.at, event.lead_id)

    def covers_target(self, domain: str, at: float, lead_id: str | None) -> str | None:
        """The same for an account, an event time and a lead id (or None): an
        output's trigger, say, as the router checks it."""
        until = self.accounts.get(domain)
        if until is not None and at <= until:
            return ERASED
        key = lead_key(lead_id) if lead_id is not None and (self.leads or self.hashed) else None
        if key is not None:
            until = self.leads.get(key)
            if until is not None and at <= until:
                return ERASED
        if self.hashed:
            salt = self.salt
            assert salt is not None
            if suppression_hash(salt, ACCOUNT, domain) in self.hashed:
                return SUPPRESSED
            if key is not None and suppression_hash(salt, LEAD, key.hex()) in self.hashed:
                return SUPPRESSED
        return None


class ErasableTable(Protocol):
    """The account states a request is applied to: a replay's, or a task's store."""

    def domains(self) -> Iterable[str]:
        """Every account it holds state for."""
        ...

    def account(self, domain: str) -> AccountState: ...

    def drop(self, domain: str) -> None:
        """Remove the account's state entirely."""

    def changed(self, domain: str) -> None:
        """The account's state was changed in place."""


def apply_request(request: ErasureRequest, table: ErasableTable, salt: bytes | None) -> int:
    """Erase what the request names from the table; returns how many accounts it changed."""
    hashed = request.hashed
    if hashed is not None and salt is None:
        raise ValueError("a suppression needs SCORER_ERASURE_SALT to be matched")
    if request.kind == ACCOUNT:
        if hashed is None:
            assert request.target is not None
            gone = [request.target] if request.target in set(table.domains()) else []
        else:
            assert salt is not None
            gone = [d for d in table.domains() if suppression_hash(salt, ACCOUNT, d) == hashed]
        for domain in gone:
            table.drop(domain)
        return len(gone)
    changed = 0
    for domain in list(table.domains()):
        state = table.account(domain)
        if not state.leads:
            continue
        key = _lead_in(state, request, salt)
        if key is not None and state.erase_lead(key):
            table.changed(domain)
            changed += 1
    return changed


def _lead_in(state: AccountState, request: ErasureRequest, salt: bytes | None) -> bytes | None:
    """The key of the request's lead if the state links it, else None."""
    assert state.leads is not None
    if request.target is not None:
        key = bytes.fromhex(request.target)
        return key if any(k == key for k, _ in state.leads.values()) else None
    assert salt is not None
    for key, _ in state.leads.values():
        if suppression_hash(salt, LEAD, key.hex()) == request.hashed:
            return key
    return None


class ReplayTable:
    """A replay's account states (`AccountStates.states`) as an `ErasableTable`."""

    __slots__ = ("states",)

    def __init__(self, states: dict[str, AccountState]) -> None:
        self.states = states

    def domains(self) -> Iterable[str]:
        return list(self.states)

    def account(self, domain: str) -> AccountState:
        return self.states[domain]

    def drop(self, domain: str) -> None:
        self.states.pop(domain, None)

    def changed(self, domain: str) -> None:
        pass  # changed in place: nothing else holds it


class ReplayErasures:
    """Erasure requests in a replay of old input (`scorer score --erasures`, the
    backtest), applied in event-time order: a request is applied to the
    replay's states just before the first event that occurred after it
    (`covers`, called for each resolved event before its state is touched),
    and then drops what it covers. `finish` applies the ones left."""

    __slots__ = ("applied", "erasures", "pending", "salt", "tables")

    def __init__(
        self,
        requests: Iterable[ErasureRequest],
        states: dict[str, AccountState] | list[dict[str, AccountState]],
        salt: bytes | None = None,
    ) -> None:
        self.pending = sorted(requests, key=lambda request: request.requested_at, reverse=True)
        # The replay's states; several when it keeps a table per engine (the backtest).
        self.tables = [ReplayTable(s) for s in (states if isinstance(states, list) else [states])]
        self.salt = salt
        self.erasures = Erasures(salt)
        self.applied = 0  # accounts changed

    def __bool__(self) -> bool:
        return bool(self.pending) or bool(self.erasures)

    def covers(self, event: Event) -> str | None:
        pending = self.pending
        while pending and pending[-1].requested_at < event.at:
            self._apply(pending.pop())
        return self.erasures.covers(event) if self.erasures else None

    def finish(self) -> None:
        while self.pending:
            self._apply(self.pending.pop())

    def _apply(self, request: ErasureRequest) -> None:
        self.erasures.add(request)
        for table in self.tables:
            self.applied += apply_request(request, table, self.salt)


def read_requests(lines: Iterable[bytes]) -> list[ErasureRequest]:
    """Requests from JSON lines (an erasures file, or the topic's values dumped)."""
    requests = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                requests.append(ErasureRequest.from_json(line))
            except InvalidInputError as exc:
                raise InvalidInputError(exc.reason, f"line {number}: {exc.detail}") from None
    return requests
