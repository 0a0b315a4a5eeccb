"""The table-backed account state: write order, torn writes, bucket pruning."""

from __future__ import annotations

from scorer.scoring import DUPLICATE, SCORED, Engine
from scorer.stream.state import bucket_key, load_account, repair, store_account
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


def apply(table: RecordingTable, engine: Engine, event_id: str, at: str) -> str:
    state, ids = load_account(table, KEY, width=3600)
    outcome, _ = engine.apply(state, make_event(event_id, occurred_at=at), ACME)
    if outcome == SCORED:
        store_account(table, KEY, state, ids)
    return outcome


def test_record_is_written_before_its_id_bucket() -> None:
    """Each event writes the account record first, then the bucket holding its id."""
    table, engine = RecordingTable(), Engine([make_icp()])
    apply(table, engine, "a", "2026-11-20T10:00:00Z")
    assert table.log[0] == KEY and table.log[1].startswith(KEY + b"\x1f")


def test_torn_write_is_still_recognised_and_repaired() -> None:
    """A record whose bucket write was lost still marks its event applied; repair restores it."""
    table, engine = RecordingTable(), Engine([make_icp()])
    apply(table, engine, "a", "2026-11-20T10:00:00Z")
    record_only = RecordingTable()
    record_only[KEY] = table[KEY]  # the crash lost the bucket write
    state, ids = load_account(record_only, KEY, width=3600)
    event = make_event("a", occurred_at="2026-11-20T10:00:00Z")
    assert engine.apply(state, event, ACME)[0] == DUPLICATE
    assert repair(state, ids, "a", event.at, engine.dedup_window)
    store_account(record_only, KEY, state, ids)
    assert dict(record_only) == dict(table)


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
