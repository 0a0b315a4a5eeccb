"""`scorer worker`: run the stream worker until SIGTERM or Ctrl-C.

SIGTERM finishes the batch in hand, commits it, leaves the group and exits 0,
normally in about a second. If that has not happened after
`SHUTDOWN_SECONDS` (the broker is gone, say), the process exits with status 3:
nothing is lost, because the next owner resumes from the last commit.
Exit status 2: the deployment is misconfigured (a message says how); 1: the
broker refused us (authentication, authorisation) or the worker failed.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiokafka.errors import (
    AuthenticationFailedError,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)

from scorer.config import Settings
from scorer.errors import ConfigError
from scorer.logs import broker_problem, configure_logging
from scorer.stream.loop import Worker

log = logging.getLogger("scorer.worker")
SHUTDOWN_SECONDS = 8.0  # below the 10 s most orchestrators wait before SIGKILL
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_SHUTDOWN_TIMEOUT = 3
REFUSED = (
    AuthenticationFailedError,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)


async def serve(settings: Settings) -> int:
    outage = configure_logging(settings.log_level, settings.log_format)
    worker = Worker(settings, outage=outage)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, worker.stop)
    main = asyncio.create_task(_run(worker))
    stop = asyncio.create_task(worker.stopping.wait())
    await asyncio.wait([main, stop], return_when=asyncio.FIRST_COMPLETED)
    if main.done():
        return main.result()
    try:
        return await asyncio.wait_for(main, SHUTDOWN_SECONDS)
    except TimeoutError:
        log.error("shutdown did not finish within %.0f s; exiting", SHUTDOWN_SECONDS)
        return EXIT_SHUTDOWN_TIMEOUT


async def _run(worker: Worker) -> int:
    try:
        if not worker.stopping.is_set():
            await worker.start()
        await worker.run()
        return 0
    except ConfigError as exc:
        log.error("%s", exc)
        status = EXIT_CONFIG
    except REFUSED as exc:
        log.error("the broker refused the worker: %s: %s", type(exc).__name__, exc)
        status = EXIT_FAILED
    except KafkaConnectionError as exc:
        log.error(
            "cannot use the broker at %s: %s",
            worker.settings.broker,
            broker_problem(worker.outage, exc),
        )
        status = EXIT_FAILED
    except Exception:
        log.exception("the worker failed")
        status = EXIT_FAILED
    try:
        await asyncio.wait_for(worker.close(), 5.0)
    except Exception:  # closing a half-started worker: best effort
        log.debug("close after failure", exc_info=True)
    return status


def run_worker(settings: Settings) -> int:
    return asyncio.run(serve(settings))
