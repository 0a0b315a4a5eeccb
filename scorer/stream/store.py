"""A task's account state: a key-value store behind its compacted changelog.

Three layers, as in Kafka Streams:
- the *backing* store (`scorer.stream.backing`) holds what the changelog
  holds up to `offset` (the next changelog offset to read);
- `pending`: writes since the last snapshot, and `inflight`: the writes of
  the commit under way. The commit sends them to the changelog inside the
  task's transaction; once it committed they wait in `unflushed`, and every
  `flush_interval` go to the backing store in slices (`flushing`), the new
  offset with the last. A crash or an aborted transaction leaves the backing
  store at a committed prefix of the changelog (and perhaps slices past it),
  and restore replays the rest;
- an LRU of decoded accounts (`AccountCache`), so memory stays bounded and
  hot accounts are not decoded per event.

A store belongs to one changelog: the first task to own a changelog partition
writes a marker record with a random id into it, and the store remembers the
id and the marker's offset. A store whose marker does not read back the same
(another cluster, a deleted and recreated topic) is discarded and rebuilt
from the changelog, never reused.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from itertools import islice
from typing import Any

from scorer.scoring.intake import AccountTable
from scorer.scoring.state import AccountState
from scorer.stream.account_codec import (
    SEPARATOR,
    bucket_key,
    chunk_key,
    load_account,
    store_account,
)
from scorer.stream.backing import Backing, is_account_key
from scorer.stream.id_window import ChunkedIds

MARKER_KEY = b"\x00scorer:changelog-id"
# Committed writes wait this long, at most, to start their way to the backing store.
FLUSH_INTERVAL = 5.0
# They go in slices, one a commit: RocksDB's write holds the GIL, so a whole
# flush stalls the event loop for as long as the write takes, and every task's
# flush tends to fall due at the same commit. A slice is at least FLUSH_SLICE
# keys and at least 1/FLUSH_SLICES of the flush, so a flush ends within
# FLUSH_SLICES commits whatever its size.
FLUSH_SLICE = 2000
FLUSH_SLICES = 8
_MISSING = object()


class AccountStore(AccountTable):
    """A task's accounts: the table `scorer.stream.account_codec` reads and writes,
    the decoded accounts (all of them, up to `cache_limit`; past it the least
    recently used are written back and dropped, and read again from the
    backing store when next needed) and the accounts changed since the last
    commit.

    Committed writes start for the backing store (RocksDB) every
    `flush_interval` seconds, a key written in several commits once, and
    reach it in slices, one at each commit after (`flush_step`), or one at
    each turn of an idle worker's loop. The store only has to hold a committed
    prefix of the changelog, which restore completes from the changelog's
    tail (a slice written before the flush's offset is applied again, to the
    same end), and every account it needs is already in memory."""

    def __init__(
        self,
        backing: Backing,
        window: float,
        bucket_width: float,
        cache_limit: int,
        flush_interval: float = FLUSH_INTERVAL,
    ) -> None:
        self.backing = backing
        self.window = window
        self.bucket_width = bucket_width  # of the format-1 records it may read
        self.cache_limit = cache_limit
        self.flush_interval = flush_interval
        self.pending: dict[bytes, bytes | None] = {}
        self.inflight: dict[bytes, bytes | None] = {}
        self.unflushed: dict[bytes, bytes | None] = {}  # committed, not yet in the backing
        self.unflushed_offset: int | None = None
        # A flush on its way, a slice at a time, and its changelog offset, stored
        # with its last slice.
        self.flushing: dict[bytes, bytes | None] = {}
        self.flushing_offset: int | None = None
        self.flush_slice = FLUSH_SLICE
        self.flushed_at = time.monotonic()
        self.cache: OrderedDict[bytes, tuple[AccountState, ChunkedIds]] = OrderedDict()
        self.dirty: set[bytes] = set()
        # Once every stored account is in memory (`preload`), an account not in
        # the cache has no state yet, except those dropped from it since
        # (`dropped`): a new account is then made without a read of the store.
        self.complete = False
        self.dropped: set[bytes] = set()
        self.swept_before = float("-inf")  # the clock the last expiry sweep cut at

    # -- the table interface of scorer.stream.account_codec ---------------------------

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        for layer in (self.pending, self.inflight, self.unflushed, self.flushing):
            value = layer.get(key, _MISSING)
            if value is not _MISSING:
                return value  # type: ignore[return-value]
        return self.backing.get(key)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.pending[key] = value

    def pop(self, key: bytes, default: Any = None) -> Any:
        self.pending[key] = None
        return default

    # -- accounts --------------------------------------------------------------

    def account(self, domain: str) -> AccountState:
        """The account's state (`scorer.scoring.intake.AccountTable`)."""
        return self.account_by_key(domain.encode())

    def account_by_key(self, key: bytes) -> AccountState:
        """The account's state, decoded once and kept while it is in use."""
        cache = self.cache
        entry = cache.get(key)
        if entry is not None:
            # Recency is kept (an LRU move per event) only once the cache is half full:
            # below that no account leaves it before as many new ones again come in,
            # and those go to its end. Accounts last used while it was emptier go first.
            if 2 * len(cache) >= self.cache_limit:
                cache.move_to_end(key)
            return entry[0]
        if self.complete and key not in self.dropped:
            ids = ChunkedIds(self.window)
            entry = cache[key] = (AccountState(seen=ids), ids)
        else:
            entry = cache[key] = load_account(self, key, self.window, self.bucket_width)
            self.dropped.discard(key)
        if len(cache) > self.cache_limit:
            old, (state, ids) = cache.popitem(last=False)
            self.complete = False  # past the limit: the store holds accounts memory does not
            if old in self.dirty:
                store_account(self, old, state, ids)
                self.dirty.discard(old)
        return entry[0]

    def preload(self) -> int:
        """Every account of the backing store decoded into memory (up to the
        limit), so that scoring never waits on a read; returns how many."""
        count = 0
        keys = self.backing.account_keys()
        for key in keys:
            if count >= self.cache_limit:
                break
            self.account_by_key(key)
            count += 1
        self.complete = (
            count == len(keys) and not self.pending and not self.unflushed and not self.flushing
        )
        return count

    def expire(self, before: float) -> int:
        """Housekeeping for account expiry: the accounts in memory whose clock is older than
        `before` leave it, and tombstones for their record and chunks go into the
        next commit. Returns how many."""
        self.swept_before = before
        gone = [key for key, (state, _) in self.cache.items()
                if state.clock is not None and state.clock < before]  # fmt: skip
        for key in gone:
            self._remove(key)
        return len(gone)

    def changed(self, key: bytes | str) -> None:
        """The account's state was changed in place (`scorer.scoring.erasure.ErasableTable`)."""
        self.dirty.add(key.encode() if isinstance(key, str) else key)

    # -- erasure (scorer.scoring.erasure.ErasableTable) ---------------------------

    def domains(self) -> list[str]:
        """Every account with state: in memory, written since the last flush, or stored."""
        keys = set(self.cache).union(self.backing.account_keys())
        for layer in (self.pending, self.inflight, self.unflushed, self.flushing):
            keys.update(key for key in layer if is_account_key(key))
        # Sorted: an erasure then visits (and evicts) accounts in the same order every
        # run, so its writes are the same bytes in both builds of the core.
        return [k.decode() for k in sorted(keys) if k in self.cache or self.get(k) is not None]

    def drop(self, domain: str) -> None:
        """The account's state removed: tombstones for its record and every chunk
        go into the next commit."""
        key = domain.encode()
        self.account_by_key(key)  # loaded, for the numbers of its chunks
        self._remove(key)

    def _remove(self, key: bytes) -> None:
        """An account in memory leaves it: tombstones for its record and every
        chunk go into the next commit."""
        _, ids = self.cache.pop(key)
        self.pending[key] = None
        for number in (*ids.chunks, *ids.dead):
            self.pending[chunk_key(key, number)] = None
        for bucket in ids.legacy:
            self.pending[bucket_key(key, bucket)] = None
        self.dirty.discard(key)

    def prepare(self) -> dict[bytes, bytes | None]:
        """Serialise the changed accounts and hand every write since the last
        call to the commit about to start (at most one is in flight)."""
        cache = self.cache
        for key in self.dirty:
            state, ids = cache[key]
            store_account(self, key, state, ids)
        self.dirty.clear()
        assert not self.inflight, "a task has one commit in flight at most"
        self.inflight, self.pending = self.pending, {}
        return self.inflight

    def committed(self, offset: int) -> None:
        """The changelog holds the in-flight writes up to `offset`: they join the
        next flush, and a slice of the flush under way is written."""
        self.unflushed.update(self.inflight)
        if self.unflushed_offset is None or offset > self.unflushed_offset:
            self.unflushed_offset = offset
        self.inflight = {}
        self.flush_step(False)

    def flush_step(self, idle: bool) -> bool:
        """One slice of the flush under way written to the backing store; a flush
        starts first when none is under way and the interval has passed, or
        the worker is `idle` (nothing to commit). False if nothing was to write."""
        if self.flushing_offset is None:  # no flush under way
            if self.unflushed_offset is None:
                return False
            if not idle and time.monotonic() - self.flushed_at < self.flush_interval:
                return False
            self.flushing, self.flushing_offset = self.unflushed, self.unflushed_offset
            self.unflushed, self.unflushed_offset = {}, None
            self.flush_slice = max(FLUSH_SLICE, -(-len(self.flushing) // FLUSH_SLICES))
        flushing = self.flushing
        if len(flushing) <= self.flush_slice:
            self._finish_flush()
        else:
            # Written before they leave `flushing`: a write that fails loses nothing.
            written = list(islice(flushing.items(), self.flush_slice))
            self.backing.write(written, None)
            for key, _ in written:
                del flushing[key]
        return True

    def _finish_flush(self) -> None:
        """What is left of the flush under way, with its offset (never behind
        what the backing store holds)."""
        offset = self.flushing_offset
        assert offset is not None
        self.backing.write(self.flushing.items(), max(offset, self.backing.offset))
        self.flushing, self.flushing_offset = {}, None
        self.flushed_at = time.monotonic()

    def flush(self) -> None:
        """Every committed write into the backing store, with its changelog offset."""
        if self.unflushed_offset is not None:
            self.flushing.update(self.unflushed)  # the later write of a key wins
            offset = self.flushing_offset
            if offset is None or self.unflushed_offset > offset:
                self.flushing_offset = self.unflushed_offset
            self.unflushed, self.unflushed_offset = {}, None
        if self.flushing_offset is not None:
            self._finish_flush()

    def discard(self) -> None:
        """Forget everything not committed (an aborted transaction): the accounts
        changed since the last commit are read again from what was committed."""
        for key in (*self.dirty, *self.pending, *self.inflight):
            account = key.split(SEPARATOR, 1)[0]
            self.cache.pop(account, None)
            self.dropped.add(account)  # read again, whatever memory held of it
        self.pending = {}
        self.inflight = {}
        self.dirty.clear()

    def apply_changelog(self, records: list[Any]) -> int:
        """Restore: changelog records into the backing store; returns how many
        were account records (the marker is kept aside)."""
        items = []
        for record in records:
            if record.key == MARKER_KEY:
                if record.value is not None:
                    self.backing.set_marker(record.value, record.offset)
                continue
            items.append((record.key, record.value))
        if records:
            self.backing.write(items, records[-1].offset + 1)
        return len(items)

    def close(self) -> None:
        """Committed writes flushed, the backing store closed."""
        self.flush()
        self.cache.clear()
        self.backing.close()
