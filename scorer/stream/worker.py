"""`scorer worker`: create missing topics, then run the faust worker until SIGTERM.

SIGTERM (or Ctrl-C) stops the worker the faust way: the agents stop, the last
offsets are committed after the producer is flushed, the group is left. That
normally takes one to three seconds. If it has not finished after
`SHUTDOWN_SECONDS` (for instance because the broker is gone and faust keeps
retrying), the process exits anyway with status 3: nothing uncommitted is
lost, because the next owner resumes from the committed offsets and state
updates are idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from typing import Any

import faust

from scorer.config import Settings
from scorer.logs import logging_config
from scorer.stream.app import ScorerApp
from scorer.stream.kafka import Topics, ensure_topics

log = logging.getLogger("scorer.worker")
SHUTDOWN_SECONDS = 8.0  # below the 10 s most orchestrators wait before SIGKILL
EXIT_SHUTDOWN_TIMEOUT = 3


class ScorerWorker(faust.Worker):
    """faust's worker with a bound on how long a signalled shutdown may take."""

    _deadline: threading.Timer | None = None

    def _schedule_shutdown(self, signal: signal.Signals) -> None:
        if self._deadline is None:
            self._deadline = threading.Timer(SHUTDOWN_SECONDS, _give_up)
            self._deadline.daemon = True
            self._deadline.start()
        super()._schedule_shutdown(signal)


def _give_up() -> None:
    log.error("shutdown did not finish within %.0f s; exiting", SHUTDOWN_SECONDS)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(EXIT_SHUTDOWN_TIMEOUT)


def run_worker(settings: Settings) -> int:
    # faust runs on the thread's current loop: create the topics on that loop too.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    topics = Topics.from_settings(settings)
    created = loop.run_until_complete(ensure_topics(settings, topics))
    scorer = ScorerApp(settings)
    options: dict[str, Any] = {}
    config = logging_config(settings.log_level, settings.log_format)
    if config is not None:
        options.update(logging_config=config, quiet=True)
    worker = ScorerWorker(
        scorer.app, loglevel=settings.log_level, loop=loop, override_logging=True, **options
    )
    if created:
        log.info("created topics: %s", ", ".join(created))
    worker.execute_from_commandline()  # returns through SystemExit when stopped
    return 0
