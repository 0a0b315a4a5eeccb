"""The engine's lean paths give the same answers as the plain ones.

`Engine.apply(..., every=False)` skips the scores nobody reads; a
`LazyCompany` decodes its bytes only when read. Both are speed-ups only: the
state, the hot scores and their documents must not change.
"""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson

from scorer import synthetic
from scorer.enrichment.firmographics import LazyCompany
from scorer.events import event_from_document
from scorer.icp import load_icp
from scorer.scoring import SCORED, AccountState, Engine, build_document
from scorer.scoring import engine as engine_module
from scorer.scoring.intake import AccountStates, CompanyMap, CompanySource, apply_event
from scorer.scoring.output import HOT_ACCOUNT
from scorer.stream import tables
from scorer.stream.metrics import Metrics
from scorer.stream.tables import Firmographics

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
    # The engine computes the same fit from the bytes as from the dict, and the
    # account keeps it while the token (the bytes) is the same object.
    engine = Engine(map(load_icp, ICPS))
    assert engine.company_fits(record) == engine.company_fits(LazyCompany(raw))
    state = AccountState()
    doc = next(synthetic.events(1, [record["domain"]], seed=1))
    event = event_from_document({**doc, "company_domain": record["domain"]})
    engine.apply(state, event, LazyCompany(raw), raw)
    assert state.fits is not None
    kept = state.fits[2]
    assert kept == engine.company_fits(record)
    later = event_from_document({**doc, "event_id": "later"})
    engine.apply(state, later, LazyCompany(raw), raw)
    assert state.fits[2] is kept


def test_an_accounts_fit_is_computed_again_when_its_record_or_the_icps_change() -> None:
    records = list(synthetic.companies(2, seed=4))
    domain = records[0]["domain"]
    events = [
        event_from_document({**doc, "company_domain": domain, "event_id": f"e{n}"})
        for n, doc in enumerate(synthetic.events(4, [domain], seed=6))
    ]
    engine, state = Engine(map(load_icp, ICPS)), AccountState()
    engine.apply(state, events[0], records[0])
    assert state.fits is not None
    first = state.fits
    engine.apply(state, events[1], records[0])
    assert state.fits is first  # same record object, same ICPs: kept
    engine.apply(state, events[2], records[1])  # another record: computed again
    assert state.fits is not first and state.fits[2] == engine.company_fits(records[1])
    second = state.fits
    engine.set_icp(load_icp(ICPS[0]).model_copy(update={"version": 99}))
    engine.apply(state, events[3], records[1])  # another ICP set: computed again
    assert state.fits is not second and state.fits[1] is engine.icps


def test_the_points_memo_is_bounded_and_never_changes_a_score(monkeypatch) -> None:
    """The memo of signal points by event type and path is cleared when full and
    when the ICPs change; scores are the same as with a memo that never fills."""
    records = list(synthetic.companies(50, seed=8))
    companies = {r["domain"]: r for r in records}
    docs = list(synthetic.events(3000, list(companies), seed=2))
    for n, doc in enumerate(docs):  # many paths, and a few types
        if doc["type"] != "lead_created" and n % 3:
            doc["page_url"] = f"https://a.example/{'pricing' if n % 2 else 'blog'}/{n % 97}"
    roomy, tight = Engine(map(load_icp, ICPS)), Engine(map(load_icp, ICPS))
    roomy_states: dict[str, AccountState] = {}
    tight_states: dict[str, AccountState] = {}
    sizes = set()
    for n, doc in enumerate(docs):
        event = event_from_document(doc)
        if event.account is None:
            continue
        company = companies.get(event.account)
        a = roomy.apply(roomy_states.setdefault(event.account, AccountState()), event, company)
        monkeypatch.setattr(engine_module, "POINTS_MEMO_LIMIT", 5)
        b = tight.apply(tight_states.setdefault(event.account, AccountState()), event, company)
        monkeypatch.undo()
        assert [(s.icp.id, s.points, s.total) for s in a[1]] == [
            (s.icp.id, s.points, s.total) for s in b[1]
        ]
        total = sum(len(by_path) for by_path in tight._points.values())
        assert total == tight._memo_size <= 5
        sizes.add(total)
        if n == 1500:
            tight.set_icp(load_icp(ICPS[0]).model_copy(update={"version": 99}))
            roomy.set_icp(load_icp(ICPS[0]).model_copy(update={"version": 99}))
            assert tight._points == {} and tight._memo_size == 0
    assert sizes == {1, 2, 3, 4, 5}  # filled and cleared again and again
    assert sum(len(by_path) for by_path in roomy._points.values()) > 100


def test_a_company_given_as_its_bytes_scores_and_documents_as_its_record() -> None:
    """The stream's table gives the engine a record's JSON bytes (also the fit's
    token): the states, the scores and every document are those of the record."""
    records = list(synthetic.companies(300, seed=7))
    companies = {r["domain"]: r for r in records}
    raws = {domain: orjson.dumps(record) for domain, record in companies.items()}
    domains = [r["domain"] for r in records]
    by_record, by_bytes = Engine(map(load_icp, ICPS)), Engine(map(load_icp, ICPS))
    record_states: dict[str, AccountState] = {}
    bytes_states: dict[str, AccountState] = {}
    documents = 0
    for doc in synthetic.events(6000, domains, seed=11):
        event = event_from_document(doc)
        if event.account is None:
            continue
        raw = raws.get(event.account)
        a = by_record.apply(
            record_states.setdefault(event.account, AccountState()),
            event,
            companies.get(event.account),
        )
        b = by_bytes.apply(bytes_states.setdefault(event.account, AccountState()), event, raw, raw)
        assert a[0] == b[0] and len(a[1]) == len(b[1])
        for x, y in zip(a[1], b[1], strict=True):
            assert build_document(x, HOT_ACCOUNT, 0.0) == build_document(y, HOT_ACCOUNT, 0.0)
            documents += 1
    assert documents > 1000
    assert {k: s.to_json() for k, s in record_states.items()} == {
        k: s.to_json() for k, s in bytes_states.items()
    }


class _ReadEachTime(CompanySource):
    """The stream's company table without the change log: every event reads its record."""

    def __init__(self, records: dict[bytes, bytes]) -> None:
        self.records = records

    def company(self, domain: str) -> tuple[Any, object]:
        raw = self.records.get(domain.encode())
        return raw, raw


class _CountedReads(Firmographics):
    reads = 0

    def company(self, domain: str) -> tuple[bytes | None, bytes | None]:
        self.reads += 1
        return super().company(domain)


def test_a_kept_company_is_read_again_exactly_when_its_record_changed(monkeypatch) -> None:
    """An account whose fit is kept skips its record's look-up while the record has not
    changed (`Firmographics.unchanged`): with upserts, deletes and bad records among
    the events, and a change log short enough to be cleared many times, every
    outcome, score document and state is that of reading the record each time, and
    so is the hit/miss count."""
    monkeypatch.setattr(tables, "CHANGE_LOG", 5)
    records = list(synthetic.companies(40, seed=3))
    domains = [r["domain"] for r in records]
    firmographics = _CountedReads(Metrics(), 1_000_000)
    rejected: list[str] = []

    def change(key: bytes, value: bytes | None) -> None:
        record = SimpleNamespace(key=key, value=value)
        firmographics.apply(record, lambda _record, reason, _detail: rejected.append(reason))

    for record in records[:30]:
        change(record["domain"].encode(), orjson.dumps(record))
    engines = Engine(map(load_icp, ICPS)), Engine(map(load_icp, ICPS))
    states = AccountStates(), AccountStates()
    reading = _ReadEachTime(firmographics.records)
    rng = random.Random(8)
    documents = events = 0
    for n, doc in enumerate(synthetic.events(4000, domains, seed=12)):
        if n % 9 == 0:
            record = rng.choice(records)
            draw = rng.random()
            if draw < 0.6:
                value = orjson.dumps({**record, "employees": rng.randint(1, 100_000)})
            elif draw < 0.9:
                value = None  # a tombstone
            else:
                value = b"{not json"  # dead-lettered: the table does not change
            change(record["domain"].encode(), value)
        event = event_from_document(doc)
        if event.account is None:
            continue
        events += 1
        a = apply_event(engines[0], event, event.account, states[0], firmographics)
        b = apply_event(engines[1], event, event.account, states[1], reading)
        assert a[0] == b[0] and len(a[1]) == len(b[1])
        for x, y in zip(a[1], b[1], strict=True):
            assert build_document(x, HOT_ACCOUNT, 0.0) == build_document(y, HOT_ACCOUNT, 0.0)
            documents += 1
    assert rejected and documents > 500
    assert firmographics.reads < events / 2  # most events read no record
    assert {k: s.to_json() for k, s in states[0].states.items()} == {
        k: s.to_json() for k, s in states[1].states.items()
    }
    assert firmographics.hits + firmographics.misses == events  # one look-up an event, as before


def test_a_state_carried_to_another_file_reads_that_files_record() -> None:
    """Account states carried from one file's replay to the next (`score_lines`'
    `accounts`): the second file's company record is read, never the first's kept."""
    record = next(iter(synthetic.companies(1, seed=21)))
    domain = record["domain"]
    big, tiny = {**record, "employees": 400}, {**record, "employees": 3}
    events = [
        event_from_document({**doc, "company_domain": domain, "event_id": f"e{n}"})
        for n, doc in enumerate(synthetic.events(2, [domain], seed=22))
    ]
    engine, carried = Engine(map(load_icp, ICPS)), AccountStates()
    apply_event(engine, events[0], domain, carried, CompanyMap({domain: big}))
    _, scores = apply_event(engine, events[1], domain, carried, CompanyMap({domain: tiny}))
    fresh = Engine(map(load_icp, ICPS))
    _, expected = apply_event(fresh, events[1], domain, AccountStates(), CompanyMap({domain: tiny}))
    assert [s.fit for s in scores] == [s.fit for s in expected]
    assert all(score.company["employees"] == 3 for score in scores)
