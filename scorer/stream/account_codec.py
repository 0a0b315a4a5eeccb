"""Account state as changelog records: a binary format, versioned, written so
that replays are exact.

One table (a task's store and its compacted changelog partition) holds, per
account (key = domain):
- the account record: clock, last event id, per-ICP intent and alert state,
  the live id chunks (each with the time of its newest event), and `recent`,
  the event ids applied since the last chunk, with their times;
- id chunks (key = domain + 0x1f + ``c`` + sequence number): the recent
  ids, moved out of the record once there are enough of them (RECENT_LIMIT),
  written once and never rewritten, deleted once every id in them is older
  than the dedup horizon.

The ids are kept and encoded by `scorer.stream.id_window`, each once, when
it is applied (`ChunkedIds.add`):
the record carries the recent ids' bytes as they are, and a chunk is those
bytes moved out, so a busy account's write-back does not encode its ids
again at every commit. A lead event's id carries its link to the lead, the
lead key (`scorer.scoring.state`), in the same entry (since format 3): the
links are written once too, and live and die with their ids.

So a changed account costs one small record per commit, and one chunk per
RECENT_LIMIT events: appends, whatever the size of its id window. In memory
the ids are one dict per account (`ChunkedIds`), every id of the window.

Every value starts with its format byte: FORMAT (3) here. Format 2 is
format 3 without lead links (no entry has the LINKED bit), and is read as
such. Format 1, the JSON records and hourly id buckets written before, is
read too: an account loaded from format 1 keeps every id, and its next
write-back writes them as chunks and deletes the old buckets (after the new
record). Any other first byte is refused with `UnknownFormat`, never guessed
at.

An erasure that forgets ids (`ChunkedIds.forget`) rewrites them: every
chunk is deleted and the ids left are written as new chunks and recent ids,
so no latest value of the table keeps a forgotten id.

Write order, for at-least-once delivery, where a crash loses a suffix of
the partition (under exactly-once a commit lands whole): new chunks first,
then deletions of expired chunks, then the record, then the deletion of
format-1 buckets. A record lists only chunks written before it; a chunk the
record does not list is ignored (and its sequence number written again),
and a deleted chunk held only ids past the horizon, which are never
consulted again (see `scorer.scoring.state`).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable
from typing import Any, Protocol

import orjson

from scorer.scoring.state import AccountState, IcpState
from scorer.stream.id_window import (
    MAX_RECENT,
    RECENT_LIMIT,
    RECENT_SHARE,
    ChunkedIds,
    Reader,
    encode_ids,
)

FORMAT = 3
FORMAT_BYTE = bytes([FORMAT])
READABLE_FORMATS = (2, 3)  # chunks alike; a format-2 record has no lead links
# Format 1 grouped ids in buckets of this share of the dedup window (hourly
# for the default 7 days); its records are read back with the same width.
FORMAT_1_BUCKETS_PER_WINDOW = 168
SEPARATOR = b"\x1f"
CHUNK_TAG = b"c"
_HEAD = struct.Struct("<BdI")  # format, clock (NaN: none), len(last event id) (NONE32: none)
_ICP = struct.Struct("<dddB")  # raw, clock, alert_at (NaN: none), len(tier) (0xFF: none)
_CHUNK_REF = struct.Struct("<Id")  # sequence number, newest time in it
_U8 = struct.Struct("<B")
# Parts of a record written per account per commit, with fewer calls than a pack each:
_ICP_NUMBERS = struct.Struct("<ddd")  # _ICP without its tier length (see `_short_text`)
_U32_PAIR = struct.Struct("<II")
_U32_TRIPLE = struct.Struct("<III")
_BYTE = [bytes([value]) for value in range(256)]
_CHUNK_REFS: dict[int, struct.Struct] = {}  # a record's chunk list, by its length
_SHORT_TEXTS: dict[str, bytes] = {}  # ICP ids and tiers, encoded (`_short_text`)
_SHORT_TEXTS_LIMIT = 1024
_U32 = struct.Struct("<I")
# The pack methods `encode_record` calls for every changed account at every commit,
# bound once (an attribute look-up on a Struct each call cost more than the call).
_pack_head = _HEAD.pack
_pack_icp_numbers = _ICP_NUMBERS.pack
_pack_u32 = _U32.pack
_pack_u32_pair = _U32_PAIR.pack
_pack_u32_triple = _U32_TRIPLE.pack
_NONE32 = 0xFFFFFFFF
_NONE8 = 0xFF


class UnknownFormat(ValueError):
    """A changelog value in a format this version cannot read."""


def unreadable_state(changelog: str, error: UnknownFormat) -> str:
    """What a worker that meets an unknown format says before it stops."""
    return (
        f"{changelog} holds account state this version cannot read ({error}): it was "
        f"written by a newer version of the scorer. Run that version (state is never "
        f"dropped or guessed at), or move to a new SCORER_APP_ID to start from empty state."
    )


class Readable(Protocol):
    """What loading an account reads: a task's store, or a dict of latest values."""

    def get(self, key: bytes, /) -> bytes | None: ...


class Table(Readable, Protocol):
    """The key-value view of a task's store these functions read and write."""

    def __setitem__(self, key: bytes, value: bytes, /) -> None: ...

    def pop(self, key: bytes, default: Any = None, /) -> Any: ...


def chunk_key(account: bytes, sequence: int) -> bytes:
    return account + SEPARATOR + CHUNK_TAG + str(sequence).encode()


def bucket_key(account: bytes, bucket: int) -> bytes:
    """A format-1 id bucket's key (read and deleted, never written)."""
    return account + SEPARATOR + str(bucket).encode()


# -- encoding ------------------------------------------------------------------------


def _text(value: str | None, limit: int, none: int, size: struct.Struct) -> bytes:
    if value is None:
        return size.pack(none)
    data = value.encode()
    if len(data) >= limit:
        raise ValueError(f"too long for the changelog format: {len(data)} bytes")
    return size.pack(len(data)) + data


def _short_text(value: str | None) -> bytes:
    """An ICP id or tier as a record holds it: its length byte (0xFF: none) and its
    UTF-8 bytes. Memoised: a deployment has a handful of each, and every changed
    account writes them at every commit."""
    if value is None:
        return _BYTE[_NONE8]
    encoded = _SHORT_TEXTS.get(value)
    if encoded is None:
        encoded = _text(value, _NONE8, _NONE8, _U8)
        if len(_SHORT_TEXTS) >= _SHORT_TEXTS_LIMIT:
            _SHORT_TEXTS.clear()
        _SHORT_TEXTS[value] = encoded
    return encoded


def _chunk_refs(count: int) -> struct.Struct:
    """The struct of a record's list of `count` chunk references (`_CHUNK_REF` each)."""
    shape = _CHUNK_REFS.get(count)
    if shape is None:
        shape = _CHUNK_REFS[count] = struct.Struct("<" + "Id" * count)
    return shape


def encode_record(state: AccountState, ids: ChunkedIds) -> bytes:
    """The account record (format 3). The same bytes as packing each field in turn
    (`_HEAD`, `_ICP`, `_CHUNK_REF`, ...: `decode_record` reads them so), with fewer
    calls: this runs for every changed account at every commit."""
    last = state.last_event_id
    last_data = b"" if last is None else last.encode()
    icps = state.icps
    if len(icps) > 255:
        raise ValueError(f"too many ICP states for the changelog format: {len(icps)}")
    # The times as the state holds them: NaN while unset, the record's "none".
    head = _pack_head(FORMAT, state._clock, _NONE32 if last is None else len(last_data))
    parts: list[bytes | bytearray] = [head, last_data, _BYTE[len(icps)]]
    for icp_id, icp in icps.items():
        parts.append(_short_text(icp_id))
        parts.append(_pack_icp_numbers(icp.raw, icp._clock, icp._alert_at))
        parts.append(_short_text(icp.alert_tier))  # _ICP's last byte, then the tier
    chunks = ids.chunks
    if chunks:
        parts.append(_pack_u32_pair(ids.next_chunk, len(chunks)))
        parts.append(_chunk_refs(len(chunks)).pack(*[v for ref in chunks.items() for v in ref]))
        parts.append(_pack_u32(ids.recent_count))
    else:
        parts.append(_pack_u32_triple(ids.next_chunk, 0, ids.recent_count))
    parts.append(ids.recent)
    return b"".join(parts)


def store_account(table: Table, account: bytes, state: AccountState, ids: ChunkedIds) -> None:
    """Write an account back, in the order of this module's docstring."""
    for payload, count, newest in ids.rewritten:
        table[chunk_key(account, ids.next_chunk)] = FORMAT_BYTE + _U32.pack(count) + payload
        ids.chunks[ids.next_chunk] = newest
        ids.next_chunk += 1
    ids.rewritten = ()
    if ids.recent_count >= max(RECENT_LIMIT, min(MAX_RECENT, len(ids.ids) // RECENT_SHARE)):
        chunk = FORMAT_BYTE + _U32.pack(ids.recent_count) + ids.recent
        table[chunk_key(account, ids.next_chunk)] = chunk
        ids.chunks[ids.next_chunk] = ids.recent_newest
        ids.next_chunk += 1
        ids.recent, ids.recent_count, ids.recent_newest = bytearray(), 0, -math.inf
    for number in ids.dead:
        table.pop(chunk_key(account, number), None)
    ids.dead = ()
    table[account] = encode_record(state, ids)
    for bucket in ids.legacy:
        table.pop(bucket_key(account, bucket), None)
    ids.legacy = ()


# -- decoding ------------------------------------------------------------------------


def _optional(value: float) -> float | None:
    return None if value != value else value  # NaN: none


def decode_chunk(raw: bytes) -> list[tuple[str, float]]:
    return [(event_id, at) for event_id, at, _ in decode_chunk_entries(raw)]


def decode_chunk_entries(raw: bytes) -> list[tuple[str, float, bytes | None]]:
    """A chunk's (id, time, lead key or None) entries."""
    _check_format(raw, "id chunk")
    try:
        reader = Reader(raw, 1)
        (count,) = reader.take(_U32)
        return list(reader.entries(count))
    except (struct.error, UnicodeDecodeError) as exc:
        raise UnknownFormat(f"damaged id chunk ({exc})") from None


def _check_format(raw: bytes, kind: str) -> None:
    if not raw or raw[0] not in READABLE_FORMATS:
        raise UnknownFormat(f"{kind} in format {raw[0] if raw else 'none (empty)'}")


def decode_record(raw: bytes, window: float) -> tuple[AccountState, ChunkedIds]:
    """An account record (format 2), its chunks not yet read."""
    _check_format(raw, "account record")
    try:
        return _decode_record(raw, window)
    except (struct.error, UnicodeDecodeError) as exc:
        raise UnknownFormat(f"damaged account record ({exc})") from None


def _decode_record(raw: bytes, window: float) -> tuple[AccountState, ChunkedIds]:
    reader = Reader(raw, 0)
    _, clock, last_length = reader.take(_HEAD)
    last = reader.text(last_length, _NONE32)
    (count,) = reader.take(_U8)
    icps = {}
    for _ in range(count):
        (length,) = reader.take(_U8)
        icp_id = reader.text(length, _NONE8)
        raw_intent, icp_clock, alert_at, tier_length = reader.take(_ICP)
        tier = reader.text(tier_length, _NONE8)
        icps[icp_id or ""] = IcpState(raw_intent, _optional(icp_clock), _optional(alert_at), tier)
    ids = ChunkedIds(window)
    (ids.next_chunk,) = reader.take(_U32)
    (chunks,) = reader.take(_U32)
    for _ in range(chunks):
        number, newest = reader.take(_CHUNK_REF)
        ids.chunks[number] = newest
    (count,) = reader.take(_U32)
    start = reader.offset
    entries = list(reader.entries(count))  # checks them, and they go into the dict
    ids.recent, ids.recent_count = bytearray(raw[start : reader.offset]), count
    ids.recent_newest = max((at for _, at, _ in entries), default=-math.inf)
    leads = {}
    for event_id, at, link in entries:
        ids.remember(event_id, at)
        if link is not None:
            leads[event_id] = (link, at)
    state = AccountState(_optional(clock), last, icps, ids, leads)
    return state, ids


def load_account(
    table: Readable, account: bytes, window: float, bucket_width: float
) -> tuple[AccountState, ChunkedIds]:
    """The account's state from the table (a fresh one if it has none), every id
    of its window in memory. `bucket_width`: format 1's bucket width."""
    raw = table.get(account)
    if raw is None:
        ids = ChunkedIds(window)
        return AccountState(seen=ids), ids
    if raw[:1] == b"{":
        return _load_format_1(table, account, raw, window, bucket_width)
    state, ids = decode_record(raw, window)
    links: dict[str, tuple[bytes, float]] = {}
    for number in ids.chunks:
        chunk = table.get(chunk_key(account, number))
        if chunk is not None:  # deleted with its ids past the horizon: not needed
            for event_id, at, link in decode_chunk_entries(chunk):
                ids.remember(event_id, at)
                if link is not None:
                    links[event_id] = (link, at)
    if links:  # the chunks' links first: they are the older ones
        state.leads = {**links, **(state.leads or {})}
    return state, ids


def _load_format_1(
    table: Readable, account: bytes, raw: bytes, window: float, width: float
) -> tuple[AccountState, ChunkedIds]:
    """A format-1 account: JSON record, ids in hourly JSON buckets (their time
    taken as the bucket's end: they are forgotten no sooner than before). Every
    id is written again, as chunks, at the next write-back."""
    try:
        doc: dict[str, Any] = orjson.loads(raw)
        buckets = {n: table.get(bucket_key(account, n)) for n in doc.get("buckets", [])}
        stored = {n: orjson.loads(v) for n, v in buckets.items() if v is not None}
    except orjson.JSONDecodeError as exc:
        raise UnknownFormat(f"damaged format-1 record ({exc})") from None
    ids = ChunkedIds(window)
    entries: dict[str, float] = {}
    for bucket in buckets:
        for event_id in stored.get(bucket, ()):
            entries[event_id] = (bucket + 1) * width
    ids.legacy = list(buckets)
    for event_id, at in doc.get("recent", []):
        entries[event_id] = at
    ordered = sorted(entries.items(), key=lambda entry: entry[1])
    for event_id, at in ordered:
        ids.remember(event_id, at)
    ids.recent, ids.recent_count = bytearray(encode_ids(ordered)), len(ordered)
    ids.recent_newest = max((at for _, at in ordered), default=-math.inf)
    state = AccountState.from_core(doc, ids)
    return state, ids


def read_table(
    items: Iterable[tuple[bytes, bytes]], window: float, bucket_width: float
) -> dict[str, tuple[dict[str, Any], set[str]]]:
    """Every account of a table's latest values (a compacted changelog read to
    its end): domain -> (its state's core, the ids it remembers). For tests and
    inspection."""
    table = dict(items)
    accounts = {}
    for key in table:
        if SEPARATOR in key or key.startswith(b"\x00"):
            continue
        state, ids = load_account(table, key, window, bucket_width)
        accounts[key.decode()] = (state.core(), set(ids.ids))
    return accounts
