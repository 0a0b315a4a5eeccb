"""The scoring engine: one event, one account state, every active ICP.

The same `Engine.apply` serves `scorer score` and the stream workers. It takes
the account's state and the company record, updates the state (in place, and
returns it with the results so callers can store it) and gives one `Score` per
active ICP. The engine's only memory besides the ICPs is the memo of signal
points; each account's state carries its company's event-independent fit
(`AccountState.fits`), computed again when the record or the ICPs change.

`apply` is the inner loop of every worker: the arithmetic of rules 2 to 9 is
written out in it rather than spread over small functions, each step marked
with its rule; tests/unit/test_rules.py checks every rule's numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from scorer.enrichment.firmographics import LazyCompany
from scorer.events import LEAD_CREATED, Event
from scorer.icp.compiled import CompanyFit, CompiledICP, CriterionResult, compile_icp
from scorer.icp.document import ICPDocument
from scorer.scoring.decision import should_alert
from scorer.scoring.state import (
    DEFAULT_ACCOUNT_TTL,
    DEFAULT_DEDUP_WINDOW,
    AccountState,
    IcpState,
    lead_key,
)

SCORED = "scored"
DUPLICATE = "duplicate"
EXPIRED = "expired"
UNRESOLVED = "unresolved"
INVALID = "invalid"

Company = Mapping[str, Any]
POINTS_MEMO_LIMIT = 100_000


class Score:
    """One event scored against one ICP, with what the alert rule decided.

    A plain slotted class, not a dataclass: `engine.pxd` declares it as an
    extension type (see `scorer.events.Event`), built at C level on the inner
    loop (a dataclass's Python `__init__` cost ~1,500 instructions a hot score)."""

    __slots__ = (
        "account",
        "alert",
        "company",
        "disqualified",
        "event",
        "excluded",
        "fit",
        "hot",
        "icp",
        "intent",
        "persona",
        "points",
        "quality",
        "tier",
        "total",
    )

    def __init__(
        self,
        icp: CompiledICP,
        account: str,
        event: Event,
        company: Company | None,
        fit: float,
        intent: float,
        total: float,
        quality: float,
        tier: str | None,
        hot: bool,
        disqualified: bool,
        excluded: bool,
        alert: bool,
        points: float,
        persona: str | None,
    ) -> None:
        self.icp = icp
        self.account = account
        self.event = event
        self.company = company
        self.fit = fit
        self.intent = intent
        self.total = total
        self.quality = quality
        self.tier = tier
        self.hot = hot
        self.disqualified = disqualified
        self.excluded = excluded
        self.alert = alert
        self.points = points
        self.persona = persona

    def __repr__(self) -> str:
        return (
            f"Score(icp={self.icp.id!r}, account={self.account!r}, total={self.total!r}, "
            f"fit={self.fit!r}, intent={self.intent!r}, tier={self.tier!r}, hot={self.hot!r}, "
            f"alert={self.alert!r})"
        )

    @property
    def suppressed(self) -> bool:
        return self.hot and not self.alert

    def explain(self) -> list[CriterionResult]:
        """Each fit criterion with its value, match and source, at the event's time."""
        return self.icp.explain(self.company, self.event.at)


class Engine:
    """Active ICPs plus the memo of their signal points."""

    def __init__(
        self,
        icps: Iterable[ICPDocument | CompiledICP] = (),
        dedup_window: float = DEFAULT_DEDUP_WINDOW,
        account_ttl: float | None = None,
    ) -> None:
        if account_ttl is None:  # the default, or the dedup window when that is longer
            account_ttl = max(DEFAULT_ACCOUNT_TTL, dedup_window)
        if account_ttl < dedup_window:
            raise ValueError("the account TTL must not be shorter than the dedup window")
        self.dedup_window = dedup_window
        self.account_ttl = account_ttl
        self._icps: dict[str, CompiledICP] = {}
        self._active: tuple[CompiledICP, ...] = ()
        # Event type -> URL path -> each active ICP's signal points (rule 5), in
        # `_active` order: a few page paths come again and again. Two levels, not a
        # (type, path) key: that tuple's making, hashing and freeing cost ~300
        # instructions an event (callgrind). `_memo_size` counts the entries.
        self._points: dict[str, dict[str | None, tuple[float, ...]]] = {}
        self._memo_size = 0
        for icp in icps:
            self.set_icp(icp)

    @property
    def icps(self) -> tuple[CompiledICP, ...]:
        return self._active

    def set_icp(self, icp: ICPDocument | CompiledICP) -> bool:
        """Activate an ICP; a lower or equal version never replaces a higher one."""
        compiled = icp if isinstance(icp, CompiledICP) else compile_icp(icp)
        current = self._icps.get(compiled.id)
        if current is not None and current.version >= compiled.version:
            return False
        self._icps[compiled.id] = compiled
        self._active = tuple(self._icps.values())
        self._clear_points()
        return True

    def remove_icp(self, icp_id: str) -> bool:
        removed = self._icps.pop(icp_id, None) is not None
        self._active = tuple(self._icps.values())
        self._clear_points()
        return removed

    def _clear_points(self) -> None:
        self._points = {}
        self._memo_size = 0

    def _signal_points(self, kind: str, path: str | None) -> tuple[float, ...]:
        if self._memo_size >= POINTS_MEMO_LIMIT:
            self._clear_points()
        by_path = self._points.get(kind)
        if by_path is None:
            by_path = self._points[kind] = {}
        points = by_path[path] = tuple(icp.event_points(kind, path) for icp in self._active)
        self._memo_size += 1
        return points

    def company_fits(self, company: Company | None) -> list[CompanyFit]:
        """A company's event-independent fit under each active ICP (None: no record)."""
        if type(company) is LazyCompany:
            company = company.doc()  # decoded once for every ICP's criteria
        return [icp.company_fit(company) for icp in self._active]

    def apply(
        self,
        state: AccountState,
        event: Event,
        company: Company | bytes | None,
        company_token: object = None,
        every: bool = True,
    ) -> tuple[str, list[Score]]:
        """Apply a resolved event to its account's state; (outcome, scores).

        `company_token`: what keeps the company's fit valid while unchanged (None:
        the record object itself); the company is only read when its fit is not
        kept or a score is built, so it may be decoded lazily, or given as its JSON
        bytes (the stream's table: most events then make no object for it).
        `every`: a `Score` per active ICP; False gives only the hot ones
        (alerts and suppressed), the state changing exactly the same: callers
        that publish alerts only skip building scores nobody reads."""
        if state is None or event is None:  # compiled, None would not fail by itself
            raise TypeError("Engine.apply needs an account state and an event")
        account = event.account
        assert account is not None, "unresolved events are counted, not applied"
        window = self.dedup_window
        at = event.at
        event_id = event.event_id
        # The account's dedup (see scorer.scoring.state), on the inner loop.
        # Expiry first: ids older than the horizon are then never consulted.
        # The clocks are C doubles, NaN while unset (see scorer.scoring.state).
        account_at = state._clock
        known = account_at == account_at
        if known:
            if at < account_at - window:
                return EXPIRED, []
            if at - account_at >= self.account_ttl:  # account expiry: idle past the TTL
                state.expire()
                known = False
        # last_event_id also covers a write of this record that landed
        # without the write of its id (see scorer.stream.account_codec).
        if event_id == state.last_event_id:
            return DUPLICATE, []
        if not known or at > account_at:
            account_at = at
        lead_id = event.lead_id
        link = None if lead_id is None else lead_key(lead_id)  # for erasure (scorer.scoring.state)
        # The id remembered if new, in one look-up of the account's ids: a replay
        # changes nothing.
        if not state.seen.add(event_id, at, account_at - window, link):
            return DUPLICATE, []
        state._clock = account_at
        state.last_event_id = event_id
        if link is not None:
            state.note_lead(link, event_id, at, account_at - window)

        active = self._active
        # The company's fit, kept on the state while it is valid: the record is the
        # same object or, when the caller gives a token (the stream gives the
        # record's bytes), the token is; and the ICPs are the same. (A cache keyed by
        # domain cost a lookup in a large dict per event, cold for most accounts.)
        mark = company if company_token is None else company_token
        entry = state.fits
        if entry is None or entry[0] is not mark or entry[1] is not active:
            if isinstance(company, bytes):  # decoded once, for the fit and this event's scores
                company = LazyCompany(company)
            entry = state.fits = (mark, active, self.company_fits(company))
        fits = entry[2]
        by_path = self._points.get(event.type)
        signal_points = None if by_path is None else by_path.get(event.path)
        if signal_points is None:
            signal_points = self._signal_points(event.type, event.path)
        scores = []
        is_lead = event.type == LEAD_CREATED
        icp_states = state.icps
        count = len(active)
        if len(fits) != count or len(signal_points) != count:
            raise RuntimeError("the kept fit or the points memo is out of step with the ICPs")
        # By index, not zip(..., strict=True): in the compiled core that call costs
        # about 3,300 instructions an event, a tenth of the loop (callgrind).
        for i in range(count):
            icp = active[i]
            company_fit = fits[i]
            points = signal_points[i]
            icp_state = icp_states.get(icp.id)
            if icp_state is None:
                icp_state = icp_states[icp.id] = IcpState()
            # Rule 5: event points (+ persona for leads).
            persona = None
            if is_lead:
                persona, persona_points = icp.persona(event.title)
                points += persona_points
            # Rule 6: decay in event time; late events decay to the clock.
            clock = icp_state._clock
            if clock != clock:  # NaN: the first event under this ICP
                raw, clock = points, at
            else:
                if at >= clock:
                    raw = icp_state.raw * 2.0 ** ((clock - at) / icp.half_life) + points
                    clock = at
                else:
                    raw = icp_state.raw + points * 2.0 ** ((at - clock) / icp.half_life)
            icp_state.raw = raw
            icp_state._clock = clock
            intent = raw if raw < 100.0 else 100.0
            # Rules 2, 3 (the timed criteria, at the event's time), 7, 8, 9.
            weight = company_fit.static_weight
            disqualified = company_fit.static_disqualified
            for stamp, timed_window, timed_weight, must_have in company_fit.timed:
                if stamp is not None:
                    stamp_at = stamp
                    if at - timed_window <= stamp_at <= at:
                        weight += timed_weight
                        continue
                if must_have:
                    disqualified = True
            if disqualified:
                fit = total = 0.0
                hot = False
            else:
                fit = 100.0 * weight / icp.total_weight
                total = (icp.w_fit * fit + icp.w_intent * intent) / (icp.w_fit + icp.w_intent)
                hot = total >= icp.min_total and fit >= icp.min_fit and account not in icp.excluded
            if not hot and not every:
                continue
            tier = None if disqualified else icp.tier(total)
            # Rule 10.
            alert = hot and should_alert(icp, tier, clock, icp_state.alert_at, icp_state.alert_tier)
            if alert:
                icp_state._alert_at = clock
                icp_state.alert_tier = tier
            if isinstance(company, bytes):  # a score reads it as a mapping (its name, reasons)
                company = LazyCompany(company)
            scores.append(
                Score(
                    icp,
                    account,
                    event,
                    company,
                    fit,
                    intent,
                    total,
                    company_fit.quality,
                    tier,
                    hot,
                    disqualified,
                    account in icp.excluded,
                    alert,
                    points,
                    persona,
                )
            )
        return SCORED, scores
