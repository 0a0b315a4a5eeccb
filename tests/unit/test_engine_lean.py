"""The engine's lean paths give the same answers as the plain ones.

`Engine.apply(..., every=False)` skips the scores nobody reads; a
`LazyCompany` decodes its bytes only when read. Both are speed-ups only: the
state, the hot scores and their documents must not change.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from scorer import synthetic
from scorer.enrichment.firmographics import LazyCompany
from scorer.events import event_from_document
from scorer.icp import load_icp
from scorer.scoring import SCORED, AccountState, Engine, build_document
from scorer.scoring.output import HOT_ACCOUNT

SAMPLES = Path(__file__).resolve().parents[2] / "scorer" / "samples"
ICPS = [SAMPLES / "midmarket-saas.yaml", SAMPLES / "enterprise-fintech.yaml"]


def test_every_false_changes_nothing_but_the_scores_returned() -> None:
    records = list(synthetic.companies(300, seed=5))
    companies = {r["domain"]: r for r in records}
    domains = [r["domain"] for r in records]
    plain, lean = Engine(map(load_icp, ICPS)), Engine(map(load_icp, ICPS))
    plain_states: dict[str, AccountState] = {}
    lean_states: dict[str, AccountState] = {}
    hot = alerts = 0
    for doc in synthetic.events(6000, domains, seed=9):
        event = event_from_document(doc)
        if event.account is None:
            continue
        company = companies.get(event.account)
        a = plain.apply(plain_states.setdefault(event.account, AccountState()), event, company)
        b = lean.apply(
            lean_states.setdefault(event.account, AccountState()), event, company, None, False
        )
        assert a[0] == b[0]
        if a[0] != SCORED:
            continue
        assert len(a[1]) == len(plain.icps)
        wanted = [s for s in a[1] if s.hot]
        assert [(s.icp.id, s.total, s.tier, s.alert) for s in wanted] == [
            (s.icp.id, s.total, s.tier, s.alert) for s in b[1]
        ]
        for x, y in zip(wanted, b[1], strict=True):
            assert build_document(x, HOT_ACCOUNT, 0.0) == build_document(y, HOT_ACCOUNT, 0.0)
        hot += len(wanted)
        alerts += sum(s.alert for s in wanted)
    assert hot > alerts > 10  # the run exercised both alerts and suppressed scores
    assert {k: s.to_json() for k, s in plain_states.items()} == {
        k: s.to_json() for k, s in lean_states.items()
    }


def test_lazy_company_reads_like_its_record_and_decodes_once_read() -> None:
    record = next(synthetic.companies(1, seed=3))
    raw = orjson.dumps(record)
    lazy = LazyCompany(raw)
    assert lazy._doc is None  # nothing decoded yet
    assert dict(lazy) == record and len(lazy) == len(record)
    assert lazy.get("domain") == record["domain"] and lazy.get("nope", 1) == 1
    # The engine computes the same fit from the bytes as from the dict, and
    # keeps it while the token (the bytes) is the same object.
    engine = Engine(map(load_icp, ICPS))
    from_dict = engine.company_fits("x", record)
    engine.clear_company_cache()
    from_bytes = engine.company_fits("x", LazyCompany(raw), raw)
    assert from_dict == from_bytes
    assert engine.company_fits("x", LazyCompany(raw), raw) is from_bytes


def test_the_fit_cache_keeps_two_generations_and_moves_a_reused_entry_back() -> None:
    """Past FIT_CACHE_GENERATION companies the oldest generation goes; an entry used
    again comes back from the old one as the same object (no recomputation)."""
    from scorer.scoring import engine as engine_module

    generation = engine_module.FIT_CACHE_GENERATION
    engine = Engine(map(load_icp, ICPS))
    first = engine.company_fits("d0.example", None)
    for number in range(1, generation):
        engine.company_fits(f"d{number}.example", None)
    # The next one starts a new generation: d0 is in the old one, and comes back.
    engine.company_fits("new.example", None)
    assert engine.company_fits("d0.example", None) is first
    for number in range(generation, 3 * generation):
        engine.company_fits(f"d{number}.example", None)
    assert len(engine._fits) + len(engine._fits_old) <= 2 * generation
    assert engine.company_fits("d0.example", None) is not first  # long gone: computed again
