"""Account state in a changelog-backed table, written so that replays are exact.

One table holds, per account (key = domain):
- the account record: clock, last applied event id, per-ICP intent and alert
  state, and the list of live id buckets (small, rewritten per event);
- applied event ids in buckets by `occurred_at` (key = domain + bucket number),
  each a short JSON list. A bucket is deleted once all its events are older
  than the dedup horizon (see `scorer.scoring.state`).

Both writes of an event go to the same changelog partition, in order: the
record first, then its bucket. A `kill -9` loses a suffix of that partition,
so at worst the record of the account's last event survives without its
bucket entry; the record's `last` id then still marks the event as applied
(and `repair` puts the id back). Writes are therefore never double-counted
nor lost on replay: the idempotence faust's plain tables do not give.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import orjson

from scorer.scoring.state import AccountState

BUCKETS_PER_WINDOW = 168  # a 7-day window -> hourly buckets
SEPARATOR = b"\x1f"


def bucket_key(account: bytes, bucket: int) -> bytes:
    return account + SEPARATOR + str(bucket).encode()


class BucketedIds:
    """`SeenIds` over a table: ids grouped by occurred_at into time buckets.

    Writes are staged by `add` and applied by `flush`, after the account
    record has been written.
    """

    __slots__ = ("_loaded", "_pending", "account", "live", "table", "width")

    def __init__(
        self, table: MutableMapping[bytes, bytes], account: bytes, live: list[int], width: float
    ) -> None:
        self.table = table
        self.account = account
        self.live = live
        self.width = width
        self._loaded: dict[int, list[str]] = {}
        self._pending: tuple[int, list[int]] | None = None

    def _bucket(self, number: int) -> list[str]:
        ids = self._loaded.get(number)
        if ids is None:
            raw = self.table.get(bucket_key(self.account, number)) if number in self.live else None
            ids = orjson.loads(raw) if raw else []
            self._loaded[number] = ids
        return ids

    def contains(self, event_id: str, at: float) -> bool:
        number = int(at // self.width)
        return number in self.live and event_id in self._bucket(number)

    def add(self, event_id: str, at: float, horizon: float) -> None:
        number = int(at // self.width)
        self._bucket(number).append(event_id)
        if number not in self.live:
            self.live.append(number)
        # Buckets whose every event is before the horizon can go.
        width = self.width
        dead = [b for b in self.live if (b + 1) * width <= horizon]
        for b in dead:
            self.live.remove(b)
        self._pending = (number, dead)

    def flush(self) -> None:
        """Write the staged bucket and delete dead ones (after the record)."""
        if self._pending is None:
            return
        number, dead = self._pending
        self._pending = None
        if number in self.live:
            self.table[bucket_key(self.account, number)] = orjson.dumps(self._loaded[number])
        for b in dead:
            self.table.pop(bucket_key(self.account, b), None)


def load_account(
    table: MutableMapping[bytes, bytes], account: bytes, width: float
) -> tuple[AccountState, BucketedIds]:
    """The account's state from the table (a fresh one if it has none)."""
    raw = table.get(account)
    if raw is None:
        ids = BucketedIds(table, account, [], width)
        return AccountState(seen=ids), ids
    doc: dict[str, Any] = orjson.loads(raw)
    ids = BucketedIds(table, account, doc["buckets"], width)
    return AccountState.from_core(doc, ids), ids


def store_account(
    table: MutableMapping[bytes, bytes], account: bytes, state: AccountState, ids: BucketedIds
) -> None:
    """Write the record, then the id bucket: the order replays rely on."""
    table[account] = orjson.dumps({**state.core(), "buckets": ids.live})
    ids.flush()


def repair(state: AccountState, ids: BucketedIds, event_id: str, at: float, window: float) -> bool:
    """Put back the id of a record whose bucket write was lost; True if it did."""
    if state.last_event_id != event_id or ids.contains(event_id, at):
        return False
    assert state.clock is not None
    ids.add(event_id, at, state.clock - window)
    return True
