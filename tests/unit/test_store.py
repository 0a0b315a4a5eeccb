"""A task's account store: pending writes, commits, rollbacks, the LRU, restores."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scorer.scoring import SCORED, Engine
from scorer.stream.store import MARKER_KEY, AccountStore, MemoryBacking, RocksBacking
from tests.conftest import make_event, make_icp

ACME = {"domain": "acme.example", "industry": "saas", "employees": 100, "country": "US"}


@dataclass
class Record:
    """The fields of a changelog record the store reads."""

    key: bytes
    value: bytes | None
    offset: int


def score(store: AccountStore, engine: Engine, key: bytes, event_id: str) -> str:
    state = store.account_by_key(key)
    outcome, _ = engine.apply(state, make_event(event_id, domain=key.decode()), ACME)
    if outcome == SCORED:
        store.changed(key)
    return outcome


def test_commit_moves_pending_writes_into_the_backing_store() -> None:
    """Changed accounts are serialised at prepare, and land in the backing store
    (with the changelog offset) only when committed."""
    backing = MemoryBacking()
    store, engine = AccountStore(backing, 3600, 100), Engine([make_icp()])
    score(store, engine, b"acme.example", "e-1")
    writes = store.prepare()
    assert b"acme.example" in writes and backing.get(b"acme.example") is None
    store.committed(17)
    assert backing.get(b"acme.example") == writes[b"acme.example"]
    assert backing.offset == 17 and not store.pending


def test_discard_forgets_uncommitted_state() -> None:
    """After a rollback, an account is as the last commit left it: a replayed event
    is applied again, not taken for a duplicate."""
    store, engine = AccountStore(MemoryBacking(), 3600, 100), Engine([make_icp()])
    assert score(store, engine, b"acme.example", "e-1") == SCORED
    store.prepare()
    store.discard()
    assert score(store, engine, b"acme.example", "e-1") == SCORED


def test_lru_eviction_keeps_changes() -> None:
    """An account evicted from the decoded cache before a commit keeps its change:
    its next load sees the event as applied."""
    store, engine = AccountStore(MemoryBacking(), 3600, cache_limit=2), Engine([make_icp()])
    for i, domain in enumerate([b"a.example", b"b.example", b"c.example"]):
        score(store, engine, domain, f"e-{i}")
    assert b"a.example" not in store.cache and len(store.cache) == 2
    assert score(store, engine, b"a.example", "e-0") == "duplicate"


def test_restore_applies_records_tombstones_and_the_marker(tmp_path: Path) -> None:
    """Changelog records (and deletes) rebuild a RocksDB store; the marker is kept
    aside, and the offset and marker survive a reopen."""
    path = tmp_path / "app" / "changelog" / "0"
    store = AccountStore(RocksBacking(path), 3600, 100)
    store.apply_changelog(
        [
            Record(MARKER_KEY, b"abc", 0),
            Record(b"a.example", b'{"x":1}', 1),
            Record(b"b.example", b'{"x":2}', 2),
            Record(b"a.example", None, 3),
        ]
    )
    store.close()
    reopened = RocksBacking(path)
    assert reopened.get(b"a.example") is None and reopened.get(b"b.example") == b'{"x":2}'
    assert (reopened.offset, reopened.marker, reopened.marker_offset) == (4, b"abc", 0)
    reopened.wipe()
    assert (reopened.offset, reopened.marker, reopened.get(b"b.example")) == (0, None, None)
    reopened.close()
