"""`scorer collect`: the intake, the stitch stage and the web port in one process.

Start-up creates the topics it writes (visitor-events, lead-events, the
identities topic and its compacted changelog, with SCORER_TOPIC_PARTITIONS
partitions when missing), starts one idempotent producer (acks=all, shared
by the intake and the stitch stage) and joins the stitch stage's group.
`/readyz` answers 200 once the producer is up and the stage has its first
assignment. SIGTERM stops taking requests, commits the stage and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from typing import Any

from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from scorer.collect.intake import Intake, parse_write_keys
from scorer.collect.mapping import Mapping
from scorer.collect.metrics import CollectMetrics
from scorer.collect.stitch import StitchStage
from scorer.config import Settings
from scorer.errors import ConfigError
from scorer.kafka.batcher import Batcher
from scorer.kafka.client import KeyPartitions, producer_options
from scorer.kafka.topics import Topics, ensure_topics
from scorer.logs import BrokerOutage, configure_logging
from scorer.service.runner import EXIT_CONFIG, serve_service
from scorer.service.web import WebServer

log = logging.getLogger("scorer.collect")
SHUTDOWN_SECONDS = 10.0


class Collector:
    """One `scorer collect` process."""

    def __init__(
        self,
        settings: Settings,
        mapping: Mapping,
        registry: CollectorRegistry | None = None,
        outage: BrokerOutage | None = None,
    ) -> None:
        self.settings = settings
        self.outage = outage if outage is not None else BrokerOutage()
        self.stopping = asyncio.Event()
        self.registry = registry if registry is not None else CollectorRegistry()
        secret = settings.collect_write_keys
        self.write_keys = parse_write_keys(secret.get_secret_value() if secret else None)
        self.metrics = CollectMetrics(self.registry, sorted(set(self.write_keys.values())))
        self.topics = Topics.from_settings(settings)
        self.intake = Intake(
            mapping, self.write_keys, self.metrics, self.topics, settings.collect_ack_timeout
        )
        self.web = WebServer(
            settings.collect_web_port, self.registry, self.not_ready, self.intake.routes()
        )
        self.producer: AIOKafkaProducer | None = None
        self.stage: StitchStage | None = None
        self.background: list[asyncio.Task[Any]] = []

    def not_ready(self) -> str | None:
        if self.producer is None:
            reason: str | None = "connecting to the broker"
        elif self.stage is None:
            reason = "starting the stitch stage"
        else:
            reason = self.stage.not_ready()
        self.metrics.ready.set(1 if reason is None else 0)
        return reason

    def stop(self) -> None:
        self.stopping.set()

    async def start(self) -> None:
        await self.web.start()
        await ensure_topics(self.settings, self.topics, self.topics.collector())
        # The producer's own linger stays 0: records of concurrent requests share
        # record batches in the intake's Batcher, which lingers 2 ms.
        producer = AIOKafkaProducer(**producer_options(self.settings))
        await producer.start()
        if self.intake.contacts is not None:
            await self.intake.contacts.start()
        partitions = {
            topic: KeyPartitions(len(await producer.partitions_for(topic)))
            for topic in (self.topics.identities, self.topics.lead, self.topics.visitor)
        }
        self.intake.partitions = partitions
        self.intake.batcher = Batcher(producer, linger=0.002)
        self.producer = producer
        self.stage = StitchStage(
            self.settings, producer, self.metrics, self.stopping, partitions[self.topics.visitor]
        )
        self.background.append(asyncio.create_task(self.stage.run()))
        # What is alive now (modules, classes, clients: about 75,000 objects)
        # lives as long as the process: out of the collected generations with
        # it, or each full collection walks it again, 25-40 ms a time here, a
        # pause every request waiting at that moment shares. The stitch state
        # is never walked (scorer/collect/identities.py).
        gc.freeze()
        log.info(
            "collecting on port %d for sources %s",
            self.settings.collect_web_port,
            ", ".join(sorted(set(self.write_keys.values()))),
        )

    async def run(self) -> None:
        stopped = asyncio.create_task(self.stopping.wait())
        try:
            await asyncio.wait([stopped, *self.background], return_when=asyncio.FIRST_COMPLETED)
            for task in self.background:
                if task.done():
                    task.result()  # the stage failed: say why
        finally:
            stopped.cancel()

    async def close(self) -> None:
        # Stop taking requests first, so nothing is answered after the producer stops.
        await self.web.stop()
        self.stopping.set()
        for task in self.background:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), 6.0)
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        if self.intake.contacts is not None:
            await self.intake.contacts.close()
        if self.intake.batcher is not None:
            await self.intake.batcher.close()
        if self.producer is not None:
            await self.producer.stop()


async def serve(settings: Settings, mapping: Mapping) -> int:
    outage = configure_logging(settings.log_level, settings.log_format)
    try:
        collector = Collector(settings, mapping, outage=outage)
    except ConfigError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    return await serve_service(collector, "collector", log, SHUTDOWN_SECONDS)


def run_collector(settings: Settings, mapping: Mapping) -> int:
    return asyncio.run(serve(settings, mapping))
