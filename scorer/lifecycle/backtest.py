"""`scorer icp backtest`: replay an event history through the engine, judge the alerts (pure).

The replay takes each event the way `scorer score` and the stream do
(`scorer.scoring.intake`: decode, resolve, `Engine.apply` with one
`AccountState` per account) for every ICP, with an engine of its own for
each version of an ICP id so that two versions can be compared side by side. A
test holds the replay's alerts equal to `scorer score`'s on the same input.

Besides the alerts, the replay keeps, per account, the first time its score
reached each hot threshold of a sweep (with the ICP's `min_fit`, never when
disqualified or excluded): that is exactly when the first alert would have
fired at that threshold (rule 10 alerts on the first hot score), so
precision and recall across thresholds come from one pass.

Judging, per ICP:
- precision: alerted accounts that opened an opportunity, or closed one won,
  within the horizon after their first alert;
- recall: won accounts of the history alerted no later than their close;
- per tier (the best tier an account's total reached): accounts, won, win rate, lift
  over the history's base win rate;
- median days from first alert to that opportunity; alerts per week.
"""

from __future__ import annotations

import multiprocessing
import statistics
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scorer.errors import InvalidInputError
from scorer.icp.compiled import CompiledICP
from scorer.icp.document import ICPDocument
from scorer.lifecycle.crm import WON, Opportunity
from scorer.scoring.engine import SCORED, UNRESOLVED, Engine, Score
from scorer.scoring.erasure import ERASED, SUPPRESSED, ErasureRequest, ReplayErasures
from scorer.scoring.intake import (
    PLACED_ELSEWHERE,
    AccountStates,
    CompanyMap,
    Placement,
    apply_event,
    take_event,
)
from scorer.scoring.state import DEFAULT_DEDUP_WINDOW

DAY = 86400.0
WEEK = 7 * DAY
THRESHOLDS = tuple(range(30, 100, 5))
NO_TIER = "none"


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert the replay emitted (what `scorer score` would have written)."""

    icp: str
    domain: str
    event_id: str
    at: float
    tier: str | None
    total: float
    line: int  # in the history file: alerts of a split replay merge back in file order


@dataclass
class Replay:
    """What one ICP did over the history."""

    label: str
    icp: ICPDocument
    thresholds: tuple[float, ...]
    alerts: list[Alert] = field(default_factory=list)
    best_tier: dict[str, str] = field(default_factory=dict)
    crossings: dict[str, list[float]] = field(default_factory=dict)  # first time >= threshold i
    peak: dict[str, float] = field(default_factory=dict)

    def first_alerts(self) -> dict[str, float]:
        first: dict[str, float] = {}
        for alert in self.alerts:
            if alert.domain not in first or alert.at < first[alert.domain]:
                first[alert.domain] = alert.at
        return first


@dataclass
class History:
    """The replayed input: every resolved account and the time span."""

    accounts: set[str] = field(default_factory=set)
    lines: int = 0
    invalid: int = 0
    unresolved: int = 0
    start: float | None = None
    end: float | None = None


def replay(
    lines: Iterable[bytes],
    icps: Sequence[tuple[str, ICPDocument]],
    companies: Mapping[str, Mapping[str, Any]],
    dedup_window: float = DEFAULT_DEDUP_WINDOW,
    thresholds: Sequence[float] = THRESHOLDS,
    progress: Callable[[int, int], None] | None = None,
    share: tuple[int, int] = (0, 1),
    erasures: Sequence[ErasureRequest] = (),
    salt: bytes | None = None,
) -> tuple[History, list[Replay]]:
    """Every event of a JSON-lines history through each labelled ICP, in file order.

    `share` = (k, n): only the accounts whose hash is k modulo n (one process's
    part of a split replay; accounts are independent). Share 0 counts the
    lines, invalid and unresolved events. `erasures`: requests applied in
    event-time order (`scorer.scoring.erasure.ReplayErasures`; `salt` for
    suppressions); an event they drop reaches no ICP.
    """
    k, n = share
    history = History()
    cuts = tuple(sorted(float(t) for t in thresholds))
    runs = [Replay(label, icp, cuts) for label, icp in icps]
    # ICPs share an engine (one decode, one dedup check per event) unless they
    # share an id: two versions of one id need engines of their own.
    groups: list[list[int]] = []
    for index, (_, icp) in enumerate(icps):
        group = next((g for g in groups if all(icps[i][1].id != icp.id for i in g)), None)
        if group is None:
            groups.append([index])
        else:
            group.append(index)
    engines = [Engine([icps[i][1] for i in group], dedup_window) for group in groups]
    if not engines:
        engines, groups = [Engine((), dedup_window)], [[]]
    tables = [AccountStates() for _ in groups]
    erasing = ReplayErasures(erasures, [t.states for t in tables], salt) if erasures else None
    source = CompanyMap(companies)
    placement = ShareOf(k, n) if n > 1 else None
    lanes = [
        tuple((runs[i], c) for i, c in zip(group, engine.icps, strict=True))
        for group, engine in zip(groups, engines, strict=True)
    ]
    first, others = engines[0], list(zip(engines[1:], tables[1:], strict=True))
    accounts = history.accounts
    number = 0
    for number, raw in enumerate(lines, start=1):
        if progress is not None and not number & 65535:
            progress(number, sum(len(run.alerts) for run in runs))
        if not raw.strip():
            continue
        try:
            outcome, event, scores = take_event(
                first, raw, tables[0], source, placement=placement, erasures=erasing
            )
        except InvalidInputError:
            history.invalid += k == 0
            continue
        if outcome == UNRESOLVED:
            history.unresolved += k == 0
            continue
        if outcome in (PLACED_ELSEWHERE, ERASED, SUPPRESSED):  # elsewhere, or dropped
            continue
        account = event.account
        assert account is not None
        accounts.add(account)
        at = event.at
        if history.start is None or at < history.start:
            history.start = at
        if history.end is None or at > history.end:
            history.end = at
        results = [(outcome, scores)]
        results += [apply_event(e, event, account, table, source) for e, table in others]
        for (outcome, scores), lane in zip(results, lanes, strict=True):
            if outcome != SCORED:
                continue
            for (run, compiled), score in zip(lane, scores, strict=True):
                _observe(run, compiled, score, account, at, cuts, number)
    history.lines = number
    if erasing is not None:
        erasing.finish()
    return history, runs


class ShareOf(Placement):
    """A split replay's placement: process k of n takes the accounts whose
    CRC-32 is k modulo n (accounts are independent)."""

    def __init__(self, k: int, n: int) -> None:
        self.k, self.n = k, n

    def belongs(self, domain: str) -> bool:
        return zlib.crc32(domain.encode()) % self.n == self.k


# What a forked replay process reads: set just before the fork, inherited
# copy-on-write (the companies are not pickled to each process).
_SPLIT: dict[str, Any] = {}


def _replay_share(k: int) -> tuple[History, list[Replay]]:
    job = _SPLIT
    with open(job["path"], "rb") as lines:
        return replay(
            lines,
            job["icps"],
            job["companies"],
            job["dedup_window"],
            job["thresholds"],
            job["progress"] if k == 0 else None,
            (k, job["jobs"]),
            job["erasures"],
            job["salt"],
        )


def replay_file(
    path: str | Path,
    icps: Sequence[tuple[str, ICPDocument]],
    companies: Mapping[str, Mapping[str, Any]],
    dedup_window: float = DEFAULT_DEDUP_WINDOW,
    thresholds: Sequence[float] = THRESHOLDS,
    progress: Callable[[int, int], None] | None = None,
    jobs: int = 1,
    erasures: Sequence[ErasureRequest] = (),
    salt: bytes | None = None,
) -> tuple[History, list[Replay]]:
    """`replay` of a file, split by account over `jobs` forked processes (accounts are
    independent, so the result is the same as one pass: alerts in file order)."""
    if jobs <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        with open(path, "rb") as lines:
            return replay(
                lines, icps, companies, dedup_window, thresholds, progress,
                erasures=erasures, salt=salt,
            )  # fmt: skip
    _SPLIT.update(
        path=str(path), icps=list(icps), companies=companies, dedup_window=dedup_window,
        thresholds=thresholds, progress=progress, jobs=jobs, erasures=list(erasures), salt=salt,
    )  # fmt: skip
    try:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(jobs, mp_context=context) as pool:
            parts = list(pool.map(_replay_share, range(jobs)))
    finally:
        _SPLIT.clear()
    history, runs = parts[0]
    for other, other_runs in parts[1:]:
        history.accounts |= other.accounts
        starts = [t for t in (history.start, other.start) if t is not None]
        ends = [t for t in (history.end, other.end) if t is not None]
        history.start = min(starts) if starts else None
        history.end = max(ends) if ends else None
        for run, part in zip(runs, other_runs, strict=True):
            run.alerts.extend(part.alerts)
            run.best_tier.update(part.best_tier)
            run.crossings.update(part.crossings)
            run.peak.update(part.peak)
    for run in runs:
        run.alerts.sort(key=lambda alert: alert.line)
    return history, runs


def _observe(
    run: Replay,
    icp: CompiledICP,
    score: Score,
    account: str,
    at: float,
    cuts: tuple[float, ...],
    line: int,
) -> None:
    """Record one score: its alert, the account's best tier, thresholds first reached."""
    if score.alert:
        run.alerts.append(
            Alert(run.label, account, score.event.event_id, at, score.tier, score.total, line)
        )
    tier = score.tier  # rule 8: from the total alone (None when disqualified)
    if tier is not None:
        best = run.best_tier.get(account)
        if best is None or icp.tier_rank[tier] > icp.tier_rank[best]:
            run.best_tier[account] = tier
    if score.disqualified or score.excluded or score.fit < icp.min_fit:
        return
    total = score.total
    if total > run.peak.get(account, -1.0):
        run.peak[account] = total
        crossed = run.crossings.setdefault(account, [])
        while len(crossed) < len(cuts) and cuts[len(crossed)] <= total:
            crossed.append(at)


def _converted(opportunities: list[Opportunity], since: float, horizon: float) -> float | None:
    """The earliest opportunity opened, or deal won, within the horizon after `since`."""
    times = []
    for o in opportunities:
        if o.created_at is not None and since <= o.created_at <= since + horizon:
            times.append(o.created_at)
        if o.outcome == WON and o.closed_at is not None and since <= o.closed_at <= since + horizon:
            times.append(o.closed_at)
    return min(times) if times else None


def _won_by(opportunities: list[Opportunity]) -> float | None:
    """When an account was first won (inf when won at an unknown time), else None."""
    closes = [o.closed_at or float("inf") for o in opportunities if o.outcome == WON]
    return min(closes) if closes else None


def _judge(
    first: Mapping[str, float],
    by_account: Mapping[str, list[Opportunity]],
    won: Mapping[str, float],
    horizon: float,
) -> dict[str, Any]:
    delays = []
    for domain, at in first.items():
        hit = _converted(by_account.get(domain, []), at, horizon)
        if hit is not None:
            delays.append((hit - at) / DAY)
    caught = sum(1 for domain, closed in won.items() if first.get(domain, closed + 1) <= closed)
    return {
        "accounts_alerted": len(first),
        "converted": len(delays),
        "precision": len(delays) / len(first) if first else 0.0,
        "won_alerted": caught,
        "recall": caught / len(won) if won else 0.0,
        "median_days_to_opportunity": statistics.median(delays) if delays else None,
    }


def evaluate(
    history: History,
    run: Replay,
    opportunities: Iterable[Opportunity],
    horizon: float = 90 * DAY,
) -> dict[str, Any]:
    """The numbers of one ICP's replay against the CRM outcomes (JSON-ready)."""
    by_account: dict[str, list[Opportunity]] = defaultdict(list)
    for o in opportunities:
        if o.domain in history.accounts:
            by_account[o.domain].append(o)
    won = {d: t for d, opps in by_account.items() if (t := _won_by(opps)) is not None}
    population = len(history.accounts)
    base_rate = len(won) / population if population else 0.0
    summary = _judge(run.first_alerts(), by_account, won, horizon)
    tiers = []
    members: Counter[str] = Counter(run.best_tier.get(d, NO_TIER) for d in history.accounts)
    wins: Counter[str] = Counter(run.best_tier.get(d, NO_TIER) for d in won)
    order = [*sorted(run.icp.tiers, key=lambda name: -run.icp.tiers[name]), NO_TIER]
    for name in order:
        rate = wins[name] / members[name] if members[name] else 0.0
        tiers.append(
            {
                "tier": name,
                "accounts": members[name],
                "won": wins[name],
                "win_rate": rate,
                "lift": rate / base_rate if base_rate else 0.0,
            }
        )
    sweep = []
    for index, threshold in enumerate(run.thresholds):
        first = {d: c[index] for d, c in run.crossings.items() if len(c) > index}
        sweep.append({"min_total": threshold, **_judge(first, by_account, won, horizon)})
    span_weeks = max(((history.end or 0.0) - (history.start or 0.0)) / WEEK, 1 / 7)
    weekly: Counter[int] = Counter(int((a.at - (history.start or 0.0)) // WEEK) for a in run.alerts)
    weeks = int(span_weeks) + 1
    return {
        "label": run.label,
        "icp": {"id": run.icp.id, "version": run.icp.version},
        "alerts": len(run.alerts),
        **summary,
        "horizon_days": horizon / DAY,
        "accounts": population,
        "won_accounts": len(won),
        "base_win_rate": base_rate,
        "alerts_per_week": len(run.alerts) / span_weeks,
        "tiers": tiers,
        "threshold_sweep": sweep,
        "weekly_alerts": [weekly[w] for w in range(weeks)],
        "min_total": run.icp.hot.min_total,
    }


def backtest(
    lines: Iterable[bytes] | str | Path,
    icps: Sequence[tuple[str, ICPDocument]],
    companies: Mapping[str, Mapping[str, Any]],
    opportunities: Sequence[Opportunity],
    horizon: float = 90 * DAY,
    dedup_window: float = DEFAULT_DEDUP_WINDOW,
    progress: Callable[[int, int], None] | None = None,
    jobs: int = 1,
    erasures: Sequence[ErasureRequest] = (),
    salt: bytes | None = None,
) -> dict[str, Any]:
    """Replay and judge: the JSON document `--json` writes. `lines` is an iterable of
    lines, or a file path (then replayed by `jobs` processes, split by account).
    `erasures`: requests applied in event-time order (see `replay`)."""
    if isinstance(lines, str | Path):
        history, runs = replay_file(
            lines, icps, companies, dedup_window, progress=progress, jobs=jobs,
            erasures=erasures, salt=salt,
        )  # fmt: skip
    else:
        history, runs = replay(
            lines, icps, companies, dedup_window, progress=progress, erasures=erasures, salt=salt
        )
    return {
        "events": {
            "lines": history.lines,
            "invalid": history.invalid,
            "unresolved": history.unresolved,
            "accounts": len(history.accounts),
            "start": history.start,
            "end": history.end,
        },
        "icps": [evaluate(history, run, opportunities, horizon) for run in runs],
    }


def alerts_since(
    lines: Iterable[bytes],
    icp: ICPDocument,
    companies: Mapping[str, Mapping[str, Any]],
    opportunities: Sequence[Opportunity],
    since: float,
    horizon: float = 90 * DAY,
) -> dict[str, Any]:
    """How an ICP's alerts since `since` (its last version, say) fared: the whole
    history is replayed (intent needs what came before), the alerts from `since` on
    are judged against the outcomes."""
    history, (run,) = replay(lines, [("active", icp)], companies)
    run.alerts = [alert for alert in run.alerts if alert.at >= since]
    judged = evaluate(history, run, opportunities, horizon)
    keys = ("alerts", "accounts_alerted", "precision", "median_days_to_opportunity")
    return {"since": since, **{key: judged.get(key) for key in keys}}
