"""A compacted topic read whole, then followed (firmographics, ICPs).

The topic is read from the beginning by a plain consumer outside any group
(read_committed), then followed; each record goes to the owner's `apply`,
with a dead-letter callback for records it rejects. `loaded` is set once the
records there at start-up have been applied. The worker, the router and the
publishing commands all read their compacted inputs this way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka import TopicPartition

from scorer.config import Settings
from scorer.kafka.client import client_options, partitions_of, reader, stop_consumer

log = logging.getLogger("scorer.follower")
DeadLetter = Callable[[Any, str, str], None]


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


async def read_whole(settings: Settings, topic: str, apply: Callable[[Any], None]) -> None:
    """Every committed record on a topic at the time of the call (a compacted one's
    latest values, say), each given to `apply` in partition order, then stop
    (what a command needs of it, e.g. the current ICPs)."""
    follower = Follower(settings, topic, lambda record, _: apply(record), lambda *_: None)
    reading = asyncio.create_task(follower.run())
    loaded = asyncio.create_task(follower.loaded.wait())
    try:
        await asyncio.wait([reading, loaded], return_when=asyncio.FIRST_COMPLETED)
        if reading.done():
            reading.result()  # it failed: say why
    finally:
        for task in (reading, loaded):
            task.cancel()
        await asyncio.gather(reading, loaded, return_exceptions=True)
