"""`scorer icp derive`: the planted ICP comes back, as a valid, deterministic YAML."""

from __future__ import annotations

from pathlib import Path

import pytest

from scorer.cli import main
from scorer.icp.loader import loads_icp
from scorer.lifecycle.crm import LOST, WON
from scorer.lifecycle.derive import Derivation, DeriveOptions, derive
from scorer.lifecycle.evidence import psi, wilson
from scorer.lifecycle.render import render_icp
from scorer.lifecycle.sample import Sample, generate

PLANTED_FIELDS = {"industry", "tech_stack", "employees", "country"}
# Revenue is drawn as employees x 80k..300k: a true correlate of the planted band.
CORRELATES = {"annual_revenue_usd"}


@pytest.fixture(scope="module")
def sample() -> Sample:
    return generate(10_000, seed=42)


@pytest.fixture(scope="module")
def derivation(sample: Sample) -> Derivation:
    companies = {r["domain"]: r for r in sample.companies}
    won = [o.domain for o in sample.opportunities if o.outcome == WON]
    lost = [o.domain for o in sample.opportunities if o.outcome == LOST]
    return derive(companies, won, lost)


def test_derive_recovers_planted_fields_and_values(derivation: Derivation) -> None:
    """Every planted field comes back with the planted values, and no unrelated field does."""
    found = {p.field: p for p in derivation.proposals}
    assert PLANTED_FIELDS <= set(found) <= PLANTED_FIELDS | CORRELATES
    assert found["industry"].operator == "in"
    assert {v.casefold() for v in found["industry"].operand} == {"software", "saas"}
    assert found["tech_stack"].operand == ["snowflake"]
    assert found["employees"].operand == [200, 2000]
    assert set(found["country"].operand) == {"US", "GB"}


def test_derive_orders_weights_like_the_planted_odds(derivation: Derivation) -> None:
    """Industry (odds x12) weighs most, country (x3) least, snowflake and size in between."""
    weight = {p.field: p.weight for p in derivation.proposals}
    assert weight["industry"] >= weight["tech_stack"] >= weight["country"]
    assert weight["industry"] >= weight["employees"] >= weight["country"]
    assert weight["industry"] > weight["country"]


def test_derived_yaml_validates_and_carries_evidence(
    derivation: Derivation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The YAML loads through the ICP loader, passes `scorer icp validate`, and cites lift."""
    text = render_icp(derivation, "derived", 1)
    document = loads_icp(text)
    assert len(document.fit) == len(derivation.proposals)
    assert "lift" in text and "95%" in text
    path = tmp_path / "proposed.yaml"
    path.write_text(text)
    assert main(["icp", "validate", str(path)]) == 0
    assert "ok (derived v1" in capsys.readouterr().out


def test_derive_is_deterministic(sample: Sample, derivation: Derivation) -> None:
    """The same input gives byte-identical YAML, whatever the input order."""
    companies = {r["domain"]: r for r in reversed(sample.companies)}
    won = [o.domain for o in reversed(sample.opportunities) if o.outcome == WON]
    lost = [o.domain for o in reversed(sample.opportunities) if o.outcome == LOST]
    again = derive(companies, won, lost)
    assert render_icp(again) == render_icp(derivation)


def test_must_have_when_every_win_has_it_and_few_losses_do() -> None:
    """A value all wins share and losses rarely have is proposed as must_have."""
    companies = {}
    for i in range(200):
        industry = "software" if i < 60 or i % 10 == 0 else "retail"
        companies[f"c{i}.example"] = {"domain": f"c{i}.example", "industry": industry}
    won = [f"c{i}.example" for i in range(60)]
    lost = [f"c{i}.example" for i in range(60, 200)]
    derivation = derive(companies, won, lost, DeriveOptions(min_support=10))
    (proposal,) = derivation.proposals
    assert proposal.operand == ["software"] and proposal.must_have
    assert "must_have: true" in render_icp(derivation)


def test_wilson_interval_matches_the_textbook() -> None:
    """5 of 10: the Wilson 95 % interval is 0.237-0.763; 0 of 10 starts at 0."""
    low, high = wilson(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)
    assert wilson(0, 10)[0] == 0.0


def test_psi_is_zero_for_equal_and_large_for_swapped_distributions() -> None:
    """PSI: identical shares give 0, a swapped 90/10 split gives more than 0.25."""
    assert psi([30, 70], [3, 7]) == pytest.approx(0.0)
    assert psi([90, 10], [10, 90]) > 0.25


def test_intent_signals_come_from_the_engagement_before_won_deals(
    sample: Sample, derivation: Derivation
) -> None:
    """The buying burst before deals (demo requests, forms, leads, enterprise pricing)
    earns points; pages every account visits at random earn none; the ICP validates."""
    import orjson

    from scorer.lifecycle.signals import derive_signals

    won = {o.domain for o in sample.opportunities if o.outcome == WON}
    signals = derive_signals(
        (orjson.dumps(e) for e in sample.events),
        sample.opportunities,
        [c["domain"] for c in sample.companies],
        won,
    )
    labels = [s.label for s in signals]
    assert {"demo_request", "form_submit", "lead_created", "page_view /pricing/enterprise"} <= set(
        labels
    )
    assert not {"page_view /careers", "page_view /about", "page_view /", "page_view"} & set(labels)
    points = {s.label: s.points for s in signals}
    assert points["demo_request"] > points["page_view /pricing"] >= 1
    assert max(points.values()) == 40
    text = render_icp(derivation, signals=signals)
    icp = loads_icp(text)
    assert {(s.type, s.path): s.points for s in icp.intent.signals} == {
        (s.type, s.path): s.points for s in signals
    }
    assert "# demo_request: support" in text
