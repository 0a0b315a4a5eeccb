"""A task's account store: pending writes, commits, rollbacks, the LRU, restores."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from scorer.scoring import SCORED, Engine
from scorer.stream.account_codec import chunk_key
from scorer.stream.backing import Backing, MemoryBacking, RocksBacking
from scorer.stream.store import FLUSH_SLICE, MARKER_KEY, AccountStore
from tests.conftest import commit_writes, make_event, make_icp

WEEK = 7 * 86400.0
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


def make_store(
    backing: Backing, cache_limit: int = 100, flush_interval: float = 0.0
) -> AccountStore:
    return AccountStore(backing, WEEK, 3600, cache_limit, flush_interval)


def test_commit_moves_pending_writes_into_the_backing_store() -> None:
    """Changed accounts are serialised at prepare, and land in the backing store
    (with the changelog offset) only when committed."""
    backing = MemoryBacking()
    store, engine = make_store(backing), Engine([make_icp()])
    score(store, engine, b"acme.example", "e-1")
    writes = store.prepare()
    assert b"acme.example" in writes and backing.get(b"acme.example") is None
    store.committed(17)
    assert backing.get(b"acme.example") == writes[b"acme.example"]
    assert backing.offset == 17 and not store.pending


def test_committed_writes_reach_the_backing_store_at_most_every_interval() -> None:
    """Between flushes the store reads committed writes from memory; a flush (at
    the interval, or on close) writes each key once, with the last commit's
    changelog offset."""
    backing = MemoryBacking()
    store, engine = make_store(backing, flush_interval=3600), Engine([make_icp()])
    for offset, event_id in ((5, "e-1"), (9, "e-2")):
        score(store, engine, b"acme.example", event_id)
        store.prepare()
        store.committed(offset)
    assert backing.get(b"acme.example") is None and backing.offset == 0
    assert store.get(b"acme.example") is not None
    store.flush()
    assert backing.offset == 9 and backing.get(b"acme.example") == store.get(b"acme.example")


def test_a_large_flush_reaches_the_backing_store_a_slice_a_commit() -> None:
    """RocksDB's write holds the event loop: a flush of more than FLUSH_SLICE keys
    goes a slice a commit, every key read right meanwhile, and the changelog
    offset is stored with the last slice only."""
    backing = MemoryBacking()
    store = make_store(backing)
    count = FLUSH_SLICE * 3 + 5
    writes: dict[bytes, bytes | None] = {f"a{i}.example".encode(): b"v%d" % i for i in range(count)}
    commit_writes(store, writes, 10)
    assert len(backing.data) == FLUSH_SLICE and backing.offset == 0
    assert all(store.get(key) == value for key, value in writes.items())
    commit_writes(store, {b"a0.example": b"newer", b"a1.example": None}, 12)
    assert len(backing.data) == FLUSH_SLICE * 2 and backing.offset == 0
    # a0 and a1 went with the first slice; the later write and the tombstone read first.
    assert backing.get(b"a1.example") == b"v1"
    assert store.get(b"a0.example") == b"newer" and store.get(b"a1.example") is None
    last = f"a{count - 1}.example"
    assert backing.get(last.encode()) is None and last in store.domains()
    commit_writes(store, {}, 12)
    commit_writes(store, {}, 12)  # the first flush's last slice, with its offset
    assert backing.offset == 10 and backing.get(b"a0.example") == b"v0"
    commit_writes(store, {}, 12)  # the next flush: the writes committed at 12
    assert backing.offset == 12 and not store.flushing and not store.unflushed
    assert backing.get(b"a0.example") == b"newer" and backing.get(b"a1.example") is None
    assert len(backing.data) == count - 1


class FailingOnce(MemoryBacking):
    """A backing store whose next write fails (a full disk, an I/O error)."""

    fail = True

    def write(self, items, offset):  # type: ignore[no-untyped-def]
        if self.fail:
            self.fail = False
            raise OSError("no space left on device")
        super().write(items, offset)


def test_a_slice_that_fails_to_write_is_kept_for_the_next() -> None:
    """A slice leaves the flush only once written: after a failed write, the flush
    on close writes every key, with the flush's offset."""
    backing = FailingOnce()
    store = make_store(backing)
    writes: dict[bytes, bytes | None] = {
        f"a{i}.example".encode(): b"v" for i in range(FLUSH_SLICE * 2 + 1)
    }
    with pytest.raises(OSError, match="no space"):
        commit_writes(store, writes, 8)
    assert not backing.data and len(store.flushing) == len(writes)
    store.flush()  # as closing the store does
    assert backing.data == writes and backing.offset == 8


def test_closing_mid_flush_after_a_commit_without_writes_keeps_the_offset() -> None:
    """A commit that wrote no changelog record reports the stored offset, behind
    the flush under way; the flush on close still stores the flush's own."""
    backing = MemoryBacking()
    store = make_store(backing)
    commit_writes(store, {f"a{i}.example".encode(): b"v" for i in range(FLUSH_SLICE * 3)}, 10)
    store.flush_interval = 3600
    store.prepare()
    store.committed(backing.offset)  # nothing written: the offset the backing holds (0)
    store.flush()
    assert backing.offset == 10 and len(backing.data) == FLUSH_SLICE * 3


def test_an_idle_store_flushes_before_the_interval() -> None:
    """With nothing to commit the worker writes what is committed at once (a slice
    a call), so the next events do not find a flush due."""
    backing = MemoryBacking()
    store = make_store(backing, flush_interval=3600)
    commit_writes(store, {b"a.example": b"1"}, 3)
    assert backing.get(b"a.example") is None
    assert store.flush_step(True) and backing.get(b"a.example") == b"1" and backing.offset == 3
    assert not store.flush_step(True)


def test_flush_writes_everything_the_later_write_winning() -> None:
    """On close, the flush under way and the writes committed since go in one batch."""
    backing = MemoryBacking()
    store = make_store(backing)
    commit_writes(store, {f"a{i}.example".encode(): b"old" for i in range(FLUSH_SLICE * 3)}, 5)
    store.flush_interval = 3600  # the next commit joins no flush
    commit_writes(store, {b"a0.example": b"new", b"b.example": b"b"}, 7)
    assert store.flushing and store.unflushed
    store.flush()
    assert backing.offset == 7 and not store.flushing and not store.unflushed
    assert backing.get(b"a0.example") == b"new" and backing.get(b"b.example") == b"b"
    assert len(backing.data) == FLUSH_SLICE * 3 + 1


def test_a_restore_after_a_partial_flush_ends_where_the_changelog_does(tmp_path: Path) -> None:
    """A worker killed mid-flush leaves RocksDB with slices newer than its stored
    offset; the restore applies the changelog from that offset again, in order,
    and every key ends at its latest value."""
    changelog: list[Record] = []
    path = tmp_path / "app" / "changelog" / "0"
    store = make_store(RocksBacking(path))
    commits = [
        {f"a{i}.example".encode(): b"first" for i in range(FLUSH_SLICE * 3)},
        {b"a0.example": b"second", b"a1.example": None, b"z.example": b"z"},
    ]
    for writes in commits:
        for key, value in writes.items():
            changelog.append(Record(key, value, len(changelog)))
        commit_writes(store, writes, len(changelog))
    backing = store.backing
    assert backing.offset == 0 and len(backing.account_keys()) == FLUSH_SLICE * 2
    backing.close()  # killed: no flush, no close of the store
    reopened = RocksBacking(path)
    restored = make_store(reopened)
    restored.apply_changelog(changelog[reopened.offset :])
    latest = {record.key: record.value for record in changelog}
    assert all(reopened.get(key) == value for key, value in latest.items())
    assert reopened.offset == len(changelog)
    reopened.close()


def test_discard_forgets_uncommitted_state() -> None:
    """After a rollback, an account is as the last commit left it: a replayed event
    is applied again, not taken for a duplicate."""
    store, engine = make_store(MemoryBacking()), Engine([make_icp()])
    assert score(store, engine, b"acme.example", "e-1") == SCORED
    store.prepare()
    store.discard()
    assert score(store, engine, b"acme.example", "e-1") == SCORED


def test_lru_eviction_keeps_changes() -> None:
    """An account evicted from the decoded cache before a commit keeps its change:
    its next load sees the event as applied."""
    store, engine = make_store(MemoryBacking(), cache_limit=2), Engine([make_icp()])
    for i, domain in enumerate([b"a.example", b"b.example", b"c.example"]):
        score(store, engine, domain, f"e-{i}")
    assert b"a.example" not in store.cache and len(store.cache) == 2
    assert score(store, engine, b"a.example", "e-0") == "duplicate"


def test_recency_is_kept_once_the_cache_is_half_full() -> None:
    """Past half its limit the cache is an LRU: a used account outlives those used
    before it. Below half, use does not reorder it (no account can leave before it
    fills), so the accounts used only then go first, in the order they came."""
    store, engine = make_store(MemoryBacking(), cache_limit=4), Engine([make_icp()])
    score(store, engine, b"a.example", "e-1")
    score(store, engine, b"a.example", "e-2")  # one account cached: not moved
    for i, domain in enumerate([b"b.example", b"c.example"]):
        score(store, engine, domain, f"e-{i + 3}")
    assert list(store.cache) == [b"a.example", b"b.example", b"c.example"]
    score(store, engine, b"a.example", "e-5")  # three of four: moved to the end
    assert list(store.cache) == [b"b.example", b"c.example", b"a.example"]
    for i, domain in enumerate([b"d.example", b"e.example"]):
        score(store, engine, domain, f"e-{i + 6}")
    assert b"b.example" not in store.cache and b"a.example" in store.cache
    assert score(store, engine, b"b.example", "e-3") == "duplicate"  # its change kept


def test_restore_applies_records_tombstones_and_the_marker(tmp_path: Path) -> None:
    """Changelog records (and deletes) rebuild a RocksDB store; the marker is kept
    aside, and the offset and marker survive a reopen."""
    path = tmp_path / "app" / "changelog" / "0"
    store = make_store(RocksBacking(path))
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


def test_discard_keeps_the_accounts_no_one_changed() -> None:
    """A rollback drops only the accounts changed since the last commit from memory."""
    store, engine = make_store(MemoryBacking()), Engine([make_icp()])
    score(store, engine, b"a.example", "e-1")
    store.prepare()
    store.committed(1)
    score(store, engine, b"b.example", "e-2")
    store.discard()
    assert b"a.example" in store.cache and b"b.example" not in store.cache


def test_preload_decodes_every_stored_account(tmp_path: Path) -> None:
    """After a restore every account of the backing store is in memory (not its
    chunks, not the store's own keys), up to the limit."""
    backing = RocksBacking(tmp_path / "store")
    store, engine = make_store(backing), Engine([make_icp()])
    for i in range(40):  # chunks too: an account with more ids than RECENT_LIMIT
        score(store, engine, b"a.example", f"a-{i}")
    score(store, engine, b"b.example", "b-1")
    store.prepare()
    store.committed(3)
    backing.set_marker(b"m", 0)
    store.close()
    fresh = make_store(RocksBacking(tmp_path / "store"))
    assert fresh.preload() == 2 and set(fresh.cache) == {b"a.example", b"b.example"}
    assert score(fresh, engine, b"a.example", "a-3") == "duplicate"
    fresh.close()


class CountingBacking(MemoryBacking):
    """A memory backing that counts its reads."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get(self, key: bytes) -> bytes | None:
        self.reads += 1
        return super().get(key)


def test_with_every_account_in_memory_a_new_account_reads_nothing() -> None:
    """After a complete preload a new account is made without a read of the store; an
    account dropped by a rollback is read again, and so is everything once the
    limit has pushed accounts out."""
    backing = CountingBacking()
    store, engine = make_store(backing, cache_limit=3), Engine([make_icp()])
    store.preload()
    score(store, engine, b"a.example", "e-1")
    score(store, engine, b"b.example", "e-2")
    assert backing.reads == 0
    store.prepare()
    store.committed(2)
    score(store, engine, b"a.example", "e-3")
    store.discard()  # a.example changed since the commit: dropped, read again
    assert score(store, engine, b"a.example", "e-1") == "duplicate" and backing.reads >= 1
    for name in (b"c.example", b"d.example"):  # past the limit
        score(store, engine, name, "e-4")
    reads = backing.reads
    score(store, engine, b"e.example", "e-5")
    assert backing.reads > reads


def test_expired_accounts_leave_memory_with_tombstones_for_all_their_keys() -> None:
    """Account expiry's housekeeping: an idle account is dropped from memory and its
    record and every chunk get a tombstone in the next commit; others stay."""
    store, engine = make_store(MemoryBacking()), Engine([make_icp()])
    for i in range(40):  # a chunk, then recent ids
        score(store, engine, b"old.example", f"o-{i}")
    score(store, engine, b"new.example", "n-1")
    store.prepare()
    store.committed(1)
    old_clock = store.cache[b"old.example"][0].clock
    assert store.expire(old_clock - 1) == 0
    assert store.expire(old_clock + 1) == 2  # both accounts' events share a time here
    assert not store.cache
    writes = store.prepare()
    assert writes[b"old.example"] is None and writes[chunk_key(b"old.example", 0)] is None
    assert writes[b"new.example"] is None
    store.committed(2)
    assert store.get(b"old.example") is None and store.get(chunk_key(b"old.example", 0)) is None
