"""Run a service until SIGTERM or Ctrl-C: the worker, the router, the collector.

SIGTERM lets the service finish the work in hand, commit it and leave its
group, then exit 0, normally in about a second. If that has not happened
within the service's shutdown time (the broker is gone, say), the process
exits with status 3: nothing is lost, because the next owner resumes from
the last commit. Exit status 2: the deployment is misconfigured (a message
says how); 1: the broker refused us (authentication, authorisation) or the
service failed.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Protocol

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
from scorer.logs import BrokerOutage, broker_problem

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


class Service(Protocol):
    """A long-running process body: the worker, or the router."""

    settings: Settings
    outage: BrokerOutage
    stopping: asyncio.Event

    def stop(self) -> None: ...

    async def start(self) -> None: ...

    async def run(self) -> None: ...

    async def close(self) -> None: ...


async def serve_service(
    service: Service, name: str, logger: logging.Logger, shutdown_seconds: float
) -> int:
    """Run until it ends or SIGTERM/SIGINT; the exit statuses of the module docstring."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, service.stop)
    main = asyncio.create_task(_run(service, name, logger))
    stop = asyncio.create_task(service.stopping.wait())
    await asyncio.wait([main, stop], return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    if main.done():
        return main.result()
    try:
        return await asyncio.wait_for(main, shutdown_seconds)
    except TimeoutError:
        logger.error("shutdown did not finish within %.0f s; exiting", shutdown_seconds)
        return EXIT_SHUTDOWN_TIMEOUT


async def _run(service: Service, name: str, logger: logging.Logger) -> int:
    status = 0
    try:
        if not service.stopping.is_set():
            await service.start()
        await service.run()
    except ConfigError as exc:
        logger.error("%s", exc)
        status = EXIT_CONFIG
    except REFUSED as exc:
        logger.error("the broker refused the %s: %s: %s", name, type(exc).__name__, exc)
        status = EXIT_FAILED
    except KafkaConnectionError as exc:
        logger.error(
            "cannot use the broker at %s: %s",
            service.settings.broker,
            broker_problem(service.outage, exc),
        )
        status = EXIT_FAILED
    except Exception:
        logger.exception("the %s failed", name)
        status = EXIT_FAILED
    try:
        await asyncio.wait_for(service.close(), 5.0)
    except Exception:  # closing a half-started service: best effort
        logger.debug("close after failure", exc_info=True)
    return status
