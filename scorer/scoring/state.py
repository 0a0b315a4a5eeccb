"""Per-account state: the explicit value the stream layer keeps in a table.

`AccountState` holds the ids of applied events (for idempotence) and, per ICP
id, the intent accumulator, its clock and the last alert. It is serialised to
compact JSON for the changelog.

The memory of applied event ids is bounded by an event-time window (default
7 days, `SCORER_DEDUP_WINDOW`): ids of events older than the account's newest
event minus the window are forgotten, and an event that old is ignored as
`expired`, because it can no longer be told apart from a replay. Every applied
event inside the window is remembered, so a replay is always recognised.

An event id is taken to name one event: a replay carries the same
`occurred_at`. An id reused for an event at another time is a duplicate while
it is remembered, and is forgotten by the first event's time.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson

DEFAULT_DEDUP_WINDOW = 7 * 86400.0


@dataclass(slots=True)
class IcpState:
    """Intent and alert state of one account under one ICP id."""

    raw: float = 0.0
    clock: float | None = None
    alert_at: float | None = None
    alert_tier: str | None = None


@dataclass(slots=True)
class AccountState:
    """All state of one account: applied event ids and per-ICP state."""

    clock: float | None = None  # newest occurred_at applied, over all ICPs
    seen: set[str] = field(default_factory=set)
    order: deque[tuple[float, str]] = field(default_factory=deque)  # insertion order
    icps: dict[str, IcpState] = field(default_factory=dict)

    def remember(self, event_id: str, at: float, window: float) -> None:
        """Record an applied event and forget ids that fell out of the window."""
        self.seen.add(event_id)
        self.order.append((at, event_id))
        if self.clock is None or at > self.clock:
            self.clock = at
        horizon = self.clock - window
        order = self.order
        # Oldest insertions first; a late insertion leaves once all before it have.
        while order and order[0][0] < horizon:
            self.seen.discard(order.popleft()[1])

    def is_expired(self, at: float, window: float) -> bool:
        return self.clock is not None and at < self.clock - window

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "clock": self.clock,
                "seen": [[at, event_id] for at, event_id in self.order],
                "icps": {
                    key: [s.raw, s.clock, s.alert_at, s.alert_tier] for key, s in self.icps.items()
                },
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> AccountState:
        doc: dict[str, Any] = orjson.loads(raw)
        order = deque((float(at), str(event_id)) for at, event_id in doc["seen"])
        return cls(
            clock=doc["clock"],
            seen={event_id for _, event_id in order},
            order=order,
            icps={key: IcpState(*values) for key, values in doc["icps"].items()},
        )
