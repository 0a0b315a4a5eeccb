"""Account state in a changelog-backed table, written so that replays are exact.

One table holds, per account (key = domain):
- the account record: clock, per-ICP intent and alert state, the list of live
  id buckets, and `recent`: the ids applied since the record was last written
  (with their occurred_at);
- applied event ids in buckets by `occurred_at` (key = domain + bucket number),
  each a short JSON list. A bucket is deleted once all its events are older
  than the dedup horizon (see `scorer.scoring.state`).

The worker keeps accounts in memory and writes the changed ones back before
each offset commit (one record per account, not per event). A write-back goes
to the account's changelog partition in order: the record first, then its
buckets. A `kill -9` loses a suffix of that partition, so at worst a record
survives without some of the bucket writes that followed it; its `recent` ids
then still mark those events as applied, and loading the record puts them back
in their buckets. A record is only replaced by a later write-back, which comes
after the buckets of the earlier one. Writes are therefore never double-counted
nor lost on replay, in either delivery mode.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from scorer.scoring.state import AccountState

BUCKETS_PER_WINDOW = 168  # a 7-day window -> hourly buckets
RECENT_LIMIT = 32  # ids carried in the account record before the buckets are written
SEPARATOR = b"\x1f"


class Table(Protocol):
    """The key-value view of a task's store these functions read and write."""

    def get(self, key: bytes, default: bytes | None = None, /) -> bytes | None: ...

    def __setitem__(self, key: bytes, value: bytes, /) -> None: ...

    def pop(self, key: bytes, default: Any = None, /) -> Any: ...


def bucket_key(account: bytes, bucket: int) -> bytes:
    return account + SEPARATOR + str(bucket).encode()


class BucketedIds:
    """`SeenIds` over a table: ids grouped by occurred_at into time buckets.

    Loaded buckets are sets in memory (a hot account's bucket can hold
    thousands of ids); the expiry of old buckets is only looked at when the
    horizon passes the end of the oldest live one. Changes are kept in memory
    and written by `store_account` (record, then `flush`): the changed
    buckets, and deletions of dead ones.
    """

    __slots__ = (
        "_dead",
        "_dirty",
        "_expires",
        "_live",
        "_loaded",
        "account",
        "added",
        "table",
        "width",
    )

    def __init__(
        self,
        table: Table,
        account: bytes,
        live: list[int],
        width: float,
        recent: list[list[Any]] | None = None,
    ) -> None:
        self.table = table
        self.account = account
        self._live = set(live)
        self.width = width
        self._expires = (min(live) + 1) * width if live else float("inf")
        self._loaded: dict[int, set[str]] = {}
        self._dirty: set[int] = set()
        self._dead: set[int] = set()
        self.added: list[list[Any]] = []  # [event_id, occurred_at] since the last write
        if recent:
            self._restore(recent)

    def _restore(self, recent: list[list[Any]]) -> None:
        """`contains`, then `_put` for each id the record carries that its bucket
        lacks (its write was lost, or not yet due), written out: every account
        load runs this for up to RECENT_LIMIT ids."""
        width, live, loaded, added = self.width, self._live, self._loaded, self.added
        for entry in recent:
            event_id, at = entry
            number = int(at // width)
            ids = loaded.get(number)
            if ids is None:
                ids = self._bucket(number)
            if number in live:
                if event_id in ids:
                    continue
            else:
                self._open(number)
            ids.add(event_id)
            self._dirty.add(number)
            added.append(entry)

    @property
    def live(self) -> list[int]:
        return sorted(self._live)

    def _bucket(self, number: int) -> set[str]:
        ids = self._loaded.get(number)
        if ids is None:
            raw = self.table.get(bucket_key(self.account, number)) if number in self._live else None
            ids = set(orjson.loads(raw)) if raw else set()
            self._loaded[number] = ids
        return ids

    def _put(self, event_id: str, at: float) -> None:
        number = int(at // self.width)
        self._bucket(number).add(event_id)
        if number not in self._live:
            self._open(number)
        self._dirty.add(number)
        self.added.append([event_id, at])

    def _open(self, number: int) -> None:
        """A bucket becomes live; the oldest live one's end is when expiry is next due."""
        self._live.add(number)
        end = (number + 1) * self.width
        if end < self._expires:
            self._expires = end

    @property
    def changed(self) -> bool:
        return bool(self._dirty or self._dead)

    def contains(self, event_id: str, at: float) -> bool:
        number = int(at // self.width)
        return number in self._live and event_id in self._bucket(number)

    def add(self, event_id: str, at: float, horizon: float) -> None:
        self._put(event_id, at)
        if horizon >= self._expires:  # buckets whose every event is before the horizon go
            width = self.width
            for b in [b for b in self._live if (b + 1) * width <= horizon]:
                self._live.discard(b)
                self._loaded.pop(b, None)
                self._dirty.discard(b)
                self._dead.add(b)
            live = self._live
            self._expires = (min(live) + 1) * width if live else float("inf")

    def flush(self) -> None:
        """Write the changed buckets and delete dead ones (after the record)."""
        for number in self._dirty:
            self.table[bucket_key(self.account, number)] = orjson.dumps(list(self._loaded[number]))
        for number in self._dead:
            self.table.pop(bucket_key(self.account, number), None)
        self._dirty.clear()
        self._dead.clear()
        self.added.clear()


def load_account(table: Table, account: bytes, width: float) -> tuple[AccountState, BucketedIds]:
    """The account's state from the table (a fresh one if it has none)."""
    raw = table.get(account)
    if raw is None:
        ids = BucketedIds(table, account, [], width)
        return AccountState(seen=ids), ids
    doc: dict[str, Any] = orjson.loads(raw)
    ids = BucketedIds(table, account, doc["buckets"], width, doc.get("recent"))
    return AccountState.from_core(doc, ids), ids


def store_account(
    table: Table, account: bytes, state: AccountState, ids: BucketedIds, force: bool = False
) -> None:
    """Write the record, with the ids added since the buckets were last written
    (`recent`); the buckets themselves only once `recent` holds
    `RECENT_LIMIT` ids (or with `force`). Loading a record puts its recent ids
    back in their buckets, so they are remembered either way, and most
    accounts cost one changelog record per commit instead of two."""
    table[account] = orjson.dumps({**state.core(), "buckets": ids.live, "recent": ids.added})
    if force or len(ids.added) >= RECENT_LIMIT:
        ids.flush()
