"""Identity stitching state: per visitor identity, its company or its kept events (pure).

An identity (a digest of an anonymousId or userId) is either linked to a
company domain, and its events go straight to that account, or not yet, and
its events are kept: at most `max_count` (the oldest leave first) and none
older than `max_age` in event time behind the identity's newest event. A
link credits the kept events to the account with their original times and
event ids. Unlinked identities whose newest event falls `max_age` behind the
partition's stream time are forgotten. A linked identity is kept (one small
record) so that its later events resolve.

The state is a plain value per identity, encoded for the compacted changelog
(`encode` / `decode`); the stitch stage owns the I/O.

The state holds no object the garbage collector tracks: an `Identity` is a
msgspec `Struct` with `gc=False`, its kept events are encoded documents
(bytes) with their times, and its domain a string. A collector with a few
hundred thousand identities otherwise spends its time in full collections
walking them: measured with `make bench-collect`, where they were a third of
the collector's CPU and every tail above 100 ms (see issue 21's notes).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import msgspec
import orjson

Stitched = tuple[str, dict[str, Any]]
# Kept documents are encoded with msgspec: orjson's bytes keep their working
# buffer (about 4 KB each, measured), which for 70,000 kept visits was 270 MB.
_encode_document = msgspec.json.Encoder().encode  # (domain, visitor event with its company_domain)


class Identity(msgspec.Struct, gc=False):
    """One identity: `domain` once linked, else its kept events by event id, each
    (event time, the visitor document encoded). Never in a reference cycle, so
    untracked by the garbage collector (`gc=False`)."""

    domain: str | None = None
    newest: float = 0.0
    kept: dict[str, tuple[float, bytes]] = msgspec.field(default_factory=dict)


def encode(state: Identity) -> bytes:
    return orjson.dumps(
        {
            "d": state.domain,
            "n": state.newest,
            "k": [[at, orjson.Fragment(doc)] for at, doc in state.kept.values()],
        }
    )


def decode(value: bytes) -> Identity:
    data = orjson.loads(value)
    kept = {doc["event_id"]: (float(at), _encode_document(doc)) for at, doc in data.get("k", ())}
    return Identity(data.get("d"), float(data.get("n", 0.0)), kept)


def credited(domain: str, document: dict[str, Any]) -> Stitched:
    return domain, {**document, "company_domain": domain}


class Identities:
    """The identities of one partition, and what their visits and links yield.

    `counts` tallies outcomes for the metrics: forwarded (already linked),
    kept, stitched, expired (past max_age), evicted (past max_count).
    `changed` holds the keys whose encoded state changed (their changelog
    records to write); a visit of a linked identity changes nothing that is
    kept: its newest time matters only while it is unlinked."""

    def __init__(self, max_count: int, max_age: float) -> None:
        self.max_count = max_count
        self.max_age = max_age
        self.states: dict[bytes, Identity] = {}
        self.counts: Counter[str] = Counter()
        self.changed: set[bytes] = set()
        self.kept_events = 0

    def load(self, key: bytes, value: bytes | None) -> None:
        """A changelog record, at restore."""
        old = self.states.pop(key, None)
        if old is not None:
            self.kept_events -= len(old.kept)
        if value is not None:
            state = decode(value)
            self.states[key] = state
            self.kept_events += len(state.kept)

    def visit(self, key: bytes, document: dict[str, Any], at: float) -> list[Stitched]:
        state = self.states.get(key)
        if state is None:
            state = self.states[key] = Identity()
        if at > state.newest:
            state.newest = at
        if state.domain is not None:
            self.counts["forwarded"] += 1
            return [credited(state.domain, document)]
        self.changed.add(key)
        event_id = document["event_id"]
        if event_id in state.kept:  # a replay after a crash, or an SDK's retry
            return []
        state.kept[event_id] = (at, _encode_document(document))
        self.kept_events += 1
        self.counts["kept"] += 1
        self._bound(state)
        return []

    def link(self, key: bytes, domain: str, at: float) -> list[Stitched]:
        state = self.states.get(key)
        if state is None:
            state = self.states[key] = Identity()
        if at > state.newest:
            state.newest = at
        state.domain = domain
        self.changed.add(key)
        if not state.kept:
            return []
        horizon = max(at, state.newest) - self.max_age
        events = sorted((at, event_id, doc) for event_id, (at, doc) in state.kept.items())
        self.kept_events -= len(state.kept)
        state.kept = {}
        out = [
            credited(domain, orjson.loads(doc))
            for event_at, _, doc in events
            if event_at >= horizon
        ]
        self.counts["stitched"] += len(out)
        self.counts["expired"] += len(events) - len(out)
        return out

    def _bound(self, state: Identity) -> None:
        horizon = state.newest - self.max_age
        old = [event_id for event_id, (at, _) in state.kept.items() if at < horizon]
        for event_id in old:
            del state.kept[event_id]
        self.counts["expired"] += len(old)
        excess = len(state.kept) - self.max_count
        if excess > 0:
            oldest = sorted(state.kept, key=lambda e: (state.kept[e][0], e))[:excess]
            for event_id in oldest:
                del state.kept[event_id]
            self.counts["evicted"] += excess
        self.kept_events -= len(old) + max(excess, 0)

    def sweep(self, stream_time: float) -> list[bytes]:
        """Forget unlinked identities with nothing younger than max_age; their keys."""
        horizon = stream_time - self.max_age
        gone = [
            key
            for key, state in self.states.items()
            if state.domain is None and state.newest < horizon
        ]
        for key in gone:
            self.changed.add(key)
            state = self.states.pop(key)
            self.counts["expired"] += len(state.kept)
            self.kept_events -= len(state.kept)
        return gone
