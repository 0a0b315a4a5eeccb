"""A task's backing store: what its changelog held up to an offset, kept on disk
(one rocksdict database per task under
``SCORER_DATA_DIR/<app id>/<changelog topic>/<partition>``) or in a dict
(`SCORER_STORE=memory`), with the offset and the changelog's marker beside the
records. `scorer.stream.store.AccountStore` writes to it, a slice of a flush
at a time, and reads from it what memory does not hold.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import orjson

from scorer.stream.account_codec import SEPARATOR

WRITE_BUFFER_BYTES = 8 * 1024 * 1024
BLOCK_CACHE_BYTES = 16 * 1024 * 1024  # shared by every store of the process
META_KEY = b"\x00scorer:meta"


def is_account_key(key: bytes) -> bool:
    """An account record's key: not an id chunk's, not the store's own (0x00...)."""
    return bool(key) and key[0] != 0 and SEPARATOR not in key


def new_marker() -> bytes:
    return uuid.uuid4().hex.encode()


class Backing(Protocol):
    """What commits have made durable: records plus where the changelog is at."""

    offset: int  # next changelog offset to read
    marker: bytes | None
    marker_offset: int | None

    def get(self, key: bytes) -> bytes | None: ...

    def account_keys(self) -> list[bytes]:
        """The keys of the account records it holds (not chunks, not its own keys)."""
        ...

    def write(self, items: Iterable[tuple[bytes, bytes | None]], offset: int | None) -> None:
        """Apply `items`; with `offset`, the changelog up to it is all written. A
        write without one may hold records past the stored offset: a restore
        applies them again from the changelog, in order, to the same end."""
        ...

    def set_marker(self, marker: bytes, offset: int) -> None: ...

    def wipe(self) -> None: ...

    def close(self) -> None: ...


class MemoryBacking:
    """A dict; restored from the changelog's beginning at every assignment."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.offset = 0
        self.marker: bytes | None = None
        self.marker_offset: int | None = None

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def account_keys(self) -> list[bytes]:
        return [key for key in self.data if is_account_key(key)]

    def write(self, items: Iterable[tuple[bytes, bytes | None]], offset: int | None) -> None:
        data = self.data
        for key, value in items:
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        if offset is not None:
            self.offset = offset

    def set_marker(self, marker: bytes, offset: int) -> None:
        self.marker, self.marker_offset = marker, offset

    def wipe(self) -> None:
        self.__init__()  # type: ignore[misc]

    def close(self) -> None:
        self.data = {}


class RocksBacking:
    """One rocksdict database per task; the offset and marker in a meta key,
    written in the same batch as the records they describe."""

    def __init__(self, path: Path) -> None:
        from rocksdict import BlockBasedOptions, Options, Rdict, WriteBatch  # optional

        self._rdict, self._options, self._batch = Rdict, Options, WriteBatch
        self._table_options = BlockBasedOptions
        self.path = path
        self.db: Any = None
        self._open()

    def _open(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        options = self._options(raw_mode=True)
        # RocksDB's default memtable is 64 MB, two of them, per database: with
        # a database per task that alone would pass the worker's memory budget.
        # State writes arrive once per commit and per account; 8 MB is plenty.
        options.set_write_buffer_size(WRITE_BUFFER_BYTES)
        options.set_max_write_buffer_number(2)
        # One block cache for all of a worker's stores instead of RocksDB's
        # default per database: reads mostly come from the account LRU.
        table = self._table_options()
        table.set_block_cache(_shared_block_cache())
        options.set_block_based_table_factory(table)
        self.db = self._rdict(str(self.path), options=options)
        raw = self.db.get(META_KEY)
        meta = orjson.loads(raw) if raw else {}
        self.offset = int(meta.get("offset", 0))
        marker = meta.get("marker")
        self.marker = marker.encode() if marker else None
        self.marker_offset = meta.get("marker_offset")

    def _meta(self) -> bytes:
        marker = self.marker.decode() if self.marker else None
        return orjson.dumps(
            {"offset": self.offset, "marker": marker, "marker_offset": self.marker_offset}
        )

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self.db.get(key)
        return value

    def account_keys(self) -> list[bytes]:
        keys = self.db.keys()  # an Rdict in raw mode does not iterate by itself
        return [key for key in keys if is_account_key(key)]

    def write(self, items: Iterable[tuple[bytes, bytes | None]], offset: int | None) -> None:
        batch = self._batch(raw_mode=True)
        for key, value in items:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        if offset is not None:
            self.offset = offset
            batch.put(META_KEY, self._meta())
        self.db.write(batch)

    def set_marker(self, marker: bytes, offset: int) -> None:
        self.marker, self.marker_offset = marker, offset
        self.db.put(META_KEY, self._meta())

    def wipe(self) -> None:
        self.db.close()
        shutil.rmtree(self.path, ignore_errors=True)
        self._open()

    def close(self) -> None:
        self.db.close()


_BLOCK_CACHE: list[Any] = []


def _shared_block_cache() -> Any:
    """The process's one RocksDB block cache (BLOCK_CACHE_BYTES), made on first use."""
    if not _BLOCK_CACHE:
        from rocksdict import Cache

        _BLOCK_CACHE.append(Cache(BLOCK_CACHE_BYTES))
    return _BLOCK_CACHE[0]


def store_path(data_dir: str, app_id: str, changelog: str, partition: int) -> Path:
    return Path(data_dir) / app_id / changelog / str(partition)
