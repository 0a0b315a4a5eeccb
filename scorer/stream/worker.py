"""`scorer worker`: create missing topics, then run the faust worker until SIGTERM."""

from __future__ import annotations

import asyncio
import logging

import faust

from scorer.config import Settings
from scorer.stream.app import ScorerApp
from scorer.stream.kafka import Topics, ensure_topics

log = logging.getLogger("scorer.worker")


def run_worker(settings: Settings) -> int:
    # faust runs on the thread's current loop: create the topics on that loop too.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    topics = Topics.from_settings(settings)
    created = loop.run_until_complete(ensure_topics(settings, topics))
    scorer = ScorerApp(settings)
    worker = faust.Worker(scorer.app, loglevel=settings.log_level, loop=loop, override_logging=True)
    if created:
        log.info("created topics: %s", ", ".join(created))
    worker.execute_from_commandline()  # returns through SystemExit when stopped
    return 0
