"""`scorer icp publish` and `scorer firmographics load`: keyed, compacted writes."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import IO, Any

import orjson
from aiokafka import AIOKafkaProducer

from scorer.config import Settings
from scorer.enrichment.domains import normalise_domain
from scorer.errors import InvalidICPError, InvalidInputError
from scorer.icp.document import ICPDocument
from scorer.icp.loader import loads_icp
from scorer.kafka.client import client_options
from scorer.kafka.follower import read_whole
from scorer.kafka.topics import Topics, ensure_topics
from scorer.timefmt import format_duration


def producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **client_options(settings),
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        max_batch_size=256 * 1024,
    )


def icp_value(document: ICPDocument) -> bytes:
    """The canonical JSON an ICP is published as (validated, defaults filled in)."""
    data = document.model_dump(mode="json", by_alias=True)
    # Durations go back to their written form so the value re-validates.
    data["intent"]["half_life"] = format_duration(document.intent.half_life)
    data["hot"]["cooldown"] = format_duration(document.hot.cooldown)
    return orjson.dumps(data)


async def publish_one(settings: Settings, topic: str, key: bytes, value: bytes) -> int:
    """One record for a command (the deployment's topics created if missing),
    acknowledged; returns its offset."""
    await ensure_topics(settings, Topics.from_settings(settings))
    client = producer(settings)
    await client.start()
    try:
        sent = await client.send_and_wait(topic, key=key, value=value)
    finally:
        await client.stop()
    return int(sent.offset)


async def publish_icp(settings: Settings, document: ICPDocument) -> None:
    topic = Topics.from_settings(settings).icp
    await publish_one(settings, topic, document.id.encode(), icp_value(document))


async def current_icps(settings: Settings) -> dict[str, ICPDocument]:
    """The ICPs on the icp-profiles topic as the workers see them: per id, the
    highest version not deleted since (invalid documents are skipped). Read by
    the workers' own `Follower`, stopped once it has read the topic to its end."""
    found: dict[str, ICPDocument] = {}

    def apply(record: Any) -> None:
        key = record.key.decode(errors="replace") if record.key else ""
        if record.value is None:
            found.pop(key, None)
            return
        try:
            document = loads_icp(record.value)
        except InvalidICPError:
            return
        known = found.get(key)
        if document.id == key and (known is None or document.version > known.version):
            found[key] = document

    # Invalid documents are skipped here; the workers dead-letter them.
    await read_whole(settings, Topics.from_settings(settings).icp, apply)
    return found


async def promote_icp(
    settings: Settings, candidate: ICPDocument, replace: ICPDocument | None, replace_id: str | None
) -> ICPDocument:
    """Publish a shadow ICP as active: itself at the next version, or, with
    `replace_id`, under that id at the next version of the ICP it replaces
    (the shadow id is then deleted)."""
    if replace_id is None:
        promoted = candidate.model_copy(update={"version": candidate.version + 1, "mode": "active"})
    else:
        version = (replace.version if replace is not None else 0) + 1
        promoted = candidate.model_copy(
            update={"id": replace_id, "version": version, "mode": "active"}
        )
    topics = Topics.from_settings(settings)
    client = producer(settings)
    await client.start()
    try:
        value = icp_value(promoted)
        await client.send_and_wait(topics.icp, key=promoted.id.encode(), value=value)
        if replace_id is not None and replace_id != candidate.id:
            await client.send_and_wait(topics.icp, key=candidate.id.encode(), value=None)
    finally:
        await client.stop()
    return promoted


class LoadProgress:
    """A progress line on stderr when it is a terminal."""

    def __init__(self, stream: IO[str], total_bytes: int | None) -> None:
        self.stream = stream
        self.enabled = stream.isatty()
        self.total = total_bytes
        self.started = self.last = time.monotonic()

    def tick(self, records: int, position: int | None, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.last < 0.5 and not force):
            return
        self.last = now
        share = f"  {100 * position / self.total:5.1f} %" if self.total and position else ""
        rate = records / max(now - self.started, 1e-9)
        self.stream.write(f"\r{records:,} records  {rate:,.0f}/s{share}")
        self.stream.flush()
        if force:
            self.stream.write("\n")


async def load_firmographics(
    settings: Settings,
    records: Iterable[tuple[int, dict[str, Any] | InvalidInputError]],
    deletes: Iterable[str] = (),
    errors: IO[str] = sys.stderr,
    progress: LoadProgress | None = None,
    position: Any = None,
) -> tuple[int, int, int]:
    """Produce records keyed by domain; tombstones for deletes. (sent, deleted, bad)."""
    topics = Topics.from_settings(settings)
    await ensure_topics(settings, topics)
    client = producer(settings)
    await client.start()
    sent = deleted = bad = 0
    try:
        for line, item in records:
            if isinstance(item, InvalidInputError):
                bad += 1
                errors.write(f"line {line}: {item}\n")
                continue
            key = item["domain"].encode()
            if item.get("deleted") is True and len(item) <= 2:
                await client.send(topics.firmographics, key=key, value=None)
                deleted += 1
            else:
                await client.send(topics.firmographics, key=key, value=orjson.dumps(item))
                sent += 1
            if progress is not None and not (sent + deleted) % 1024:
                progress.tick(sent + deleted, position() if position else None)
        for domain in deletes:
            await client.send(
                topics.firmographics, key=normalise_domain(domain).encode(), value=None
            )
            deleted += 1
        await client.flush()
    finally:
        await client.stop()
    if progress is not None:
        progress.tick(sent + deleted, position() if position else None, force=True)
    return sent, deleted, bad
