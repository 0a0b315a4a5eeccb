"""Per-account state: the explicit value the stream layer keeps in a table.

`AccountState` holds, per ICP id, the intent accumulator, its clock and the
last alert, plus the account's clock (newest `occurred_at` applied) and the
ids of applied events, for idempotence.

The memory of applied event ids is bounded by an event-time window (default
7 days, `SCORER_DEDUP_WINDOW`). An event older than the account's clock minus
the window is ignored as `expired`, because it can no longer be told apart
from a replay; this check comes first, so ids older than that horizon are
never consulted and may be forgotten at any time without changing a result.
Every applied event inside the window is remembered, so a replay is always
recognised.

An event id is taken to name one event: a replay carries the same
`occurred_at`. (The stream stores ids in buckets by `occurred_at`.)

Leads: the state keeps no lead id, title or persona, but the id of a
lead_created event may carry the lead's id (a CRM webhook's event id often
does), so for erasure (`scorer.scoring.erasure`) the state links the ids of
the lead events it remembers to the lead's key: a 16-byte hash of the lead
id (`lead_key`), not the id. A link lives about as long as its event id: the
changelog writes it with the id and drops it with the id's chunk, and memory
drops the oldest once past the dedup window (not the last event id's).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import orjson

DEFAULT_DEDUP_WINDOW = 7 * 86400.0
# An account idle this long in event time starts fresh (account expiry, docs/icp.md):
# 90 days is about 13 of the samples' 7-day half-lives (intent decayed to a
# ten-thousandth), far past any cooldown and the dedup window.
DEFAULT_ACCOUNT_TTL = 90 * 86400.0
# Idle accounts are swept (`scorer score`, the workers) each time event time has moved
# on by 1/32 of the TTL plus the dedup window, so at most about 3 % more accounts than
# that margin stay in memory, however fast event time runs (a replay, a backfill).
SWEEPS_PER_IDLE = 32


# A copy of a hasher made once costs about half of making one with its parameters
# (0.30 against 0.50 µs, timeit): the same digest.
_LEAD_HASH = hashlib.blake2b(digest_size=16, person=b"scorer-lead")


def lead_key(lead_id: str) -> bytes:
    """The key that links a lead's events to it in account state and erasure requests."""
    hasher = _LEAD_HASH.copy()
    hasher.update(lead_id.encode())
    return hasher.digest()


class SeenIds:
    """Where an account's applied event ids are remembered: the base of `WindowedIds`
    (in memory) and `scorer.stream.id_window.ChunkedIds` (changelog-backed). A
    base class rather than a protocol: the compiled engine then calls `add` (its
    dedup: check and remember in one look-up) through the extension type's table,
    not as a Python method (400 instructions an event fewer, 0.9 % of the scoring
    loop, callgrind). `contains` is for inspection and tests."""

    __slots__ = ()

    def contains(self, event_id: str, at: float) -> bool:
        raise NotImplementedError

    def clear(self) -> None:
        """Forget every id (the account expired)."""
        raise NotImplementedError

    def add(self, event_id: str, at: float, horizon: float, link: bytes | None = None) -> bool:
        """Remember an id (a lead event's with its lead key, `link`), unless it is
        remembered already: False then, and nothing changes. Ids of events before
        `horizon` may be forgotten. (One call, one look-up: the engine's dedup.)"""
        raise NotImplementedError

    def forget(
        self, event_ids: Collection[str], links: Mapping[str, tuple[bytes, float]] | None
    ) -> None:
        """Forget these ids now, wherever they are kept (an erasure); `links`: the
        lead keys of the ids left, for stores that keep them beside the ids."""
        raise NotImplementedError


# A WindowedIds is first swept when it holds more than this many ids.
SWEEP_FLOOR = 16


class WindowedIds(SeenIds):
    """Applied ids in memory: a dict of id -> time, swept of the ids past the
    horizon whenever it has doubled since the last sweep.

    So an add costs O(1) amortised, one dict entry and no object the cyclic
    garbage collector tracks (a deque of `(time, id)` tuples and a set cost a
    tracked tuple per event, which the young collections walked while cold),
    and memory holds at most twice the ids inside the window."""

    __slots__ = ("ids", "limit")

    def __init__(self, entries: Iterable[tuple[float, str]] = ()) -> None:
        self.ids: dict[str, float] = {event_id: at for at, event_id in entries}
        self.limit = max(SWEEP_FLOOR, 2 * len(self.ids))

    def contains(self, event_id: str, at: float) -> bool:
        return event_id in self.ids

    def clear(self) -> None:
        self.ids = {}
        self.limit = SWEEP_FLOOR

    def forget(
        self, event_ids: Collection[str], links: Mapping[str, tuple[bytes, float]] | None
    ) -> None:
        for event_id in event_ids:
            self.ids.pop(event_id, None)

    def add(self, event_id: str, at: float, horizon: float, link: bytes | None = None) -> bool:
        ids = self.ids
        count = len(ids)
        ids.setdefault(event_id, at)
        if len(ids) == count:
            return False  # remembered already
        if count >= self.limit:
            self.ids = ids = {k: t for k, t in ids.items() if t >= horizon}
            self.limit = max(SWEEP_FLOOR, 2 * len(ids))
        return True

    def entries(self) -> list[tuple[float, str]]:
        """(time, id) of the ids kept, in the order they were applied."""
        return [(at, event_id) for event_id, at in self.ids.items()]


# An unset clock or alert time (None to readers) in the C double fields below.
_NO_TIME = math.nan


def _time(value: float) -> float | None:
    """A stored time as readers see it."""
    return None if value != value else value  # NaN: not set


def _stored(value: float | None) -> float:
    """A time as the fields below store it."""
    return _NO_TIME if value is None else float(value)


class IcpState:
    """Intent and alert state of one account under one ICP id. (Plain slotted
    classes here, for `state.pxd`: see `scorer.events.Event`.)

    The clock and the alert time are kept as floats, NaN when unset, so the
    compiled engine reads and writes them as C doubles (`_clock`, `_alert_at`);
    everyone else reads `clock` and `alert_at`, None when unset."""

    __slots__ = ("_alert_at", "_clock", "alert_tier", "raw")

    def __init__(
        self,
        raw: float = 0.0,
        clock: float | None = None,
        alert_at: float | None = None,
        alert_tier: str | None = None,
    ) -> None:
        self.raw = raw
        self._clock = _stored(clock)
        self._alert_at = _stored(alert_at)
        self.alert_tier = alert_tier

    @property
    def clock(self) -> float | None:
        return _time(self._clock)

    @clock.setter
    def clock(self, value: float | None) -> None:
        self._clock = _stored(value)

    @property
    def alert_at(self) -> float | None:
        return _time(self._alert_at)

    @alert_at.setter
    def alert_at(self, value: float | None) -> None:
        self._alert_at = _stored(value)


class AccountState:
    """All state of one account: per-ICP state, its clock and applied ids.
    `Engine.apply` checks expiry and replays against it and records applied
    events (the rules of this module's docstring)."""

    __slots__ = ("_clock", "company_seen", "fits", "icps", "last_event_id", "leads", "seen")

    def __init__(
        self,
        clock: float | None = None,  # newest occurred_at applied, over all ICPs
        last_event_id: str | None = None,
        icps: dict[str, IcpState] | None = None,
        seen: SeenIds | None = None,
        leads: dict[str, tuple[bytes, float]] | None = None,
    ) -> None:
        self._clock = _stored(clock)  # as IcpState's
        self.last_event_id = last_event_id
        self.icps: dict[str, IcpState] = {} if icps is None else icps
        self.seen: SeenIds = WindowedIds() if seen is None else seen
        # lead event id -> (lead key, its time); None while there are none (most
        # accounts: an empty dict would cost each one in memory).
        self.leads: dict[str, tuple[bytes, float]] | None = leads or None
        # The engine's fit of the account's company: (record or its token, the ICPs,
        # one `CompanyFit` each). Derived, never stored: computed again after a restore.
        self.fits: tuple[Any, Any, Any] | None = None
        # The company table's change count when `fits` was last checked against its
        # record (`scorer.scoring.intake.apply_event`); -1: never. Derived too.
        self.company_seen = -1

    @property
    def clock(self) -> float | None:
        return _time(self._clock)

    @clock.setter
    def clock(self, value: float | None) -> None:
        self._clock = _stored(value)

    def expire(self) -> None:
        """Start fresh: no clock, no intent, no alert history, no applied ids."""
        self._clock = _NO_TIME
        self.last_event_id = None
        self.icps = {}
        self.seen.clear()
        self.leads = None

    def note_lead(self, key: bytes, event_id: str, at: float, horizon: float) -> None:
        """A lead event was applied: link its id to the lead's key. The oldest
        links (in the order they were made) of events before `horizon` go: their
        ids are no longer consulted. Not the last event id's, which the record
        keeps; a late link waits for those before it, so a pass costs what it
        removes, not the account's whole window."""
        leads = self.leads
        if leads is None:
            self.leads = {event_id: (key, at)}
            return
        leads[event_id] = (key, at)
        last = self.last_event_id
        old = []
        for linked, (_, t) in leads.items():
            if t >= horizon or linked == last:
                break
            old.append(linked)
        for linked in old:
            del leads[linked]

    def erase_lead(self, key: bytes) -> bool:
        """Forget the lead's events: their ids and links (an erasure). The intent
        they added stays, an anonymous sum (docs/icp.md item 14). True if any."""
        leads = self.leads
        if not leads:
            return False
        gone = {event_id for event_id, (k, _) in leads.items() if k == key}
        if not gone:
            return False
        for event_id in gone:
            del leads[event_id]
        if not leads:
            self.leads = None
        self.seen.forget(gone, leads)
        if self.last_event_id in gone:
            self.last_event_id = None
        return True

    def core(self) -> dict[str, Any]:
        """Everything but the applied ids and their lead links, as plain JSON values."""
        return {
            "clock": self.clock,
            "last": self.last_event_id,
            "icps": {k: [s.raw, s.clock, s.alert_at, s.alert_tier] for k, s in self.icps.items()},
        }

    def to_json(self) -> bytes:
        """The whole state (in-memory ids included), for tests and offline use."""
        assert isinstance(self.seen, WindowedIds)
        return orjson.dumps({**self.core(), "seen": [list(entry) for entry in self.seen.entries()]})

    @classmethod
    def from_core(cls, doc: dict[str, Any], seen: SeenIds) -> AccountState:
        return cls(
            clock=doc["clock"],
            last_event_id=doc["last"],
            icps={key: IcpState(*values) for key, values in doc["icps"].items()},
            seen=seen,
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> AccountState:
        doc: dict[str, Any] = orjson.loads(raw)
        seen = WindowedIds([(float(at), str(event_id)) for at, event_id in doc["seen"]])
        return cls.from_core(doc, seen)
