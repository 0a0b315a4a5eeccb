"""Identity stitching state: per visitor identity, its company or its kept events (pure).

An identity (a digest of an anonymousId or userId) is either linked to a
company domain, and its events go straight to that account, or not yet, and
its events are kept: at most `max_count` (the oldest leave first) and none
older than `max_age` in event time behind the identity's newest event. A
link credits the kept events to the account with their original times and
event ids. Unlinked identities whose newest event falls `max_age` behind the
partition's stream time are forgotten. A linked identity is kept (one small
record) so that its later events resolve.

Each identity's changelog record (`record`) is the JSON object
``{"d": domain or null, "n": newest event time, "k": [[time, event], ...]}``;
`load` takes it back at restore. The stitch stage owns the I/O.

The state holds nothing the garbage collector walks: a linked identity is
its domain (a string), an unlinked one its changelog record (bytes) plus its
newest time (a float), in three dicts of atomic values, which CPython does
not track. A visit of an unlinked identity decodes and re-encodes its few
kept events. Held as objects (an identity with a dict of kept visits, each a
dict), a few hundred thousand identities made every full collection walk
them: in `make bench-collect` a third of the collector's CPU, and its tail
(gen-2 collections of 25-160 ms even with the identities as untracked
structs, since the dict holding them is still walked). Records are encoded
with msgspec: orjson's bytes keep their working buffer behind them (about
4 KB each, measured), which for 70,000 kept identities was 270 MB.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import msgspec
import orjson

Stitched = tuple[str, dict[str, Any]]  # (domain, visitor event with its company_domain)
Kept = list[list[Any]]  # [[event time, visitor event], ...]

_encode = msgspec.json.Encoder().encode


def encode(domain: str | None, newest: float, kept: Kept) -> bytes:
    """An identity's changelog record."""
    return _encode({"d": domain, "n": newest, "k": kept})


def credited(domain: str, document: dict[str, Any]) -> Stitched:
    return domain, {**document, "company_domain": domain}


class Identities:
    """The identities of one partition, and what their visits and links yield.

    `counts` tallies outcomes for the metrics: forwarded (already linked),
    kept, stitched, expired (past max_age), evicted (past max_count).
    `changed` holds the keys whose changelog record changed. A visit of a
    linked identity changes nothing that is kept: the newest time matters
    only while an identity is unlinked."""

    def __init__(self, max_count: int, max_age: float) -> None:
        self.max_count = max_count
        self.max_age = max_age
        self.linked: dict[bytes, str] = {}
        self.unlinked: dict[bytes, bytes] = {}  # key -> its changelog record
        self.newest: dict[bytes, float] = {}  # of the unlinked
        self.counts: Counter[str] = Counter()
        self.changed: set[bytes] = set()
        self.kept_events = 0

    def __len__(self) -> int:
        return len(self.linked) + len(self.unlinked)

    def record(self, key: bytes) -> bytes | None:
        """The changelog record of `key` (None: a tombstone, it is forgotten)."""
        domain = self.linked.get(key)
        if domain is not None:
            return encode(domain, 0.0, [])
        return self.unlinked.get(key)

    def load(self, key: bytes, value: bytes | None) -> None:
        """A changelog record, at restore."""
        self._forget(key)
        if value is None:
            return
        data = orjson.loads(value)
        domain = data.get("d")
        if domain is not None:
            self.linked[key] = domain
            return
        kept = data.get("k") or []
        self.unlinked[key] = encode(None, float(data.get("n", 0.0)), kept)
        self.newest[key] = float(data.get("n", 0.0))
        self.kept_events += len(kept)

    def _forget(self, key: bytes) -> None:
        self.linked.pop(key, None)
        value = self.unlinked.pop(key, None)
        if value is not None:
            del self.newest[key]
            self.kept_events -= len(orjson.loads(value)["k"])

    def visit(self, key: bytes, document: dict[str, Any], at: float) -> list[Stitched]:
        domain = self.linked.get(key)
        if domain is not None:
            self.counts["forwarded"] += 1
            return [credited(domain, document)]
        value = self.unlinked.get(key)
        kept: Kept = orjson.loads(value)["k"] if value is not None else []
        before = self.newest.get(key)
        newest = max(at, 0.0 if before is None else before)
        event_id = document["event_id"]
        if any(doc["event_id"] == event_id for _, doc in kept):
            # a replay after a crash, or an SDK's retry: kept once
            if newest == before:
                return []
        else:
            kept.append([at, document])
            self.kept_events += 1
            self.counts["kept"] += 1
        kept = self._bound(kept, newest)
        self.unlinked[key] = encode(None, newest, kept)
        self.newest[key] = newest
        self.changed.add(key)
        return []

    def link(self, key: bytes, domain: str, at: float) -> list[Stitched]:
        value = self.unlinked.pop(key, None)
        self.linked[key] = domain
        self.changed.add(key)
        if value is None:
            return []
        newest = self.newest.pop(key)
        kept: Kept = orjson.loads(value)["k"]
        horizon = max(at, newest) - self.max_age
        events = sorted(kept, key=lambda item: (item[0], item[1]["event_id"]))
        self.kept_events -= len(kept)
        out = [credited(domain, doc) for event_at, doc in events if event_at >= horizon]
        self.counts["stitched"] += len(out)
        self.counts["expired"] += len(events) - len(out)
        return out

    def _bound(self, kept: Kept, newest: float) -> Kept:
        horizon = newest - self.max_age
        young = [item for item in kept if item[0] >= horizon]
        expired = len(kept) - len(young)
        self.counts["expired"] += expired
        excess = len(young) - self.max_count
        if excess > 0:
            young.sort(key=lambda item: (item[0], item[1]["event_id"]))
            young = young[excess:]
            self.counts["evicted"] += excess
        self.kept_events -= expired + max(excess, 0)
        return young

    def sweep(self, stream_time: float) -> list[bytes]:
        """Forget unlinked identities with nothing younger than max_age; their keys."""
        horizon = stream_time - self.max_age
        gone = [key for key, newest in self.newest.items() if newest < horizon]
        for key in gone:
            kept = len(orjson.loads(self.unlinked.pop(key))["k"])
            del self.newest[key]
            self.counts["expired"] += kept
            self.kept_events -= kept
            self.changed.add(key)
        return gone
