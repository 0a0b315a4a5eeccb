"""`scorer score`: a JSON-lines event file through the engine, in file order.

It streams: lines are read, scored and written one at a time, so the file
size does not matter; only per-account state stays in memory.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from scorer.errors import InvalidInputError
from scorer.events import MAX_EVENT_BYTES
from scorer.scoring.engine import INVALID, SCORED, Engine
from scorer.scoring.intake import AccountStates, CompanyMap, take_event
from scorer.scoring.output import ACCOUNT_SCORE, HOT_ACCOUNT, build_document
from scorer.scoring.state import SWEEPS_PER_IDLE

EMIT_ALERTS = "alerts"
EMIT_SCORES = "scores"


class StrictStop(Exception):
    """`--strict` met a bad line."""


@dataclass
class Totals:
    """What a run did, by outcome; printed on stderr at the end."""

    outcomes: Counter[str] = field(default_factory=Counter)
    alerts: int = 0
    shadow_alerts: int = 0  # would-be alerts of shadow ICPs, written marked "shadow"
    suppressed: int = 0
    lines: int = 0


class Progress:
    """A `\\r`-rewritten progress line on stderr, only when it is a terminal."""

    def __init__(self, stream: IO[str], enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.started = time.monotonic()
        self.last = self.started

    def tick(self, totals: Totals, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.last < 0.5 and not force):
            return
        self.last = now
        rate = totals.lines / max(now - self.started, 1e-9)
        self.stream.write(
            f"\r{totals.lines:,} events  {rate:,.0f}/s  {totals.alerts:,} alerts  "
            f"{totals.outcomes[INVALID]:,} bad lines"
        )
        self.stream.flush()

    def done(self, totals: Totals) -> None:
        if self.enabled:
            self.tick(totals, force=True)
            self.stream.write("\n")


def score_lines(
    lines: Iterable[bytes],
    engine: Engine,
    companies: Mapping[str, Mapping[str, Any]],
    out: IO[bytes],
    emit: str = EMIT_ALERTS,
    strict: bool = False,
    errors: IO[str] = sys.stderr,
    progress: Progress | None = None,
    clock: Any = time.time,
    totals: Totals | None = None,
    accounts: AccountStates | None = None,
    erasures: Any = None,
) -> Totals:
    """Score every line; write one document per emitted score to `out`. `accounts`:
    the account states to carry on from (a fresh table by default). `erasures`:
    the erasure requests to apply (`scorer.scoring.erasure.ReplayErasures`, made
    on `accounts`), or None."""
    if engine is None:  # compiled, None would not fail by itself
        raise TypeError("score_lines needs an engine")
    accounts = accounts if accounts is not None else AccountStates()
    table = CompanyMap(companies)
    # Account expiry's housekeeping, as the stream does it: accounts idle past the TTL
    # (and the dedup window, for late events) behind the newest event leave memory,
    # each time event time has moved on by 1/SWEEPS_PER_IDLE of that.
    idle = engine.account_ttl + engine.dedup_window
    step = idle / SWEEPS_PER_IDLE
    newest = swept = -1e300
    totals = totals if totals is not None else Totals()
    outcomes = totals.outcomes
    kind = HOT_ACCOUNT if emit == EMIT_ALERTS else ACCOUNT_SCORE
    every = emit == EMIT_SCORES  # else only hot scores are built: alerts and suppressed
    write = out.write
    dumps = orjson.dumps
    # Lines and scored events are counted in locals and handed to `totals` at each
    # progress line and at the end: a Counter's `+= 1` and an attribute write per
    # line cost about 2,000 instructions an event in the compiled core (callgrind).
    number = scored = 0
    try:
        for raw in lines:
            number += 1
            if progress is not None and not number & 4095:
                totals.lines = number
                progress.tick(totals)
            if not raw:
                continue
            try:
                # By position: with keywords the compiled core called take_event through
                # its Python wrapper, not at C level (~350 instructions an event).
                outcome, event, scores = take_event(
                    engine, raw, accounts, table, every, MAX_EVENT_BYTES, None, erasures
                )
            except InvalidInputError as exc:
                # A blank line is skipped, not bad: asked only of lines that fail to
                # decode (the method call cost ~220 instructions a line, callgrind).
                if raw.isspace():
                    continue
                outcomes[INVALID] += 1
                errors.write(f"line {number}: {exc}\n")
                if strict:
                    raise StrictStop(f"line {number}: {exc}") from None
                continue
            if outcome != SCORED:
                outcomes[outcome] += 1
                continue
            scored += 1
            if event.at > newest:
                newest = event.at
                if newest - swept >= step:
                    accounts.expire(newest - idle)
                    swept = newest
            for score in scores:
                if score.alert and score.icp.shadow:
                    totals.shadow_alerts += 1
                elif score.alert:
                    totals.alerts += 1
                elif score.hot:
                    totals.suppressed += 1
                if score.alert or emit == EMIT_SCORES:
                    write(dumps(build_document(score, kind, clock())) + b"\n")
    finally:
        totals.lines = number
        if scored:
            outcomes[SCORED] += scored
    return totals
