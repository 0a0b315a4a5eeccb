"""Account state as changelog records: format 2, write order, torn writes,
chunk expiry, and reading format 1."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scorer.scoring import DUPLICATE, SCORED, Engine
from scorer.scoring.state import AccountState, IcpState
from scorer.stream.account_codec import (
    FORMAT,
    SEPARATOR,
    UnknownFormat,
    bucket_key,
    chunk_key,
    decode_record,
    encode_record,
    load_account,
    read_table,
    store_account,
)
from scorer.stream.id_window import RECENT_LIMIT, ChunkedIds, encode_ids
from tests.conftest import make_event, make_icp

ACME = {"domain": "acme.example", "industry": "saas", "employees": 100, "country": "US"}
KEY = b"acme.example"
WEEK = 7 * 86400.0
HOUR = 3600.0


class RecordingTable(dict):  # type: ignore[type-arg]
    """A dict that remembers the order of writes and deletes, like a changelog partition."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[bytes, bool]] = []  # (key, deleted)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.log.append((key, False))
        super().__setitem__(key, value)

    def pop(self, key: bytes, default: object = None) -> object:
        self.log.append((key, True))
        return super().pop(key, default)


def at(minute: int) -> str:
    return f"2026-11-20T{10 + minute // 60:02d}:{minute % 60:02d}:00Z"


def apply(table: RecordingTable, engine: Engine, event_id: str, when: str) -> str:
    """Load, apply one event, write back: one commit of one event."""
    state, ids = load_account(table, KEY, engine.dedup_window, HOUR)
    outcome, _ = engine.apply(state, make_event(event_id, occurred_at=when), ACME)
    if outcome == SCORED:
        store_account(table, KEY, state, ids)
    return outcome


def test_every_value_starts_with_its_format_byte() -> None:
    """Records and chunks begin with FORMAT; a value in another format is refused."""
    table, engine = RecordingTable(), Engine([make_icp()])
    for i in range(RECENT_LIMIT + 1):
        apply(table, engine, f"e-{i}", at(i))
    assert {value[0] for value in table.values()} == {FORMAT}
    with pytest.raises(UnknownFormat):
        decode_record(b"\x07" + table[KEY][1:], WEEK)


def test_ids_stay_in_the_record_until_a_chunk_fills() -> None:
    """Below RECENT_LIMIT new ids only the record is written, and they are still
    recognised after a reload; at the limit one chunk is written, once."""
    table, engine = RecordingTable(), Engine([make_icp()])
    for i in range(RECENT_LIMIT - 1):
        apply(table, engine, f"e-{i}", at(i))
    assert set(table) == {KEY}
    assert apply(table, engine, "e-0", at(0)) == DUPLICATE
    apply(table, engine, "full", at(RECENT_LIMIT))
    assert chunk_key(KEY, 0) in table
    apply(table, engine, "after", at(RECENT_LIMIT + 1))
    assert [key for key, _ in table.log].count(chunk_key(KEY, 0)) == 1  # never rewritten
    _, ids = load_account(table, KEY, WEEK, HOUR)
    assert ids.recent_count == 1 and len(ids.ids) == RECENT_LIMIT + 1


def test_a_chunk_is_written_before_the_record_that_lists_it() -> None:
    """The write order that makes a torn write-back safe: chunk, then record."""
    table, engine = RecordingTable(), Engine([make_icp()])
    for i in range(RECENT_LIMIT):
        apply(table, engine, f"e-{i}", at(i))
    last = [key for key, _ in table.log[-2:]]
    assert last == [chunk_key(KEY, 0), KEY]


def test_a_torn_write_back_loses_nothing_it_has_counted() -> None:
    """The chunk landed, the record after it did not: the old record stands, its
    ids are all still recognised, and the unlisted chunk is written again later."""
    table, engine = RecordingTable(), Engine([make_icp()])
    for i in range(RECENT_LIMIT - 1):
        apply(table, engine, f"e-{i}", at(i))
    before = table[KEY]
    apply(table, engine, "last", at(RECENT_LIMIT))
    table[KEY] = before  # the record's write was lost
    for i in range(RECENT_LIMIT - 1):
        assert apply(table, engine, f"e-{i}", at(i)) == DUPLICATE
    assert apply(table, engine, "last", at(RECENT_LIMIT)) == SCORED  # replayed, applied once
    state, ids = load_account(table, KEY, WEEK, HOUR)
    assert "last" in ids.ids and state.last_event_id == "last"


def test_chunks_past_the_horizon_are_deleted_before_the_record() -> None:
    """A chunk whose every id is older than clock - window leaves the table (its
    delete comes before the record), and its events are then expired."""
    table, engine = RecordingTable(), Engine([make_icp()], dedup_window=2 * HOUR)
    for i in range(RECENT_LIMIT):
        apply(table, engine, f"old-{i}", at(i))
    assert chunk_key(KEY, 0) in table
    later = "2026-11-20T14:00:00Z"
    for i in range(RECENT_LIMIT):  # the sweep waits for a slack past the horizon
        apply(table, engine, f"new-{i}", later.replace(":00:00", f":{i:02d}:00"))
    assert chunk_key(KEY, 0) not in table
    deleted = table.log.index((chunk_key(KEY, 0), True))
    assert table.log[deleted + 1] == (KEY, False)
    assert apply(table, engine, "old-0", at(0)) == "expired"


def test_a_write_back_without_new_ids_writes_only_the_record() -> None:
    """Reloaded and written back unchanged: one record, no chunk, no delete."""
    table, engine = RecordingTable(), Engine([make_icp()])
    apply(table, engine, "a", at(0))
    state, ids = load_account(table, KEY, WEEK, HOUR)
    table.log.clear()
    store_account(table, KEY, state, ids)
    assert table.log == [(KEY, False)]


def test_format_1_is_read_and_rewritten_as_format_2() -> None:
    """A JSON record with hourly id buckets (format 1) loads with every id and its
    state; the next write-back writes the ids as chunks, then the record, then
    deletes the old buckets."""
    table = RecordingTable()
    table[bucket_key(KEY, 10)] = orjson.dumps(["a", "b"])
    recent = [["c", 10 * HOUR + 2], ["d", 12 * HOUR]]
    record = {
        "clock": 12 * HOUR,
        "last": "d",
        "icps": {"saas": [12.5, 12 * HOUR, 11 * HOUR, "B"]},
        "buckets": [10],
        "recent": recent,
    }
    table[KEY] = orjson.dumps(record)
    state, ids = load_account(table, KEY, WEEK, HOUR)
    assert set(ids.ids) == {"a", "b", "c", "d"}
    assert state.core() == {
        "clock": 12 * HOUR,
        "last": "d",
        "icps": {"saas": [12.5, 12 * HOUR, 11 * HOUR, "B"]},
    }
    table.log.clear()
    store_account(table, KEY, state, ids)
    assert table.log == [(KEY, False), (bucket_key(KEY, 10), True)]
    state2, ids2 = load_account(table, KEY, WEEK, HOUR)
    assert set(ids2.ids) == {"a", "b", "c", "d"} and state2.core() == state.core()
    assert table[KEY][0] == FORMAT


@settings(max_examples=200, deadline=None)
@given(
    clock=st.one_of(st.none(), st.floats(0, 2e9)),
    last=st.one_of(st.none(), st.text(max_size=40)),
    icps=st.dictionaries(
        st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True),
        st.tuples(
            st.floats(0, 1e6),
            st.one_of(st.none(), st.floats(0, 2e9)),
            st.one_of(st.none(), st.floats(0, 2e9)),
            st.one_of(st.none(), st.sampled_from(["A", "B", "tier-ü"])),
        ),
        max_size=4,
    ),
    recent=st.lists(st.tuples(st.text(min_size=1, max_size=30), st.floats(0, 2e9)), max_size=40),
)
def test_a_record_decodes_to_what_was_encoded(
    clock: float | None,
    last: str | None,
    icps: dict[str, tuple[float, float | None, float | None, str | None]],
    recent: list[tuple[str, float]],
) -> None:
    """Format 2 round-trips every field of the state, unicode and missing values included."""
    ids = ChunkedIds(WEEK)
    ids.recent, ids.recent_count = bytearray(encode_ids(recent)), len(recent)
    ids.chunks = {3: 1.5, 9: 2.5}
    ids.next_chunk = 10
    state = AccountState(clock, last, None, ids)
    for icp_id, values in icps.items():
        state.icps[icp_id] = IcpState(*values)
    decoded, decoded_ids = decode_record(encode_record(state, ids), WEEK)
    assert decoded.core() == state.core()
    assert decoded_ids.recent_ids() == recent
    assert (decoded_ids.chunks, decoded_ids.next_chunk) == (ids.chunks, 10)


def test_read_table_gives_each_account_and_its_ids() -> None:
    """The inspection view: every account's core and remembered ids, chunks skipped as keys."""
    table, engine = RecordingTable(), Engine([make_icp()])
    for i in range(RECENT_LIMIT + 3):
        apply(table, engine, f"e-{i}", at(i))
    accounts = read_table(table.items(), WEEK, HOUR)
    assert list(accounts) == [KEY.decode()]
    core, ids = accounts[KEY.decode()]
    assert ids == {f"e-{i}" for i in range(RECENT_LIMIT + 3)}
    assert core["last"] == f"e-{RECENT_LIMIT + 2}"
    assert all(SEPARATOR in key for key in table if key != KEY)
