"""The table-backed account state: write order, torn writes, bucket pruning."""

from __future__ import annotations

import orjson

from scorer.scoring import DUPLICATE, SCORED, Engine
from scorer.stream.account_codec import RECENT_LIMIT, bucket_key, load_account, store_account
from tests.conftest import make_event, make_icp

ACME = {"domain": "acme.example", "industry": "saas", "employees": 100, "country": "US"}
KEY = b"acme.example"


class RecordingTable(dict):  # type: ignore[type-arg]
    """A dict that remembers the order of writes, like a changelog partition."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[bytes] = []

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.log.append(key)
        super().__setitem__(key, value)


def apply(table: RecordingTable, engine: Engine, event_id: str, at: str, force: bool = True) -> str:
    state, ids = load_account(table, KEY, width=3600)
    outcome, _ = engine.apply(state, make_event(event_id, occurred_at=at), ACME)
    if outcome == SCORED:
        store_account(table, KEY, state, ids, force=force)
    return outcome


def test_buckets_wait_until_the_record_carries_enough_ids() -> None:
    """Below RECENT_LIMIT new ids only the account record is written; its `recent`
    ids are still recognised as applied after a reload, and the buckets are
    written once the limit is reached."""
    table, engine = RecordingTable(), Engine([make_icp()])
    for i in range(RECENT_LIMIT - 1):
        apply(table, engine, f"e-{i}", f"2026-11-20T10:{i:02d}:00Z", force=False)
    assert set(table.log) == {KEY}
    assert apply(table, engine, "e-0", "2026-11-20T10:00:00Z", force=False) == DUPLICATE
    apply(table, engine, "last", "2026-11-20T10:59:00Z", force=False)
    assert any(key != KEY for key in table)  # the limit reached: buckets written
    apply(table, engine, "after", "2026-11-20T11:00:00Z", force=False)
    assert len(orjson.loads(table[KEY])["recent"]) == 1  # only the id since the buckets


def test_record_is_written_before_its_id_bucket() -> None:
    """Each event writes the account record first, then the bucket holding its id."""
    table, engine = RecordingTable(), Engine([make_icp()])
    apply(table, engine, "a", "2026-11-20T10:00:00Z")
    assert table.log[0] == KEY and table.log[1].startswith(KEY + b"\x1f")


def test_torn_write_back_is_still_recognised_and_repaired() -> None:
    """Several events written back at once; the crash keeps the record and loses the
    bucket writes after it. The record's `recent` ids still mark every one of them
    applied, and loading puts them back in their buckets."""
    table, engine = RecordingTable(), Engine([make_icp()])
    state, ids = load_account(table, KEY, width=3600)
    for event_id, at in (("a", "2026-11-20T10:00:00Z"), ("b", "2026-11-20T11:30:00Z")):
        assert engine.apply(state, make_event(event_id, occurred_at=at), ACME)[0] == SCORED
    store_account(table, KEY, state, ids, force=True)
    assert table.log[0] == KEY and len(table.log) == 3  # record, then two buckets
    record_only = RecordingTable()
    record_only[KEY] = table[KEY]  # the crash lost both bucket writes
    state, ids = load_account(record_only, KEY, width=3600)
    assert ids.changed
    for event_id, at in (("a", "2026-11-20T10:00:00Z"), ("b", "2026-11-20T11:30:00Z")):
        assert engine.apply(state, make_event(event_id, occurred_at=at), ACME)[0] == DUPLICATE
    store_account(record_only, KEY, state, ids, force=True)
    for key in table:
        if key != KEY:
            assert record_only[key] == table[key]  # the buckets are back
    state, ids = load_account(record_only, KEY, width=3600)
    assert not ids.changed  # nothing left to repair


def test_a_write_back_without_changes_writes_only_the_record() -> None:
    table, engine = RecordingTable(), Engine([make_icp()])
    apply(table, engine, "a", "2026-11-20T10:00:00Z")
    state, ids = load_account(table, KEY, width=3600)
    assert not ids.changed and ids.added == []
    store_account(table, KEY, state, ids)
    assert table.log[-1] == KEY


def test_old_buckets_are_deleted_past_the_horizon() -> None:
    """Buckets whose events are all older than clock - window leave the table."""
    table, engine = RecordingTable(), Engine([make_icp()], dedup_window=2 * 3600)
    apply(table, engine, "a", "2026-11-20T10:00:00Z")
    first_bucket = next(k for k in table if k != KEY)
    apply(table, engine, "b", "2026-11-20T13:30:00Z")
    assert first_bucket not in table
    assert apply(table, engine, "a", "2026-11-20T10:00:00Z") == "expired"
    assert apply(table, engine, "b", "2026-11-20T13:30:00Z") == DUPLICATE
    assert bucket_key(KEY, int(make_event(occurred_at="2026-11-20T13:30:00Z").at // 3600)) in table


def test_loading_puts_back_only_the_recent_ids_their_buckets_lack() -> None:
    """A record whose `recent` ids are partly in their stored buckets (written) and
    partly not (a lost or not yet due write): after a load every id is recognised,
    and only the missing ones are marked for the next write, in their buckets."""
    table: dict[bytes, bytes] = {}
    hour = 3600.0
    stored = ["a", "b"]  # in bucket 10, as written
    table[bucket_key(KEY, 10)] = orjson.dumps(stored)
    recent = [["a", 10 * hour + 1], ["c", 10 * hour + 2], ["b", 10 * hour + 3], ["d", 12 * hour]]
    record = {"clock": 12 * hour, "last": "d", "icps": {}, "buckets": [10], "recent": recent}
    table[KEY] = orjson.dumps(record)
    _, ids = load_account(table, KEY, width=hour)
    assert all(ids.contains(event_id, at) for event_id, at in recent)
    assert not ids.contains("e", 10 * hour + 4)
    assert ids.added == [["c", 10 * hour + 2], ["d", 12 * hour]]
    assert ids.live == [10, 12]
    ids.flush()
    assert set(orjson.loads(table[bucket_key(KEY, 10)])) == {"a", "b", "c"}
    assert orjson.loads(table[bucket_key(KEY, 12)]) == ["d"]
