"""One input event from its bytes to its scores: decode, resolve, apply.

This is the one path of `scorer score`, the backtest and the stream worker
(rules 11 and 12 of the scoring semantics): the event is decoded and checked,
its account resolved (an unresolved event scores nothing), the account's
state taken from the caller's table (made on first use), and the engine
applied with the account's company record. Callers differ only in the
tables they give and in what they do with the result:

- `accounts.account(domain)` gives the account's `AccountState`: a dict of
  states for a file (`AccountStates`), a task's store in the stream;
- `companies.company(domain)` gives `(record or None, token)`, the record a
  mapping or its JSON bytes (the stream's table: decoded only when read); the
  token keeps the engine's fit of the record valid while it is unchanged
  (None: the record object itself is the token);
- `placement.belongs(domain)`, when given, may refuse an event before its
  state is touched: the stream re-keys an event that sits on another
  partition than its account's, the backtest's split replay skips the
  accounts of other processes. A refused event is `PLACED_ELSEWHERE`;
- `erasures.covers(event)`, when given, may drop an event of an erased or
  suppressed account or lead (`scorer.scoring.erasure`) before its state is
  touched: the outcome is then what it says (`erased`, `suppressed`).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, Protocol

from scorer.events import MAX_EVENT_BYTES, Event, decode_event
from scorer.scoring.engine import UNRESOLVED, Engine
from scorer.scoring.state import AccountState

PLACED_ELSEWHERE = "placed_elsewhere"
NO_SCORES: list[Any] = []


class AccountTable:
    """Where an event's account state comes from: the base of `AccountStates` (a
    file's replay) and `scorer.stream.store.AccountStore` (a task's store). Base
    classes rather than protocols, as `scorer.scoring.state.SeenIds`: the compiled
    core then calls `account` and `company` through the extension type's table,
    not as Python methods (about 1,000 instructions an event fewer, callgrind)."""

    __slots__ = ()

    def account(self, domain: str) -> AccountState:
        raise NotImplementedError


class CompanySource:
    """Where an account's company record comes from: the base of `CompanyMap` (a
    firmographics file) and `scorer.stream.tables.Firmographics` (the table).

    `changes` and `unchanged` let an account whose company fit is kept skip the
    record's look-up (a large table, a cache miss an event) while the record has
    not changed. A source that says so must give as token None or the record
    itself: the kept fit's token is then given to the engine as the record.
    Its counts start at its own `epoch()`, so that a count another source gave
    (an account state carried from one file's replay to the next) is never
    taken for one of its own."""

    __slots__ = ()

    def company(self, domain: str) -> tuple[Any, object]:
        raise NotImplementedError

    def changes(self) -> int:
        """How many changes the source has applied: a count `unchanged` takes back."""
        return 0

    def unchanged(self, domain: str, since: int, record: Any) -> bool:
        """True: `record`, read when `changes()` gave `since`, is still the domain's
        record (the source counts it as read). False: read it again (the base
        always says so)."""
        return False


class Placement:
    """Which accounts a caller takes: the base of the stream's `Processor` (an event
    on another partition than its account's is re-keyed) and the backtest's split
    replay (`ShareOf`). A base class, as `AccountTable`: called per event."""

    __slots__ = ()

    def belongs(self, domain: str) -> bool:
        raise NotImplementedError


class Dropping(Protocol):
    def covers(self, event: Event) -> str | None: ...


class AccountStates(AccountTable):
    """The account states of a file's replay: one per domain, made on first use."""

    __slots__ = ("states",)

    def __init__(self) -> None:
        self.states: dict[str, AccountState] = {}

    def account(self, domain: str) -> AccountState:
        state = self.states.get(domain)
        if state is None:
            state = self.states[domain] = AccountState()
        return state

    def __len__(self) -> int:
        """Accounts in state."""
        return len(self.states)

    def expire(self, before: float) -> int:
        """Forget the accounts whose clock is older than `before` (account expiry's
        housekeeping: such an account starts fresh anyway); returns how many."""
        gone = []
        for domain, state in self.states.items():
            if state._clock < before:  # NaN (no event applied) is never before
                gone.append(domain)
        for domain in gone:
            del self.states[domain]
        return len(gone)


def epoch() -> int:
    """Where a new company source starts counting its changes: apart from every
    other source's counts in this process (2**40 changes each)."""
    return next(_EPOCHS) << 40


_EPOCHS = itertools.count(1)


class CompanyMap(CompanySource):
    """Company records from a mapping of domain to record (a firmographics file)."""

    __slots__ = ("base", "records")

    def __init__(self, records: Mapping[str, Mapping[str, Any]]) -> None:
        # A dict, read at C level per event (another mapping is copied once).
        self.records = records if type(records) is dict else dict(records)
        self.base = epoch()  # its one count: the records do not change while in use

    def company(self, domain: str) -> tuple[Any, object]:
        return self.records.get(domain), None

    def changes(self) -> int:
        return self.base

    def unchanged(self, domain: str, since: int, record: Any) -> bool:
        return since == self.base  # read from this map, which does not change


def take_event(
    engine: Engine,
    raw: bytes,
    accounts: AccountTable,
    companies: CompanySource,
    every: bool = True,
    max_bytes: int = MAX_EVENT_BYTES,
    placement: Placement | None = None,
    erasures: Dropping | None = None,
) -> tuple[str, Event, list[Any]]:
    """(outcome, event, scores) of one raw event; a bad one raises
    `InvalidInputError` naming why. Scores: one per active ICP when the
    outcome is scored (with `every` False, only the hot ones), else none."""
    if placement is not None and not isinstance(placement, Placement):
        raise TypeError("a placement is a scorer.scoring.intake.Placement")  # as compiled
    event = decode_event(raw, max_bytes)
    domain = event.account
    if domain is None:
        return UNRESOLVED, event, NO_SCORES
    if placement is not None and not placement.belongs(domain):
        return PLACED_ELSEWHERE, event, NO_SCORES
    if erasures:
        dropped = erasures.covers(event)
        if dropped is not None:
            return dropped, event, NO_SCORES
    outcome, scores = apply_event(engine, event, domain, accounts, companies, every)
    return outcome, event, scores


def apply_event(
    engine: Engine,
    event: Event,
    domain: str,
    accounts: AccountTable,
    companies: CompanySource,
    every: bool = True,
) -> tuple[str, list[Any]]:
    """A decoded, resolved event applied to its account: (outcome, scores)."""
    state = accounts.account(domain)
    if state is None:  # compiled, reading its fields would not fail by itself
        raise TypeError("an account table gave no state")
    kept = state.fits
    if kept is not None and companies.unchanged(domain, state.company_seen, kept[0]):
        # The record the kept fit was computed from (see CompanySource): no look-up.
        return engine.apply(state, event, kept[0], None, every)
    seen = companies.changes()
    company, token = companies.company(domain)
    outcome, scores = engine.apply(state, event, company, token, every)
    kept = state.fits
    if kept is not None and kept[0] is (company if token is None else token):
        state.company_seen = seen  # the fit is of the record as of `seen`
    return outcome, scores
