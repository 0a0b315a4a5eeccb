"""Intent signals from the engagement that preceded won deals (pure).

An account "shows" a signal (an event type; for page views, also the page's
path) when it had such an event in the `lookback` before its deal was
created, or, for an account without a deal, at any time in the history. A
signal's evidence is then read like a firmographic value's: the win rate of
the accounts that showed it against the base win rate, with the lift's
Wilson interval, and the same keep rule. Points scale with log2 of the lift,
the strongest signal getting `top_points`.

The window is asymmetric on purpose: an account with no deal has the whole
history to show a signal, one with a deal only the lookback, so a signal
that merely comes with visiting more often does not pass for buying intent.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from scorer.errors import InvalidInputError
from scorer.events import decode_event
from scorer.lifecycle.crm import WON, Opportunity
from scorer.lifecycle.derive import DAY, DEFAULT_OPTIONS, DeriveOptions, kept
from scorer.lifecycle.evidence import Evidence

PAGE_VIEW = "page_view"


@dataclass(frozen=True, slots=True)
class Signal:
    type: str
    path: str | None
    evidence: Evidence
    points: int = 0

    @property
    def label(self) -> str:
        return f"{self.type} {self.path}" if self.path else self.type

    def rule(self) -> dict[str, object]:
        """The signal as it goes into the ICP's `intent.signals`."""
        out: dict[str, object] = {"type": self.type}
        if self.path:
            out["path"] = self.path
        out["points"] = self.points
        return out


def deal_times(opportunities: Sequence[Opportunity]) -> dict[str, float]:
    """Per account, when its first deal (won, if it won one) was created."""
    first: dict[str, float] = {}
    won: dict[str, float] = {}
    for o in opportunities:
        if o.created_at is None:
            continue
        target = won if o.outcome == WON else first
        if o.domain not in target or o.created_at < target[o.domain]:
            target[o.domain] = o.created_at
    return {**first, **won}


def derive_signals(
    events: Iterable[bytes],
    opportunities: Sequence[Opportunity],
    population: Iterable[str],
    won: Iterable[str],
    options: DeriveOptions = DEFAULT_OPTIONS,
    lookback: float = 30 * DAY,
    top_points: int = 40,
) -> list[Signal]:
    """The signals worth points, strongest first (see the module's docstring)."""
    deals = deal_times(opportunities)
    accounts = set(population)
    shown: dict[str, set[tuple[str, str | None]]] = defaultdict(set)
    for raw in events:
        try:
            event = decode_event(raw)
        except InvalidInputError:
            continue
        account = event.account
        if account is None or account not in accounts:
            continue
        deal = deals.get(account)
        if deal is not None and not deal - lookback <= event.at <= deal:
            continue
        keys = shown[account]
        keys.add((event.type, None))
        if event.type == PAGE_VIEW and event.path:
            keys.add((event.type, event.path))
    wins = set(won) & accounts
    support: Counter[tuple[str, str | None]] = Counter()
    winners: Counter[tuple[str, str | None]] = Counter()
    for account, keys in shown.items():
        support.update(keys)
        if account in wins:
            winners.update(keys)
    chosen = []
    for key in sorted(support, key=lambda k: (k[0], k[1] or "")):
        evidence = Evidence(support[key], winners[key], len(accounts), len(wins))
        if kept(evidence, options):
            chosen.append(Signal(key[0], key[1], evidence))
    if not chosen:
        return []
    strongest = max(math.log2(s.evidence.lift) for s in chosen)
    scaled = [
        Signal(
            s.type,
            s.path,
            s.evidence,
            max(1, round(top_points * math.log2(s.evidence.lift) / strongest)),
        )
        for s in chosen
    ]
    return sorted(scaled, key=lambda s: (-s.points, s.label))
