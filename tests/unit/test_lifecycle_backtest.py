"""`scorer icp backtest`: the engine's own alerts, judged against CRM outcomes."""

from __future__ import annotations

import io
import random
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scorer.icp.document import ICPDocument
from scorer.icp.loader import parse_icp
from scorer.lifecycle.backtest import DAY, backtest, replay, replay_file
from scorer.lifecycle.crm import LOST, WON, Opportunity
from scorer.lifecycle.derive import derive
from scorer.lifecycle.render import render_icp
from scorer.lifecycle.sample import Sample, generate
from scorer.offline import score_lines
from scorer.scoring.engine import Engine
from tests.conftest import BASE_ICP, make_icp

T0 = datetime(2026, 6, 1, tzinfo=UTC).timestamp()


def _event(event_id: str, domain: str, day: float, kind: str = "demo_request") -> bytes:
    at = datetime.fromtimestamp(T0 + day * DAY, tz=UTC).isoformat().replace("+00:00", "Z")
    doc = {"event_id": event_id, "type": kind, "occurred_at": at, "company_domain": domain}
    return orjson.dumps(doc) + b"\n"


TINY_ICP = parse_icp(
    {
        "id": "tiny",
        "version": 1,
        "fit": [{"field": "industry", "in": ["software"]}],
        "intent": {"signals": [{"type": "demo_request", "points": 100}]},
        "weights": {"fit": 0.5, "intent": 0.5},
        "tiers": {"A": 80, "B": 65, "C": 50},
        "hot": {"min_total": 65, "min_fit": 60},
    }
)


def test_backtest_numbers_checked_by_hand() -> None:
    """Three accounts: two alerted (total 100, tier A), one converts in 10 days and wins."""
    companies = {
        "a.example": {"domain": "a.example", "industry": "software"},
        "b.example": {"domain": "b.example", "industry": "software"},
        "c.example": {"domain": "c.example", "industry": "retail"},
    }
    lines = [
        _event("e1", "a.example", 0),
        _event("e2", "b.example", 0),
        _event("e3", "c.example", 7),
    ]
    outcomes = [
        Opportunity("a.example", WON, 1000.0, T0 + 10 * DAY, T0 + 40 * DAY),
        Opportunity("c.example", LOST, None, T0 + 8 * DAY, T0 + 20 * DAY),
        Opportunity("b.example", LOST, None, T0 + 200 * DAY, T0 + 220 * DAY),  # past the horizon
    ]
    result = backtest(lines, [("A", TINY_ICP)], companies, outcomes, horizon=90 * DAY)
    (r,) = result["icps"]
    assert r["alerts"] == 2 and r["accounts_alerted"] == 2
    assert r["precision"] == 0.5  # a opened within 90 days; b only after 200
    assert r["recall"] == 1.0  # the one won account was alerted before it closed
    assert r["median_days_to_opportunity"] == pytest.approx(10.0)
    assert r["base_win_rate"] == pytest.approx(1 / 3)
    tiers = {t["tier"]: t for t in r["tiers"]}
    assert (tiers["A"]["accounts"], tiers["A"]["won"]) == (2, 1)
    assert tiers["A"]["lift"] == pytest.approx(1.5)
    assert (tiers["C"]["accounts"], tiers["C"]["won"]) == (1, 0)  # c: fit 0, total 50
    assert r["alerts_per_week"] == pytest.approx(2.0)  # 2 alerts over exactly one week
    sweep = {s["min_total"]: s for s in r["threshold_sweep"]}
    assert sweep[50.0]["accounts_alerted"] == 2  # c's fit 0 is below min_fit at any threshold
    assert sweep[95.0]["precision"] == 0.5


@pytest.fixture(scope="module")
def sample() -> Sample:
    return generate(6000, seed=42)


def _random_icp(sample: Sample, seed: int) -> ICPDocument:
    """Three criteria on random fields with random values seen in the data."""
    rng = random.Random(seed)
    record = rng.choice(sample.companies)
    choices: list[dict[str, Any]] = [
        {"field": "industry", "in": [rng.choice(["retail", "media", "banking", "education"])]},
        {"field": "country", "in": rng.sample(["DE", "FR", "IN", "BR", "CA"], 2)},
        {"field": "business_model", "in": [record["business_model"]]},
        {"field": "tech_stack", "contains_any": rng.sample(["zendesk", "slack", "gcp"], 1)},
    ]
    fit = [{**c, "weight": rng.randint(1, 5)} for c in rng.sample(choices, 3)]
    return parse_icp({**BASE_ICP, "id": f"random-{seed}", "fit": fit})


def test_derived_icp_backtests_more_precise_than_random_icps(sample: Sample) -> None:
    """The ICP derived from outcomes beats three random ICPs on precision, same history."""
    companies = {r["domain"]: r for r in sample.companies}
    won = [o.domain for o in sample.opportunities if o.outcome == WON]
    lost = [o.domain for o in sample.opportunities if o.outcome == LOST]
    from scorer.icp.loader import loads_icp

    derived = loads_icp(render_icp(derive(companies, won, lost)))
    lines = [orjson.dumps(e) for e in sample.events]
    icps = [("derived", derived), *((f"r{s}", _random_icp(sample, s)) for s in range(3))]
    result = backtest(lines, icps, companies, sample.opportunities)
    derived_result, *randoms = result["icps"]
    assert derived_result["accounts_alerted"] > 20
    for other in randoms:
        assert derived_result["precision"] > other["precision"], other["label"]


DOMAINS = ["a.example", "b.example", "www.c.example", "d.example"]
COMPANIES = {
    "a.example": {"domain": "a.example", "industry": "software", "employees": 300, "country": "US"},
    "b.example": {"domain": "b.example", "industry": "saas", "employees": 40, "country": "GB"},
    "c.example": {"domain": "c.example", "industry": "retail", "employees": 900},
}
event_docs = st.lists(
    st.builds(
        lambda i, kind, domain, minutes, page: {
            "event_id": f"e-{i}",
            "type": kind,
            "occurred_at": datetime.fromtimestamp(T0 + minutes * 60, tz=UTC).isoformat(),
            **(
                {"lead_id": "L", "email": f"x@{domain}", "title": "VP Sales"}
                if kind == "lead_created"
                else {"company_domain": domain, "page_url": f"https://x.example{page}"}
            ),
        },
        st.integers(0, 30),  # repeated ids exercise deduplication
        st.sampled_from(["page_view", "demo_request", "lead_created", "form_submit"]),
        st.sampled_from(DOMAINS),
        st.integers(0, 60 * 24 * 10),
        st.sampled_from(["/", "/pricing", "/docs"]),
    ),
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(event_docs)
def test_backtest_alerts_are_exactly_scorer_score_alerts(docs: list[dict[str, Any]]) -> None:
    """Whatever the history, the replay alerts on the same events as `scorer score`."""
    lines = [orjson.dumps(d) for d in docs]
    out = io.BytesIO()
    icp = make_icp()
    score_lines(lines, Engine([icp]), COMPANIES, out, errors=io.StringIO())
    expected = [
        (doc["account"]["domain"], doc["trigger"]["event_id"], doc["tier"])
        for doc in map(orjson.loads, out.getvalue().splitlines())
    ]
    _, (run,) = replay(lines, [("A", icp)], COMPANIES)
    assert [(a.domain, a.event_id, a.tier) for a in run.alerts] == expected


def test_a_replay_split_over_processes_equals_one_pass(sample: Sample, tmp_path: Any) -> None:
    """`--jobs 3` (accounts split over forked processes) gives one pass's result exactly:
    the same alerts in file order, tiers, threshold crossings and counts."""
    companies = {r["domain"]: r for r in sample.companies}
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in sample.events) + b"not json\n")
    icps = [("A", make_icp()), ("B", make_icp(id="other", tiers={"A": 70, "B": 55}))]
    one = backtest(str(path), icps, companies, sample.opportunities, jobs=1)
    split = backtest(str(path), icps, companies, sample.opportunities, jobs=3)
    assert split == one
    assert one["icps"][0]["alerts"] > 0 and one["events"]["invalid"] == 1
    _, single = replay_file(path, icps, companies, jobs=1)
    _, parts = replay_file(path, icps, companies, jobs=3)
    assert [r.alerts for r in parts] == [r.alerts for r in single]


def test_review_precision_counts_only_the_alerts_since_the_version() -> None:
    """Alerts before `since` are replayed (for intent) but not judged: of a (day 0) and
    b (day 20), only b's alert is after day 10, and b opened an opportunity in time."""
    from scorer.lifecycle.backtest import alerts_since

    companies = {
        "a.example": {"domain": "a.example", "industry": "software"},
        "b.example": {"domain": "b.example", "industry": "software"},
    }
    lines = [_event("e1", "a.example", 0), _event("e2", "b.example", 20)]
    outcomes = [Opportunity("b.example", WON, None, T0 + 25 * DAY, T0 + 40 * DAY)]
    since = alerts_since(lines, TINY_ICP, companies, outcomes, T0 + 10 * DAY)
    assert (since["alerts"], since["accounts_alerted"], since["precision"]) == (1, 1, 1.0)
    assert since["median_days_to_opportunity"] == pytest.approx(5.0)
    everything = alerts_since(lines, TINY_ICP, companies, outcomes, T0 - DAY)
    assert (everything["alerts"], everything["precision"]) == (2, 0.5)


def test_backtest_honours_erasures_in_event_time_order() -> None:
    """An erased account's events up to the request reach no ICP, even late ones;
    its later events score as a new account's; a suppressed account never alerts."""
    from scorer.scoring.erasure import ACCOUNT, new_request

    companies = {
        d: {"domain": d, "industry": "software"} for d in ("a.example", "b.example", "c.example")
    }
    lines = [
        _event("a1", "a.example", 0),
        _event("b1", "b.example", 0),
        _event("a2", "a.example", 0.5),  # in a1's cooldown
        _event("a0", "a.example", 0.1),  # late: before the request, read after it
        _event("c1", "c.example", 1),
    ]
    requests = [
        new_request("r1", ACCOUNT, "a.example", T0 + 0.25 * DAY),
        new_request("r2", ACCOUNT, "b.example", T0 - DAY, salt=b"salt"),
    ]
    _, plain = replay(lines, [("A", TINY_ICP)], companies)
    _, erased = replay(lines, [("A", TINY_ICP)], companies, erasures=requests, salt=b"salt")
    assert [(a.domain, a.event_id) for a in plain[0].alerts] == [
        ("a.example", "a1"),
        ("b.example", "b1"),
        ("c.example", "c1"),
    ]
    # a1 alerted before the request; after it a.example starts fresh, out of a1's
    # cooldown: a2 alerts; a0 is erased on arrival; b.example is suppressed.
    assert [(a.domain, a.event_id) for a in erased[0].alerts] == [
        ("a.example", "a1"),
        ("a.example", "a2"),
        ("c.example", "c1"),
    ]
