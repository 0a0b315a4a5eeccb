"""The router's side of erasure (`scorer erase`).

The router reads the erasure requests whole, like the workers
(`scorer.stream.erasing`), into the same pure table
(`scorer.scoring.erasure.Erasures`), and for each request:
- drops from the feed, and from every open page, the cards it covers
  (`FeedHub.forget`);
- routes no alert it covers: an alert of an erased account or lead whose
  trigger occurred at or before the request, or of a suppressed one, is
  counted as `erased` and delivered nowhere (alerts scored before the
  request and read after it, say after a restart or a lag);
- for an erased account, writes tombstones for its delivery-log keys
  (`<alert id>|<destination>`, whose values name the account's domain): the
  delivery log is read from its beginning, and every key whose latest record
  names the account and was written before the request is deleted. Requests
  older than the delivery log's retention have nothing left there and are
  skipped, so a restart, which reads every request again, scans the log at
  most once, for the recent ones.
Lead erasures leave the delivery log alone: its records name no lead.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer, TopicPartition

from scorer.config import Settings
from scorer.errors import ConfigError, InvalidInputError
from scorer.kafka.client import client_options, partitions_of, reader, stop_consumer
from scorer.kafka.follower import DeadLetter
from scorer.kafka.topics import DELIVERIES_RETENTION
from scorer.route.delivery import DeliveryLog
from scorer.route.feed import FeedHub, alert_subject
from scorer.scoring.erasure import ACCOUNT, ErasureRequest, Erasures, suppression_hash

log = logging.getLogger("scorer.route")


class RouteErasures:
    """Erasure requests as the router applies them: feed, routing, delivery log."""

    def __init__(self, settings: Settings, hub: FeedHub, deliveries: DeliveryLog) -> None:
        self.settings = settings
        self.salt = settings.salt
        self.table = Erasures(self.salt)
        self.hub = hub
        self.deliveries = deliveries
        self.accounts: list[ErasureRequest] = []  # account requests not yet scanned for
        self.wake = asyncio.Event()
        self.tombstones = 0

    def apply(self, record: Any, dead_letter: DeadLetter) -> None:
        """One record of the erasures topic (the `Follower`'s callback)."""
        if record.value is None:
            return
        try:
            request = ErasureRequest.from_json(record.value)
        except InvalidInputError:
            return  # the workers dead-letter it
        if request.suppress and self.salt is None:
            raise ConfigError(
                f"erasure request {request.id} is a suppression, and the router has no "
                "SCORER_ERASURE_SALT to match it: set the salt the request was made with"
            )
        self.table.add(request)
        gone = self.hub.forget(self.covered)
        if gone:
            log.info("erasure request %s: %d feed cards removed", request.id, gone)
        if request.kind == ACCOUNT and time.time() - request.requested_at < DELIVERIES_RETENTION:
            self.accounts.append(request)
            self.wake.set()

    def covered(self, domain: str, at: float, lead_id: str | None) -> bool:
        return self.table.covers_target(domain, at, lead_id) is not None

    def covers(self, alert: dict[str, Any]) -> bool:
        """An alert no destination may get: its account or lead is erased or suppressed."""
        return bool(self.table) and self.covered(*alert_subject(alert))

    async def run(self, producer: AIOKafkaProducer) -> None:
        """Tombstones for erased accounts' delivery-log keys, as requests come."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            requests, self.accounts = self.accounts, []
            keys = await self._keys_of(requests)
            for key in keys:
                await producer.send_and_wait(self.deliveries.topic, key=key, value=None)
                self.deliveries.entries.pop(key, None)
            self.tombstones += len(keys)
            if keys:
                log.info("erasure: %d delivery-log records tombstoned", len(keys))

    async def _keys_of(self, requests: list[ErasureRequest]) -> list[bytes]:
        """The delivery-log keys whose latest record names a requested account and
        was written before its request."""
        clear = {r.target: r.requested_at for r in requests if r.target is not None}
        hashed = {r.hashed: math.inf for r in requests if r.hashed is not None}  # for good
        topic = self.deliveries.topic
        consumer = reader(self.settings)
        await consumer.start()
        latest: dict[bytes, tuple[bytes | None, float]] = {}
        try:
            parts = [
                TopicPartition(topic, p)
                for p in sorted(await partitions_of(client_options(self.settings), topic))
            ]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            ends = await consumer.end_offsets(parts)
            while any([await consumer.position(tp) < ends[tp] for tp in parts]):
                batches = await consumer.getmany(*parts, timeout_ms=500, max_records=10_000)
                for records in batches.values():
                    for record in records:
                        if record.key is not None:
                            latest[record.key] = (record.value, record.timestamp / 1000.0)
        finally:
            await stop_consumer(consumer)
        keys = []
        for key, (value, written) in latest.items():
            if value is None:
                continue
            try:
                domain = str(orjson.loads(value)["a"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue
            until = clear.get(domain)
            if until is None and hashed and self.salt is not None:
                until = hashed.get(suppression_hash(self.salt, ACCOUNT, domain))
            if until is not None and written <= until:
                keys.append(key)
        return keys
