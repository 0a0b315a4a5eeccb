"""An account's event ids of the dedup window, as its changelog records hold them.

`ChunkedIds` is the `SeenIds` (`scorer.scoring.state`) of an account a
task's store keeps: every id of the window in a dict (id -> time), for the
engine's duplicate check, and what the changelog holds of them, which
`scorer.stream.account_codec` writes and reads: the live chunks (each with
the time of its newest id), the chunks to delete, and `recent`, the ids
applied since the last chunk, already encoded.

An id entry is its time and length (`ID_ENTRY`) and its UTF-8 bytes; a lead
event's id has the LINKED bit in its length and its 16-byte lead key after
it. Each id is encoded once, when it is applied (`ChunkedIds.add`), and a
chunk is the recent ids' bytes moved out as they are.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any

from scorer.scoring.state import SeenIds

# A chunk is written once the record carries RECENT_LIMIT ids, or, for a busy
# account, a share of its window (at most MAX_RECENT): a record then lists a
# few dozen chunks, and stays far under Kafka's message size limit however
# busy the account (about 70 KB at most).
RECENT_LIMIT = 32
RECENT_SHARE = 64
MAX_RECENT = 2048
# Ids past the horizon stay until it has moved this share of the window past
# the oldest: a sweep of the dict then costs O(ids) once per share of the
# window instead of once per event on a busy account.
SWEEP_SLACK = 0.125
ID_ENTRY = struct.Struct("<dI")  # time, len(event id)
LINKED = 0x80000000  # in an id entry's length: the id is followed by its 16-byte lead key
LINK_BYTES = 16


class ChunkedIds(SeenIds):
    """`SeenIds` of one account: every id of the window in a dict (id -> time),
    and what the changelog holds of them: the chunks, and the recent ids the
    record carries (already encoded)."""

    __slots__ = (
        "chunks",
        "dead",
        "ids",
        "legacy",
        "next_chunk",
        "recent",
        "recent_count",
        "recent_newest",
        "rewritten",
        "slack",
        "sweep_at",
    )

    def __init__(self, window: float) -> None:
        self.ids: dict[str, float] = {}
        # The ids applied since the last chunk, encoded: a bytearray, so an add appends
        # in place (bytes `+=` copied the whole of it per event: a busy account's is KBs).
        self.recent = bytearray()
        self.recent_count = 0
        self.recent_newest = -math.inf
        self.chunks: dict[int, float] = {}  # live chunk -> its newest time
        self.next_chunk = 0
        # Empty tuples until needed: most accounts never have any, and each
        # list would cost every account in memory 56 bytes.
        self.dead: Sequence[int] = ()  # chunks to delete at the next write-back
        self.legacy: Sequence[int] = ()  # format-1 buckets to delete after the next record
        # Chunks to write at the next write-back, after `forget`: (ids encoded, count, newest).
        self.rewritten: Sequence[tuple[bytes, int, float]] = ()
        self.slack = window * SWEEP_SLACK
        self.sweep_at = math.inf  # the horizon at which the oldest id is a slack past it

    def contains(self, event_id: str, at: float) -> bool:
        return event_id in self.ids

    def clear(self) -> None:
        """Every id forgotten (the account expired): its chunks go at the next write-back."""
        self.ids = {}
        self.recent, self.recent_count, self.recent_newest = bytearray(), 0, -math.inf
        if self.chunks:
            self.dead = [*self.dead, *self.chunks]
            self.chunks = {}
        self.rewritten = ()
        self.sweep_at = math.inf

    def forget(
        self, event_ids: Collection[str], links: Mapping[str, tuple[bytes, float]] | None
    ) -> None:
        """Forget these ids (an erasure): every chunk dies, and the ids left are
        written anew at the next write-back (with their `links`), as chunks of
        MAX_RECENT and recent ids."""
        ids = self.ids
        if not any(event_id in ids for event_id in event_ids):
            return
        for event_id in event_ids:
            ids.pop(event_id, None)
        if self.chunks:
            self.dead = [*self.dead, *self.chunks]
            self.chunks = {}
        ordered = sorted(ids.items(), key=lambda entry: entry[1])
        pieces = [ordered[i : i + MAX_RECENT] for i in range(0, len(ordered), MAX_RECENT)]
        last = pieces.pop() if pieces else []
        self.rewritten = [
            (encode_ids(piece, links), len(piece), piece[-1][1]) for piece in pieces
        ]  # sorted: each piece's newest is its last
        self.recent, self.recent_count = bytearray(encode_ids(last, links)), len(last)
        self.recent_newest = last[-1][1] if last else -math.inf

    def add(self, event_id: str, at: float, horizon: float, link: bytes | None = None) -> bool:
        ids = self.ids
        count = len(ids)
        ids.setdefault(event_id, at)
        if len(ids) == count:
            return False  # remembered already: nothing changes
        data = event_id.encode()
        recent = self.recent
        if link is None:
            recent += ID_ENTRY.pack(at, len(data))
            recent += data
        else:
            recent += ID_ENTRY.pack(at, len(data) | LINKED)
            recent += data
            recent += link
        self.recent_count += 1
        if at > self.recent_newest:
            self.recent_newest = at
        due = at + self.slack
        if due < self.sweep_at:
            self.sweep_at = due
        if horizon >= self.sweep_at:
            self._sweep(horizon)
        return True

    def _sweep(self, horizon: float) -> None:
        """Forget ids before the horizon; chunks holding only such ids are dead."""
        self.ids = ids = {k: t for k, t in self.ids.items() if t >= horizon}
        self.sweep_at = min(ids.values()) + self.slack if ids else math.inf
        dead = [n for n, newest in self.chunks.items() if newest < horizon]
        if dead:
            for number in dead:
                del self.chunks[number]
            self.dead = [*self.dead, *dead]

    def remember(self, event_id: str, at: float) -> None:
        """An id read back from the changelog."""
        self.ids[event_id] = at
        due = at + self.slack
        if due < self.sweep_at:
            self.sweep_at = due

    def recent_ids(self) -> list[tuple[str, float]]:
        """The recent ids, decoded (for loading and inspection)."""
        return list(Reader(self.recent, 0).ids(self.recent_count))


def _ids(
    entries: Iterable[tuple[str, float]], links: Mapping[str, tuple[bytes, float]] | None
) -> list[bytes]:
    parts = []
    for event_id, at in entries:
        data = event_id.encode()
        link = links.get(event_id) if links else None
        if link is None:
            parts.append(ID_ENTRY.pack(at, len(data)))
            parts.append(data)
        else:
            parts.append(ID_ENTRY.pack(at, len(data) | LINKED))
            parts.append(data)
            parts.append(link[0])
    return parts


def encode_ids(
    entries: Iterable[tuple[str, float]], links: Mapping[str, tuple[bytes, float]] | None = None
) -> bytes:
    """(id, time) entries as the record's recent ids and a chunk carry them; an id
    in `links` (id -> (lead key, time)) with its lead key."""
    return b"".join(_ids(entries, links))


class Reader:
    """Reads a record or chunk from `offset` on, a field at a time."""

    __slots__ = ("data", "offset")

    def __init__(self, data: bytes | bytearray, offset: int) -> None:
        self.data, self.offset = data, offset

    def take(self, shape: struct.Struct) -> tuple[Any, ...]:
        values = shape.unpack_from(self.data, self.offset)
        self.offset += shape.size
        return values

    def text(self, length: int, none: int) -> str | None:
        if length == none:
            return None
        start = self.offset
        self.offset += length
        return self.data[start : self.offset].decode()

    def entries(self, count: int) -> Iterator[tuple[str, float, bytes | None]]:
        """(id, time, lead key or None) of `count` id entries."""
        for _ in range(count):
            at, length = self.take(ID_ENTRY)
            text = self.text(length & ~LINKED, -1)
            assert text is not None
            link = None
            if length & LINKED:
                start = self.offset
                self.offset += LINK_BYTES
                link = bytes(self.data[start : self.offset])
                if len(link) != LINK_BYTES:
                    raise struct.error("a lead link cut short")
            yield text, at, link

    def ids(self, count: int) -> Iterator[tuple[str, float]]:
        for event_id, at, _ in self.entries(count):
            yield event_id, at
