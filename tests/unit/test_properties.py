"""Hypothesis properties of the engine: replay, bounds, must-haves, late events."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from scorer.events import decode_event
from scorer.scoring import SCORED, AccountState, Engine
from scorer.scoring.intake import AccountStates
from tests.conftest import make_icp

BASE = 1_795_000_000  # 2026-11-18
TYPES = ["page_view", "demo_request", "form_submit", "lead_created", "webinar"]
PATHS = ["/", "/pricing", "/pricing/x", "/docs", None]

companies = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {"domain": st.just("acme.example")},
        optional={
            "industry": st.sampled_from(["software", "SaaS", "retail", None]),
            "employees": st.one_of(st.none(), st.integers(0, 5000)),
            "country": st.sampled_from(["US", "gb", "DE", None]),
            "sources": st.just({"industry": {"confidence": 0.4}}),
        },
    ),
)


@st.composite
def event_lists(draw: st.DrawFn, unique: bool = False) -> list[bytes]:
    """Events over one account; a repeated id is a real replay (the same document)."""
    count = draw(st.integers(1, 25))
    ids = st.integers(0, 10_000 if unique else 12)
    chosen = draw(st.lists(ids, min_size=count, max_size=count, unique=unique))
    documents: dict[int, bytes] = {}
    for n in chosen:
        if n not in documents:
            documents[n] = _document(draw, n)
    return [documents[n] for n in chosen]


def _document(draw: st.DrawFn, n: int) -> bytes:
    kind = draw(st.sampled_from(TYPES))
    offset = draw(st.integers(0, 40 * 86400))
    doc = {"event_id": f"e{n}", "type": kind, "occurred_at": _iso(BASE + offset)}
    if kind == "lead_created":
        doc.update(lead_id="L", email="x@acme.example", title=draw(st.sampled_from(["VP", "dev"])))
    else:
        doc.update(company_domain="acme.example", page_url=draw(st.sampled_from(PATHS)))
    return orjson.dumps(doc)


def _iso(epoch: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def run(engine: Engine, state: AccountState, raws: list[bytes], company: dict | None) -> list[str]:
    alerts = []
    for raw in raws:
        event = decode_event(raw)
        outcome, scores = engine.apply(state, event, company)
        alerts += [f"{s.icp.id}/{event.event_id}" for s in scores if s.alert]
        if outcome != SCORED:
            assert scores == []
    return alerts


def engine() -> Engine:
    return Engine(
        [make_icp(), make_icp(id="other", hot={"min_total": 10, "cooldown": "1h"})],
        dedup_window=10 * 86400,
    )


@settings(max_examples=200, deadline=None)
@given(event_lists(), companies, st.data())
def test_replaying_any_prefix_changes_nothing(raws: list[bytes], company, data) -> None:
    """After a crash at k, replaying from any j <= k gives the clean pass's state and alerts."""
    k = data.draw(st.integers(0, len(raws)))
    j = data.draw(st.integers(0, k))
    clean_state = AccountState()
    clean_alerts = run(engine(), clean_state, raws, company)
    state = AccountState()
    eng = engine()
    alerts = run(eng, state, raws[:k], company)
    alerts += run(
        eng, AccountState.from_json(state.to_json()), [], company
    )  # survives a round trip
    state = AccountState.from_json(state.to_json())
    alerts += run(eng, state, raws[j:], company)
    assert alerts == clean_alerts
    assert state.to_json() == clean_state.to_json()


@settings(max_examples=200, deadline=None)
@given(event_lists(), companies)
def test_scores_stay_in_range(raws: list[bytes], company) -> None:
    """fit, intent and total stay within 0..100 and data quality within 0..1."""
    eng, state = engine(), AccountState()
    for raw in raws:
        for s in eng.apply(state, decode_event(raw), company)[1]:
            assert 0 <= s.fit <= 100 and 0 <= s.intent <= 100 and 0 <= s.total <= 100
            assert 0 <= s.quality <= 1


@settings(max_examples=200, deadline=None)
@given(event_lists(), st.sampled_from(["retail", "media", "RETAIL"]))
def test_failed_known_must_have_always_gives_zero(raws: list[bytes], industry: str) -> None:
    """A known industry outside the must-have list: total 0, no tier, never hot, never alerts."""
    eng, state = engine(), AccountState()
    company = {"domain": "acme.example", "industry": industry, "employees": 100, "country": "US"}
    for raw in raws:
        for s in eng.apply(state, decode_event(raw), company)[1]:
            assert (s.total, s.fit, s.tier, s.hot, s.alert) == (0.0, 0.0, None, False, False)


@settings(max_examples=200, deadline=None)
@given(event_lists(unique=True), st.randoms(use_true_random=False))
def test_late_event_order_does_not_change_intent(raws: list[bytes], rnd) -> None:
    """With the newest event first, any order of the late ones gives the same intent."""
    events = sorted((decode_event(r) for r in raws), key=lambda e: -e.at)
    shuffled = [events[0], *rnd.sample(events[1:], len(events) - 1)]
    results = []
    for order in (events, shuffled):
        eng, state = Engine([make_icp()], dedup_window=1e9), AccountState()
        for event in order:
            eng.apply(state, event, None)
        results.append((state.icps["saas"].raw, state.icps["saas"].clock))
    assert results[0][1] == results[1][1]
    assert abs(results[0][0] - results[1][0]) <= 1e-9 * max(1.0, results[0][0])


@settings(max_examples=200, deadline=None)
@given(event_lists(unique=True), st.randoms(use_true_random=False))
def test_intent_equals_closed_form_in_any_order(raws: list[bytes], rnd) -> None:
    """raw = sum of p_i x 2^-(T - t_i)/half_life, whatever order the events arrive in."""
    icp = make_icp()
    events = [decode_event(r) for r in raws]
    rnd.shuffle(events)
    eng, state = Engine([icp], dedup_window=1e9), AccountState()
    points = {}
    for event in events:
        points[event.event_id] = eng.apply(state, event, None)[1][0].points
    clock = max(e.at for e in events)
    half_life = icp.intent.half_life
    expected = sum(points[e.event_id] * 2 ** (-(clock - e.at) / half_life) for e in events)
    assert abs(state.icps["saas"].raw - expected) <= 1e-9 * max(1.0, expected)


DAY = 86400


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a.example", "b.example", "c.example"]),
            st.integers(0, 200),  # days after BASE: long idle gaps happen
            st.integers(0, DAY),  # how late it is behind the newest so far (<= the window)
            st.sampled_from(TYPES[:3]),
        ),
        min_size=1,
        max_size=60,
    ),
    st.lists(st.booleans(), min_size=60, max_size=60),
)
def test_expiry_housekeeping_changes_no_result(
    steps: list[tuple[str, int, int, str]], sweeps: list[bool]
) -> None:
    """Forgetting accounts idle past the TTL plus the dedup window behind the newest
    event (what the stream and `scorer score` do to bound memory) gives every event
    the same outcome and scores as keeping them, for events at most the window late."""
    ttl, window = 20 * DAY, DAY
    plain, swept = AccountStates(), AccountStates()
    engines = [Engine([make_icp()], dedup_window=window, account_ttl=ttl) for _ in range(2)]
    newest = float(BASE)
    for i, (domain, day, late, kind) in enumerate(steps):
        at = max(newest, BASE + day * DAY) - late  # never more than the window late
        doc = {"event_id": f"e{i}", "type": kind, "occurred_at": _iso(int(at))}
        event = decode_event(orjson.dumps({**doc, "company_domain": domain}))
        results = []
        for engine, table in zip(engines, (plain, swept), strict=True):
            outcome, scores = engine.apply(table.account(domain), event, None)
            results.append((outcome, [(s.total, s.intent, s.alert, s.tier) for s in scores]))
        assert results[0] == results[1]
        newest = max(newest, event.at)
        if sweeps[i % len(sweeps)]:
            swept.expire(newest - ttl - window)
