"""One test per numbered rule of PRODUCT.md "Scoring semantics", hand-computed."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from scorer.icp import compile_icp
from scorer.scoring import DUPLICATE, EXPIRED, SCORED, AccountState, Engine, build_document
from scorer.scoring.state import SWEEP_FLOOR
from tests.conftest import make_event, make_icp

ACME = {
    "domain": "acme.example",
    "name": "Acme",
    "industry": "Software",
    "employees": 200,
    "country": "DE",
    "funding": {"last_round_at": "2026-06-01"},
    "sources": {"industry": {"source": "crm", "confidence": 0.9}, "employees": {"confidence": 0.5}},
}


def score_one(company, icp=None, event=None, state=None):
    engine = Engine([icp or make_icp()])
    outcome, scores = engine.apply(state or AccountState(), event or make_event(), company)
    assert outcome == SCORED
    return scores[0]


def test_rule1_dotted_lookup_and_unknown_fields() -> None:
    """Rule 1: dotted paths reach nested fields; missing or null fields are unknown."""
    icp = make_icp(
        fit=[
            {"field": "funding.last_round_at", "exists": True},
            {"field": "industry", "eq": "software"},
            {"field": "ceo.name", "eq": "x"},
        ]
    )
    score = score_one({**ACME, "industry": None}, icp)
    matched = [r.matched for r in score.explain()]
    assert matched == [True, None, None]


def test_rule1_exists_is_never_unknown_even_without_a_record() -> None:
    """Rule 1: `exists` is known (false) when the account has no company record at all."""
    icp = make_icp(fit=[{"field": "industry", "exists": True}, {"field": "name", "exists": False}])
    score = score_one(None, icp)
    assert [r.matched for r in score.explain()] == [False, True]
    assert score.fit == pytest.approx(50.0)
    assert score.quality == pytest.approx(1.0)


def test_rule2_fit_is_weighted_share_of_matches() -> None:
    """Rule 2: fit = 100 x 5/6 when industry (3) and employees (2) match, country (1) does not."""
    assert score_one(ACME).fit == pytest.approx(100 * 5 / 6)


def test_rule2_unknown_counts_zero() -> None:
    """Rule 2: an unknown employees count earns nothing: fit = 100 x 3/6."""
    company = {k: v for k, v in ACME.items() if k != "employees"}
    assert score_one(company).fit == pytest.approx(50.0)


def test_rule3_known_failed_must_have_disqualifies() -> None:
    """Rule 3: industry known and not in the list: fit 0, total 0, no tier, never hot."""
    icp = make_icp(hot={"min_total": 0, "min_fit": 0})
    score = score_one({**ACME, "industry": "retail"}, icp, make_event(type="demo_request"))
    assert (score.fit, score.total, score.tier, score.hot, score.disqualified) == (
        0.0,
        0.0,
        None,
        False,
        True,
    )
    assert score.intent == pytest.approx(40.0)  # intent still accrues


def test_rule3_unknown_must_have_does_not_disqualify() -> None:
    """Rule 3: an unknown must-have field leaves the account qualified."""
    company = {k: v for k, v in ACME.items() if k != "industry"}
    score = score_one(company)
    assert not score.disqualified
    assert score.fit == pytest.approx(100 * 2 / 6)


def test_rule4_data_quality_weights_known_confidences() -> None:
    """Rule 4: (3 x 0.9 + 2 x 0.5 + 1 x 1.0) / 6 with every field known."""
    assert score_one(ACME).quality == pytest.approx((2.7 + 1.0 + 1.0) / 6)


def test_rule4_unknown_fields_lower_data_quality() -> None:
    """Rule 4: an unknown country drops out of the numerator only."""
    company = {k: v for k, v in ACME.items() if k != "country"}
    assert score_one(company).quality == pytest.approx(3.7 / 6)


def test_rule5_highest_matching_signal_and_path_glob() -> None:
    """Rule 5: /pricing/teams matches the 10-point glob over the plain 2-point view."""
    icp = compile_icp(make_icp())
    assert icp.event_points("page_view", "/pricing/teams") == 10
    assert icp.event_points("page_view", "/PRICING") == 10
    assert icp.event_points("page_view", "/blog") == 2
    assert icp.event_points("page_view", None) == 2
    assert icp.event_points("webinar", "/pricing") == 0


def test_rule5_path_comes_from_the_page_url() -> None:
    """Rule 5: the glob is matched against the URL's path, not its query."""
    event = make_event(page_url="https://x.example/pricing?plan=pro")
    assert score_one(ACME, event=event).points == 10


def test_rule5_lead_adds_highest_persona() -> None:
    """Rule 5: lead_created (20) plus the executive persona (15) for a 'VP Sales' title."""
    event = make_event(type="lead_created", title="VP Sales")
    score = score_one(ACME, event=event)
    assert (score.points, score.persona) == (35, "executive")
    doc = build_document(score, "hot_account", 0.0)
    assert doc["lead"] == {"lead_id": "L-1", "title": "VP Sales", "persona": "executive"}
    assert "email" not in str(doc) and "pat@" not in str(doc)


def test_rule6_intent_decays_by_half_life_in_event_time() -> None:
    """Rule 6: 40 points, then 10 points one half-life (7 d) later: 40/2 + 10 = 30."""
    engine, state = Engine([make_icp()]), AccountState()
    engine.apply(state, make_event("a", "demo_request", "2026-11-01T00:00:00Z"), ACME)
    _, scores = engine.apply(
        state, make_event("b", occurred_at="2026-11-08T00:00:00Z", page_url="/pricing"), ACME
    )
    assert scores[0].intent == pytest.approx(30.0)


def test_rule6_late_event_adds_decayed_points_and_keeps_clock() -> None:
    """Rule 6: a demo request 7 d before the clock adds 40 x 1/2 and leaves T alone."""
    engine, state = Engine([make_icp()]), AccountState()
    engine.apply(state, make_event("a", "page_view", "2026-11-08T00:00:00Z"), ACME)
    _, scores = engine.apply(state, make_event("b", "demo_request", "2026-11-01T00:00:00Z"), ACME)
    assert scores[0].intent == pytest.approx(2 + 20)
    assert state.icps["saas"].clock == make_event(occurred_at="2026-11-08T00:00:00Z").at


def test_rule6_intent_is_capped_at_100() -> None:
    """Rule 6: three demo requests at once give raw 120 but intent 100."""
    engine, state = Engine([make_icp()]), AccountState()
    for event_id in "abc":
        _, scores = engine.apply(state, make_event(event_id, "demo_request"), ACME)
    assert state.icps["saas"].raw == pytest.approx(120.0)
    assert scores[0].intent == 100.0


def test_rule7_total_is_weighted_mean() -> None:
    """Rule 7: (0.6 x 83.33 + 0.4 x 40) / 1.0 for fit 5/6 and one demo request."""
    score = score_one(ACME, event=make_event(type="demo_request"))
    assert score.total == pytest.approx(0.6 * 100 * 5 / 6 + 0.4 * 40)


def test_rule8_tier_is_highest_threshold_reached() -> None:
    """Rule 8: 66 is tier B (65), 49.99 has no tier, 80 is A."""
    icp = compile_icp(make_icp())
    assert (icp.tier(66), icp.tier(49.99), icp.tier(80), icp.tier(100)) == ("B", None, "A", "A")


def test_rule9_hot_needs_total_and_fit_and_not_excluded() -> None:
    """Rule 9: fit 83.33 + demo (total 66) is hot; excluded or low fit is not."""
    demo = make_event(type="demo_request")
    assert score_one(ACME, event=demo).hot
    excluded = make_icp(exclude={"domains": ["WWW.Acme.Example."]})
    score = score_one(ACME, excluded, demo)
    assert score.excluded and not score.hot and score.tier == "B"
    strict_fit = make_icp(hot={"min_total": 65, "min_fit": 90})
    assert not score_one(ACME, strict_fit, demo).hot


def test_rule10_alert_then_cooldown_then_tier_upgrade() -> None:
    """Rule 10: first hot score alerts; same tier within 24h is suppressed; a better tier alerts."""
    engine, state = Engine([make_icp()]), AccountState()
    first = engine.apply(state, make_event("a", "demo_request", "2026-11-20T10:00:00Z"), ACME)[1][0]
    again = engine.apply(state, make_event("b", "page_view", "2026-11-20T11:00:00Z"), ACME)[1][0]
    assert (first.alert, first.tier) == (True, "B")
    assert (again.hot, again.alert, again.suppressed) == (True, False, True)
    upgrade = engine.apply(state, make_event("c", "demo_request", "2026-11-20T12:00:00Z"), ACME)
    assert (upgrade[1][0].tier, upgrade[1][0].alert) == ("A", True)
    assert state.icps["saas"].alert_tier == "A"


def test_rule10_cooldown_measured_on_account_clock() -> None:
    """Rule 10: exactly 24 h of event time after the last alert, the same tier alerts again."""
    engine, state = Engine([make_icp()]), AccountState()
    engine.apply(state, make_event("a", "demo_request", "2026-11-20T10:00:00Z"), ACME)
    before = engine.apply(state, make_event("b", "demo_request", "2026-11-21T09:59:59Z"), ACME)
    after = engine.apply(state, make_event("c", "demo_request", "2026-11-21T10:00:00Z"), ACME)
    assert before[1][0].tier == "A" and before[1][0].alert  # upgrade B -> A
    assert after[1][0].tier == "A" and not after[1][0].alert  # same tier, 1 s after the A alert
    later = engine.apply(state, make_event("d", "page_view", "2026-11-22T10:00:00Z"), ACME)
    assert later[1][0].alert


def test_rule11_replayed_event_changes_nothing() -> None:
    """Rule 11: applying the same event_id twice leaves state as it was and emits nothing."""
    engine, state = Engine([make_icp()]), AccountState()
    engine.apply(state, make_event("a", "demo_request"), ACME)
    before = state.to_json()
    outcome, scores = engine.apply(state, make_event("a", "demo_request"), ACME)
    assert (outcome, scores, state.to_json()) == (DUPLICATE, [], before)


def test_rule11_dedup_window_bounds_memory_and_expires_old_events() -> None:
    """Rule 11: ids older than the window are forgotten, and events that old are ignored."""
    engine, state = Engine([make_icp()], dedup_window=3600), AccountState()
    engine.apply(state, make_event("a", occurred_at="2026-11-20T10:00:00Z"), ACME)
    engine.apply(state, make_event("b", occurred_at="2026-11-20T12:00:00Z"), ACME)
    assert "b" in state.seen.ids
    # A thousand events a minute apart: at most twice the window's 61 ids are kept.
    other = AccountState()
    start = datetime(2026, 11, 20, tzinfo=UTC)
    for minute in range(1000):
        at = (start + timedelta(minutes=minute)).isoformat()
        assert engine.apply(other, make_event(f"m{minute}", occurred_at=at), ACME)[0] == SCORED
        assert len(other.seen.ids) <= max(SWEEP_FLOOR, 2 * 61)
    assert engine.apply(state, make_event("a", occurred_at="2026-11-20T10:00:00Z"), ACME) == (
        EXPIRED,
        [],
    )
    assert (
        engine.apply(state, make_event("z", occurred_at="2026-11-20T11:30:00Z"), ACME)[0] == SCORED
    )


def test_rule12_each_icp_keeps_its_own_state() -> None:
    """Rule 12: two ICPs score one event independently, with their own intent and alerts."""
    other = make_icp(
        id="other", intent={"half_life": "1d", "signals": [{"type": "page_view", "points": 7}]}
    )
    engine, state = Engine([make_icp(), other]), AccountState()
    _, scores = engine.apply(state, make_event(), ACME)
    assert [(s.icp.id, s.intent) for s in scores] == [("saas", 2.0), ("other", 7.0)]
    assert set(state.icps) == {"saas", "other"}


def test_rule12_no_record_scores_with_every_field_unknown() -> None:
    """Rule 12: an account without a company record is scored: fit 0, quality 0, intent counted."""
    score = score_one(None, event=make_event(type="demo_request"))
    assert (score.fit, score.quality, score.intent, score.disqualified) == (0.0, 0.0, 40.0, False)


def test_rule13_reported_scores_are_rounded_computation_is_not() -> None:
    """Rule 13: the document shows 2 decimals; the Score keeps full precision."""
    score = score_one(ACME)
    doc = build_document(score, "account_score", 0.0)
    assert doc["score"]["fit"] == 83.33
    assert not math.isclose(score.fit, 83.33, abs_tol=1e-9)


def test_within_days_is_relative_to_event_time() -> None:
    """`within_days`: a round 170 d old matches 365 d, not 100 d; a future one never matches."""
    icp365 = make_icp(fit=[{"field": "funding.last_round_at", "within_days": 365}])
    icp100 = make_icp(fit=[{"field": "funding.last_round_at", "within_days": 100}])
    event = make_event(occurred_at="2026-11-18T00:00:00Z")
    assert score_one(ACME, icp365, event).fit == 100.0
    assert score_one(ACME, icp100, event).fit == 0.0
    early = make_event(occurred_at="2026-05-01T00:00:00Z")
    assert score_one(ACME, icp365, early).fit == 0.0


@pytest.mark.parametrize(
    ("criterion", "value", "matched"),
    [
        ({"eq": "US"}, "us", True),
        ({"eq": 200}, 200, True),
        ({"in": ["a", "b"]}, "B", True),
        ({"not_in": ["a", "b"]}, "c", True),
        ({"not_in": ["a", "b"]}, "A", False),
        ({"gte": 100}, 100, True),
        ({"lte": 100}, 101, False),
        ({"gte": 100}, "250", True),
        ({"gte": 100}, "many", False),
        ({"between": [1, 5]}, 5, True),
        ({"contains_any": ["HubSpot", "x"]}, ["hubspot", "segment"], True),
        ({"contains_any": ["hubspot"]}, "HubSpot", True),
        ({"contains_all": ["a", "b"]}, ["B", "a", "c"], True),
        ({"contains_all": ["a", "b"]}, ["a"], False),
        ({"exists": True}, "x", True),
        ({"exists": False}, "x", False),
    ],
)
def test_operators(criterion: dict, value: object, matched: bool) -> None:
    """Each operator, case-insensitive on strings, scalars treated as one-item lists."""
    icp = make_icp(fit=[{"field": "f", **criterion}])
    score = score_one({"domain": "acme.example", "f": value}, icp)
    assert score.explain()[0].matched is matched


def test_icp_version_never_goes_backwards() -> None:
    """A lower or equal version never replaces a higher one."""
    engine = Engine([make_icp(version=3)])
    assert not engine.set_icp(make_icp(version=3))
    assert not engine.set_icp(make_icp(version=2))
    assert engine.set_icp(make_icp(version=4))
    assert engine.icps[0].version == 4


def test_company_change_invalidates_cached_fit() -> None:
    """A replaced company record is re-evaluated, not served from the fit cache."""
    engine, state = Engine([make_icp()]), AccountState()
    first = engine.apply(state, make_event("a"), ACME)[1][0]
    second = engine.apply(state, make_event("b"), {**ACME, "country": "US"})[1][0]
    assert (first.fit, second.fit) == (pytest.approx(500 / 6), 100.0)


def test_account_expiry_an_idle_account_starts_fresh() -> None:
    """Account expiry: an event at least the TTL after the account's clock finds it
    fresh: intent from that event alone, no cooldown, the old ids forgotten."""
    engine = Engine([make_icp()], dedup_window=86400.0, account_ttl=10 * 86400.0)
    state = AccountState()
    first = make_event("e-1", type="demo_request", occurred_at="2026-01-01T00:00:00Z")
    assert engine.apply(state, first, ACME)[0] == SCORED
    kept = make_event("e-2", type="demo_request", occurred_at="2026-01-10T23:59:59Z")
    (score,) = engine.apply(state, kept, ACME)[1]
    assert score.intent > 40.0  # 9.99 days idle: the state is still there
    later = make_event("e-3", type="demo_request", occurred_at="2026-01-20T23:59:59Z")
    (fresh,) = engine.apply(state, later, ACME)[1]
    assert fresh.intent == 40.0 and fresh.points == 40.0  # exactly 10 days: expired
    assert set(state.icps) == {"saas"} and state.last_event_id == "e-3"
    assert not state.seen.contains("e-1", first.at)


def test_account_expiry_never_comes_from_a_late_event() -> None:
    """A late event (before the account's clock) does not expire the account."""
    engine = Engine([make_icp()], dedup_window=30 * 86400.0, account_ttl=30 * 86400.0)
    state = AccountState()
    engine.apply(state, make_event("a", occurred_at="2026-03-01T00:00:00Z"), ACME)
    assert (
        engine.apply(state, make_event("b", occurred_at="2026-02-15T00:00:00Z"), ACME)[0] == SCORED
    )
    assert (
        state.seen.contains("a", 0.0)
        and state.clock == make_event(occurred_at="2026-03-01T00:00:00Z").at
    )


def test_account_ttl_is_never_shorter_than_the_dedup_window() -> None:
    """A TTL below the dedup window would forget applied ids too early: refused."""
    with pytest.raises(ValueError, match="dedup window"):
        Engine([make_icp()], dedup_window=7 * 86400.0, account_ttl=86400.0)
    assert Engine([], dedup_window=400 * 86400.0).account_ttl == 400 * 86400.0
