"""Erasure in the pure core: requests, what they remove, what they drop, the
changelog format that carries lead links, and a property over random
interleavings of events and erasures against a reference."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scorer import native
from scorer.errors import InvalidInputError
from scorer.events import decode_event
from scorer.scoring import DUPLICATE, SCORED, Engine
from scorer.scoring.erasure import (
    ACCOUNT,
    ERASED,
    LEAD,
    SUPPRESSED,
    ErasureRequest,
    Erasures,
    ReplayErasures,
    ReplayTable,
    apply_request,
    new_request,
    read_requests,
)
from scorer.scoring.intake import AccountStates, CompanyMap, take_event
from scorer.scoring.state import AccountState, lead_key
from scorer.stream.account_codec import (
    FORMAT,
    decode_chunk,
    decode_record,
    encode_record,
    load_account,
    store_account,
)
from scorer.stream.backing import MemoryBacking
from scorer.stream.id_window import MAX_RECENT, ChunkedIds
from scorer.stream.store import AccountStore
from tests.conftest import make_icp

BASE = 1_795_000_000.0
ACME = {"domain": "acme.example", "industry": "saas", "employees": 100, "country": "US"}
SALT = b"test-salt"


def iso(epoch: float) -> str:
    from scorer.timefmt import format_epoch

    return format_epoch(epoch)


def lead_doc(event_id: str, lead_id: str, at: float, domain: str = "acme.example") -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "type": "lead_created",
            "occurred_at": iso(at),
            "lead_id": lead_id,
            "email": f"pat@{domain}",
            "title": "VP Secret Title",
        }
    )


def view_doc(event_id: str, at: float, domain: str = "acme.example") -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "type": "page_view",
            "occurred_at": iso(at),
            "company_domain": domain,
        }
    )


def run(engine: Engine, accounts: Any, raw: bytes, erasures: Any = None) -> str:
    outcome, _, _ = take_event(
        engine, raw, accounts, CompanyMap({"acme.example": ACME}), erasures=erasures
    )
    return outcome


def test_request_round_trip_and_refusals() -> None:
    """A request survives JSON; a lead is named by its key, a suppression by its hash only."""
    lead = new_request("r1", LEAD, "hubspot-777", BASE)
    assert lead.target == lead_key("hubspot-777").hex() and "hubspot-777" not in str(lead)
    assert ErasureRequest.from_json(lead.to_json()) == lead
    account = new_request("r2", ACCOUNT, "WWW.Acme.Example.", BASE)
    assert account.target == "acme.example"
    hidden = new_request("r3", ACCOUNT, "acme.example", BASE, salt=SALT)
    assert hidden.target is None and hidden.suppress and b"acme" not in hidden.to_json()
    assert ErasureRequest.from_json(hidden.to_json()) == hidden
    when = '"requested_at": "2026-01-01T00:00:00Z"'
    bads = [
        "[]",
        "{",
        '{"id": "x", "kind": "lead", ' + when + "}",
        '{"id": "x", "kind": "who", "target": "a", ' + when + "}",
        '{"id": "", "kind": "lead", "target": "a", ' + when + "}",
        '{"id": "x", "kind": "lead", "target": "a"}',
    ]
    for bad in bads:
        with pytest.raises(InvalidInputError):
            ErasureRequest.from_json(bad)
    with pytest.raises(InvalidInputError, match="line 2"):
        read_requests([lead.to_json(), b"{}"])


def test_lead_erasure_removes_its_ids_and_keeps_the_account() -> None:
    """The lead's event ids and links leave the state; other ids and the intent stay."""
    engine = Engine([make_icp()])
    accounts = AccountStates()
    assert run(engine, accounts, view_doc("v1", BASE)) == SCORED
    assert run(engine, accounts, lead_doc("hubspot-1-777", "hubspot-777", BASE + 10)) == SCORED
    assert run(engine, accounts, lead_doc("hubspot-1-888", "hubspot-888", BASE + 20)) == SCORED
    state = accounts.states["acme.example"]
    intent = {k: s.raw for k, s in state.icps.items()}
    request = new_request("r1", LEAD, "hubspot-888", BASE + 30)

    assert apply_request(request, ReplayTable(accounts.states), None) == 1
    assert state.last_event_id is None  # it was the erased lead's event
    assert "hubspot-1-888" not in state.to_json().decode()
    assert state.seen.contains("hubspot-1-777", 0) and state.seen.contains("v1", 0)
    assert state.leads == {"hubspot-1-777": (lead_key("hubspot-777"), BASE + 10)}
    assert {k: s.raw for k, s in state.icps.items()} == intent
    # Erasure is of the past: the same lead later is scored as new.
    assert run(engine, accounts, lead_doc("hubspot-1-888b", "hubspot-888", BASE + 40)) == SCORED


def test_covers_drops_the_erased_past_and_suppressed_targets() -> None:
    """Events at or before the request's time are erased; later ones pass unless suppressed."""
    erasures = Erasures(SALT)
    erasures.add(new_request("a", ACCOUNT, "acme.example", BASE))
    erasures.add(new_request("l", LEAD, "L-9", BASE))
    erasures.add(new_request("s", LEAD, "L-secret", BASE, salt=SALT))
    erasures.add(new_request("t", ACCOUNT, "hidden.example", BASE, salt=SALT))

    def covers(raw: bytes) -> str | None:
        return erasures.covers(decode_event(raw))

    assert covers(view_doc("1", BASE)) == ERASED
    assert covers(view_doc("2", BASE + 1)) is None
    assert covers(lead_doc("3", "L-9", BASE - 5, "other.example")) == ERASED
    assert covers(lead_doc("4", "L-9", BASE + 5, "other.example")) is None
    assert covers(lead_doc("5", "L-secret", BASE + 1e6, "other.example")) == SUPPRESSED
    assert covers(view_doc("6", BASE + 1e6, "hidden.example")) == SUPPRESSED
    assert covers(view_doc("7", BASE + 1e6, "other.example")) is None
    with pytest.raises(ValueError, match="SALT"):
        Erasures(None).add(new_request("s", LEAD, "x", BASE, salt=SALT))


def test_suppressed_account_is_found_by_its_hash() -> None:
    """A suppression names no target, yet removes the account's state."""
    engine = Engine([make_icp()])
    accounts = AccountStates()
    run(engine, accounts, view_doc("v1", BASE))
    run(engine, accounts, view_doc("v2", BASE, "other.example"))
    replay = ReplayErasures(
        [new_request("s", ACCOUNT, "acme.example", BASE, SALT)], accounts.states, SALT
    )
    assert run(engine, accounts, view_doc("v3", BASE + 5), replay) == SUPPRESSED
    assert set(accounts.states) == {"other.example"}


def test_codec_format_3_carries_links_with_their_ids_and_reads_format_2() -> None:
    """A lead event's id entry carries its link, in the record's recent ids and in
    chunks; a format-2 record reads with none."""
    table: dict[bytes, bytes] = {}
    key = b"acme.example"
    state, ids = load_account(table, key, 7 * 86400.0, 3600.0)
    for n in range(40):  # past RECENT_LIMIT: the first ids go to a chunk
        link = lead_key(f"L{n}") if n % 3 == 0 else None
        ids.add(f"e{n:02d}", BASE + n, 0.0, link)
        if link is not None:
            state.note_lead(link, f"e{n:02d}", BASE + n, 0.0)
        if n in (35, 39):
            store_account(table, key, state, ids)
    raw = table[key]
    assert raw[0] == FORMAT == 3 and len(table) == 2
    back, _ = load_account(table, key, 7 * 86400.0, 3600.0)
    assert back.leads == state.leads and len(back.leads or {}) == 14
    plain = ChunkedIds(7 * 86400.0)
    plain.add("v1", BASE, 0.0)
    format_2 = bytes([2]) + encode_record(AccountState(BASE, "v1", {}, plain), plain)[1:]
    back, back_ids = decode_record(format_2, 7 * 86400.0)
    assert back.leads is None and set(back_ids.ids) == {"v1"}


def test_forget_rewrites_chunks_without_the_ids() -> None:
    """Forgotten ids leave every chunk: the old ones die, the rest are written anew."""
    table: dict[bytes, bytes] = {}
    key = b"acme.example"
    state, ids = load_account(table, key, 7 * 86400.0, 3600.0)
    count = MAX_RECENT * 2 + 100
    for n in range(count):
        link = lead_key(f"L{n}") if n % 500 == 0 else None
        ids.add(f"e{n}", BASE + n, 0.0, link)
        if link is not None:
            state.note_lead(link, f"e{n}", BASE + n, 0.0)
        state.clock = BASE + n
        if n % 40 == 0:
            store_account(table, key, state, ids)
            table = {k: v for k, v in table.items() if v is not None}
    store_account(table, key, state, ids)
    assert "e17" in _stored_ids(table, key)
    assert state.leads is not None and "e3000" in state.leads
    del state.leads["e3000"]  # as `AccountState.erase_lead` does
    ids.forget({"e17", "e3000"}, state.leads)
    store_account(_Deleting(table), key, state, ids)
    assert not {"e17", "e3000"} & _stored_ids(table, key)
    reloaded, back = load_account(table, key, 7 * 86400.0, 3600.0)
    assert set(back.ids) == {f"e{n}" for n in range(count)} - {"e17", "e3000"}
    assert reloaded.leads == state.leads and len(state.leads) == 8  # the links left, kept
    assert all(len(v) < 200_000 for v in table.values())


def _stored_ids(table: dict[bytes, bytes], key: bytes) -> set[str]:
    """Every id any value of the table holds, live or not."""
    found = set(decode_record(table[key], 7 * 86400.0)[1].ids)
    for name, value in table.items():
        if name != key:
            found.update(event_id for event_id, _ in decode_chunk(value))
    return found


class _Deleting(dict):  # type: ignore[type-arg]
    """A view of a table whose pop deletes (as a tombstone does)."""

    def __init__(self, table: dict[bytes, bytes]) -> None:
        super().__init__()
        self.table = table

    def get(self, key: bytes, default: Any = None) -> Any:
        return self.table.get(key, default)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.table[key] = value

    def pop(self, key: bytes, default: Any = None) -> Any:
        return self.table.pop(key, default)


# -- the property: random interleavings against a reference ---------------------------

DOMAINS = ["a.example", "b.example"]
LEADS = ["L1", "L2", "L3"]

events = st.tuples(st.sampled_from(["view", "lead"]), st.integers(0, 15), st.sampled_from(DOMAINS))
requests = st.tuples(
    st.just("erase"), st.sampled_from([ACCOUNT, LEAD]), st.integers(0, 2), st.integers(0, 3000)
)


def _raw(op: tuple[Any, ...]) -> tuple[str, bytes, str, str | None, float]:
    """An event op's document: its id names one event (the same time and lead)."""
    kind, n, domain = op
    event_id = f"{domain}-{kind}-{n:02d}"  # fixed width: no id is inside another
    at = BASE + n * 197 % 3000
    if kind == "lead":
        lead = LEADS[n % 3]
        return event_id, lead_doc(event_id, lead, at, domain), domain, lead, at
    return event_id, view_doc(event_id, at, domain), domain, None, at


class _StoreTable:
    """The task's store with a commit after every step, as the stream runs it."""

    def __init__(self) -> None:
        self.store = AccountStore(MemoryBacking(), 7 * 86400.0, 3600.0, cache_limit=1)
        self.offset = 0

    def account(self, domain: str) -> AccountState:
        return self.store.account(domain)

    def commit(self) -> None:
        self.store.prepare()
        self.offset += 1
        self.store.committed(self.offset)
        self.store.flush()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(events, requests), min_size=1, max_size=40))
def test_interleaved_events_and_erasures_match_a_reference(ops: list[tuple[Any, ...]]) -> None:
    """Offline replay and the changelog-backed store agree with a reference that
    tracks, per account, the ids that must still be remembered."""
    engine = Engine([make_icp()])
    replay = AccountStates()
    stream = _StoreTable()
    erasures = Erasures()
    alive: dict[str, set[str]] = {d: set() for d in DOMAINS}  # the reference
    lead_of: dict[str, str] = {}
    erased_ids: set[str] = set()
    account_until: dict[str, float] = {}
    lead_until: dict[str, float] = {}
    for op in ops:
        if op[0] == "erase":
            _, kind, target, t = op
            value = DOMAINS[target % 2] if kind == ACCOUNT else LEADS[target]
            request = new_request(f"r{t}", kind, value, BASE + t)
            erasures.add(request)
            apply_request(request, ReplayTable(replay.states), None)
            apply_request(request, stream.store, None)
            stream.commit()
            if kind == ACCOUNT:
                account_until[value] = max(account_until.get(value, 0.0), BASE + t)
                erased_ids |= alive[value]
                alive[value] = set()
            else:
                lead_until[value] = max(lead_until.get(value, 0.0), BASE + t)
                gone = {e for d in DOMAINS for e in alive[d] if lead_of.get(e) == value}
                erased_ids |= gone
                for d in DOMAINS:
                    alive[d] -= gone
            continue
        event_id, raw, domain, lead, at = _raw(op)
        expected = SCORED
        if at <= account_until.get(domain, -1) or (lead and at <= lead_until.get(lead, -1)):
            expected = ERASED
        elif event_id in alive[domain]:
            expected = DUPLICATE
        got = run(engine, replay, raw, erasures)
        assert got == expected
        assert run(engine, stream.store, raw, erasures) == expected
        if expected == SCORED:
            stream.store.changed(domain)
            alive[domain].add(event_id)
            erased_ids.discard(event_id)
            if lead:
                lead_of[event_id] = lead
        stream.commit()
    for domain in DOMAINS:
        state = replay.states.get(domain)
        remembered = set(state.seen.ids) if state is not None else set()  # type: ignore[attr-defined]
        assert remembered == alive[domain]
        in_store = set(stream.store.domains())
        if alive[domain]:
            assert domain in in_store
            stored = stream.store.account(domain)
            assert set(stored.seen.ids) == alive[domain]  # type: ignore[attr-defined]
            assert stored.core() == state.core()  # type: ignore[union-attr]
            assert stored.leads == state.leads  # type: ignore[union-attr]
    values = b"".join(stream.store.backing.data.values())  # type: ignore[attr-defined]
    for event_id in erased_ids:
        assert event_id.encode() not in values


# Runs in a fresh interpreter per build: synthetic traffic through a task's store
# (the stream's path) with erasures of leads and accounts on the way, every
# changelog value written printed in order, then the replay's outputs.
BUILD_DRIVER = r"""
import io, sys
import orjson
from scorer import native, synthetic
from scorer.icp import load_icp
from scorer.offline import EMIT_SCORES, score_lines
from scorer.scoring import Engine
from scorer.scoring.erasure import ACCOUNT, LEAD, Erasures, ReplayErasures
from scorer.scoring.erasure import apply_request, new_request
from scorer.scoring.intake import AccountStates, CompanyMap, take_event
from scorer.stream.backing import MemoryBacking
from scorer.stream.store import AccountStore
icp_paths = sys.argv[1:]
records = list(synthetic.companies(60, seed=4))
companies = {r["domain"]: r for r in records}
docs = list(synthetic.events(6000, list(companies)[:30], seed=6))
leads = [d for d in docs if d["type"] == "lead_created"]
at = lambda d: synthetic.datetime.fromisoformat(d["occurred_at"]).timestamp()
requests = [new_request(f"l{i}", LEAD, d["lead_id"], at(d) + 60) for i, d in enumerate(leads[::9])]
requests += [new_request("a", ACCOUNT, records[3]["domain"], at(docs[3000]))]
out = sys.stdout.buffer
out.write(native.describe().encode() + b"\n")
engine = Engine([load_icp(p) for p in icp_paths])
store = AccountStore(MemoryBacking(), engine.dedup_window, 3600.0, cache_limit=10)
table, erasures, offset = CompanyMap(companies), Erasures(), 0
pending = sorted(requests, key=lambda r: r.requested_at)
for n, doc in enumerate(docs):
    while pending and pending[0].requested_at < at(doc):
        request = pending.pop(0)
        erasures.add(request)
        apply_request(request, store, None)
    outcome, event, _ = take_event(engine, orjson.dumps(doc), store, table, erasures=erasures)
    if outcome == "scored":
        store.changed(event.account)
    if n % 50 == 0:
        for key, value in sorted(store.prepare().items()):
            out.write(key + b"=" + (value.hex().encode() if value else b"-") + b"\n")
        offset += 1
        store.committed(offset)
replay = ReplayErasures(requests, (states := AccountStates()).states)
lines = [orjson.dumps(d) for d in docs]
score_lines(lines, Engine([load_icp(p) for p in icp_paths]), companies, out, emit=EMIT_SCORES,
            errors=io.StringIO(), clock=lambda: 0.0, accounts=states, erasures=replay)
"""


def test_both_builds_write_the_same_changelog_bytes_with_erasures(tmp_path: Path) -> None:
    """Lead links, erasures and rewritten chunks: the compiled and the pure-Python core
    write the same changelog values and the same replay documents."""
    samples = Path(__file__).parents[2] / "scorer" / "samples"
    icps = [str(p) for p in sorted(samples.glob("*.yaml"))]

    def run(pure: bool) -> bytes:
        env = {**os.environ, native.PURE_ENV: "1" if pure else "0"}
        command = [sys.executable, "-c", BUILD_DRIVER, *icps]
        done = subprocess.run(command, env=env, capture_output=True, timeout=600)
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        return done.stdout

    compiled, pure = run(pure=False), run(pure=True)
    compiled_build, _, compiled_out = compiled.partition(b"\n")
    pure_build, _, pure_out = pure.partition(b"\n")
    assert pure_build.startswith(b"pure Python")
    if native.compiled_and_current():
        assert compiled_build.startswith(b"compiled")
    assert compiled_out.count(b"=03") > 1000  # format-3 records
    assert compiled_out.count(b"=-") > 10  # tombstones: an erased account, rewritten chunks
    assert compiled_out == pure_out


def test_a_lead_key_is_the_salted_blake2b_of_its_id() -> None:
    """The key in account state, the changelog and erasure requests: its bytes must
    never change between versions (state written by one is read by the next)."""
    for lead_id in ("hubspot-777", "L-1", "", "lead-ü"):
        expected = hashlib.blake2b(lead_id.encode(), digest_size=16, person=b"scorer-lead")
        assert lead_key(lead_id) == expected.digest()
    assert lead_key("L-1").hex() == "2654a13460b11569d899e4e29cdd15f2"  # as written since v1
