"""Output documents match the models, and the checked-in schemas match the models."""

from __future__ import annotations

from pathlib import Path

from scorer.models import AccountScore, HotAccountEvent
from scorer.schema_files import schemas, stale_schemas
from scorer.scoring import AccountState, Engine, alert_id, build_document
from tests.conftest import make_event, make_icp

ROOT = Path(__file__).parents[2]
ACME = {
    "domain": "acme.example",
    "name": "Acme",
    "industry": "saas",
    "employees": 120,
    "country": "US",
    "sources": {"industry": {"source": "crm", "confidence": 0.9}},
}


def test_built_documents_validate_against_the_models() -> None:
    """hot_account and account_score dicts (visitor and lead) validate as their models."""
    engine, state = Engine([make_icp()]), AccountState()
    for event in (make_event("a", "demo_request"), make_event("b", "lead_created", title="CFO")):
        score = engine.apply(state, event, ACME)[1][0]
        HotAccountEvent.model_validate(build_document(score, "hot_account", 1.7e9))
        doc = build_document(score, "account_score", 1.7e9)
        AccountScore.model_validate(doc)
    assert doc["lead"]["lead_id"] == "L-1"


def test_document_explains_every_fit_point() -> None:
    """The reasons' points add up to the fit score, and the trigger says what it earned."""
    engine = Engine([make_icp()])
    score = engine.apply(AccountState(), make_event(type="demo_request"), ACME)[1][0]
    doc = build_document(score, "hot_account", 1.7e9)
    assert round(sum(r["points"] for r in doc["reasons"]), 1) == round(doc["score"]["fit"], 1)
    assert doc["trigger"]["points"] == 40.0
    assert doc["reasons"][0] == {
        "field": "industry",
        "operator": "in",
        "matched": True,
        "weight": 3.0,
        "points": 50.0,
        "must_have": True,
        "value": "saas",
        "source": "crm",
        "confidence": 0.9,
    }


def test_alert_id_is_deterministic_and_distinct() -> None:
    """Same ICP, account and trigger give the same id; any change gives another."""
    assert alert_id("icp", "acme.example", "e1") == alert_id("icp", "acme.example", "e1")
    ids = {
        alert_id(*k)
        for k in [("icp", "a", "e1"), ("icp", "a", "e2"), ("icp2", "a", "e1"), ("icp", "b", "e1")]
    }
    assert len(ids) == 4


def test_checked_in_schemas_match_the_models() -> None:
    """schemas/ is exactly what `scorer schemas` generates (run it after changing models.py)."""
    assert stale_schemas(ROOT / "schemas") == []
    assert {p.name for p in (ROOT / "schemas").glob("*.json")} == set(schemas())
