"""The compacted inputs every worker reads whole: firmographics and ICPs.

Each is read from the beginning by a plain consumer outside the group
(read_committed), then followed; a null value deletes. `loaded` is set once
the records there at start-up have been applied. Companies are kept as their
checked JSON bytes (about 0.5 KB each) and decoded only when read (a
`LazyCompany`), so 100,000 companies do not cost 100,000 decoded dicts; the
engine keeps each company's fit (a few numbers) keyed by the record's bytes,
and most events read nothing more.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import TopicPartition

from scorer.config import Settings
from scorer.enrichment.domains import normalise_domain
from scorer.enrichment.firmographics import LazyCompany, check_record
from scorer.errors import InvalidICPError, InvalidInputError
from scorer.icp.loader import loads_icp
from scorer.scoring.engine import Engine
from scorer.stream.kafka import client_options, partitions_of, reader, stop_consumer
from scorer.stream.metrics import Metrics

log = logging.getLogger("scorer.worker")
DeadLetter = Callable[[Any, str, str], None]


class Firmographics:
    """Company records by normalised domain, as checked JSON bytes."""

    def __init__(self, engine: Engine, metrics: Metrics, max_bytes: int) -> None:
        self.engine = engine
        self.metrics = metrics
        self.max_bytes = max_bytes
        self.records: dict[bytes, bytes] = {}
        self.hits = self.misses = 0  # since the last flush_counts

    def company(self, key: bytes) -> tuple[LazyCompany | None, bytes | None]:
        """The account's company record (None: every field unknown), not yet
        decoded, and its bytes: the token that keeps the engine's fit of it
        valid while the record is unchanged."""
        raw = self.records.get(key)
        if raw is None:
            self.misses += 1
            return None, None
        self.hits += 1
        return LazyCompany(raw), raw

    def flush_counts(self) -> None:
        """Lookups since the last call into the Prometheus counters."""
        if self.hits:
            self.metrics.lookup["hit"].inc(self.hits)
        if self.misses:
            self.metrics.lookup["miss"].inc(self.misses)
        self.hits = self.misses = 0

    def apply(self, record: Any, dead_letter: DeadLetter) -> None:
        """One firmographics record: a checked upsert, or a delete."""
        key = record.key
        try:
            domain = normalise_domain(key.decode()) if key else ""
        except UnicodeDecodeError:
            domain = ""
        if not domain or domain.encode() != key:
            dead_letter(record, "schema", "key must be the normalised company domain")
            return
        if record.value is None:
            self.records.pop(key, None)
        else:
            try:
                if len(record.value) > self.max_bytes:
                    raise InvalidInputError("oversize", f"{len(record.value)} bytes")
                document = orjson.loads(record.value)
                checked = check_record(document)
            except orjson.JSONDecodeError:
                dead_letter(record, "invalid_json", "not valid UTF-8 JSON")
                return
            except InvalidInputError as exc:
                dead_letter(record, exc.reason, exc.detail)
                return
            if checked["domain"] != domain:
                dead_letter(record, "schema", "domain differs from the key")
                return
            # Keep the bytes as they came unless checking changed the record
            # (the domain written in another form): no re-encoding per company.
            same = checked["domain"] == document.get("domain")
            self.records[key] = record.value if same else orjson.dumps(checked)
        self.engine.forget_company(domain)


class Icps:
    """ICP documents from the icp-profiles topic into the engine."""

    def __init__(self, engine: Engine, metrics: Metrics) -> None:
        self.engine = engine
        self.metrics = metrics

    def apply(self, record: Any, dead_letter: DeadLetter) -> None:
        icp_id = record.key.decode(errors="replace") if record.key else ""
        if record.value is None:
            if self.engine.remove_icp(icp_id):
                log.info("ICP %s removed", icp_id)
            return
        try:
            document = loads_icp(record.value, source=f"icp-profiles key {icp_id}")
        except InvalidICPError as exc:
            log.error("invalid ICP ignored: %s", exc)
            dead_letter(record, "invalid_icp", "; ".join(exc.problems))
            return
        if document.id != icp_id:
            dead_letter(record, "schema", "key must be the ICP id")
            return
        if self.engine.set_icp(document):
            log.info("ICP %s v%d %s", document.id, document.version, document.mode)
            self.metrics.icp_active(document.id, document.tiers, document.mode == "shadow")


class Follower:
    """Reads one compacted topic whole, then follows it, applying each record."""

    def __init__(
        self,
        settings: Settings,
        topic: str,
        apply: Callable[[Any, DeadLetter], None],
        dead_letter: DeadLetter,
    ) -> None:
        self.settings = settings
        self.topic = topic
        self.apply = apply
        self.dead_letter = dead_letter
        self.loaded = asyncio.Event()

    async def run(self) -> None:
        consumer = reader(self.settings, max_partition_fetch_bytes=4 * 1024 * 1024)
        await consumer.start()
        try:
            partitions = await partitions_of(client_options(self.settings), self.topic)
            assigned = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            consumer.assign(assigned)
            await consumer.seek_to_beginning(*assigned)
            ends = await consumer.end_offsets(assigned)
            started = time.monotonic()
            count = 0
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
                for records in batches.values():
                    for record in records:
                        self.apply(record, self.dead_letter)
                    count += len(records)
                    await asyncio.sleep(0)  # let health checks answer during a big backlog
                if not self.loaded.is_set():
                    positions = [await consumer.position(tp) for tp in assigned]
                    if all(pos >= ends[tp] for pos, tp in zip(positions, assigned, strict=True)):
                        log.info(
                            "%s: %d records read in %.1f s",
                            self.topic,
                            count,
                            time.monotonic() - started,
                        )
                        self.loaded.set()
        finally:
            await stop_consumer(consumer)
