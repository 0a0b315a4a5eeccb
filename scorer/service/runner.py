"""Run a service until SIGTERM or Ctrl-C: the worker, the router, the collector.

SIGTERM lets the service finish the work in hand, commit it and leave its
group, then exit 0, normally in about a second. If that has not happened
within the service's shutdown time (the broker is gone, say), the process
exits with status 3: nothing is lost, because the next owner resumes from
the last commit. Exit status 2: the deployment is misconfigured (a message
says how); 1: the broker refused us (authentication, authorisation) or the
service failed. A refusal for want of an ACL is one line naming the
permission and the ACL that grants it (`scorer.kafka.acls.explain`), and
the service stops: retrying cannot help.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any, Protocol

from aiokafka.errors import AuthenticationFailedError, KafkaConnectionError, KafkaError

from scorer.config import Settings
from scorer.errors import AccessDenied, ConfigError
from scorer.kafka.refusals import REFUSED, explain
from scorer.logs import BrokerOutage, broker_problem

EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_SHUTDOWN_TIMEOUT = 3


class Service(Protocol):
    """A long-running process body: the worker, or the router."""

    settings: Settings
    outage: BrokerOutage
    stopping: asyncio.Event

    def stop(self) -> None: ...

    async def start(self) -> None: ...

    async def run(self) -> None: ...

    async def close(self) -> None: ...


async def until(awaitable: Any, *watched: asyncio.Task[Any]) -> None:
    """Wait for `awaitable`, unless a watched background task (a follower, say)
    fails first: then raise its error rather than wait forever."""
    waiter = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait([waiter, *watched], return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        error = None if task is waiter or task.cancelled() else task.exception()
        if error is not None:
            waiter.cancel()
            raise error
    if not waiter.done():
        waiter.cancel()


def raise_failed(tasks: list[asyncio.Task[Any]]) -> None:
    """Raise the error of the first background task that failed, if any."""
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


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
    except AccessDenied as exc:
        logger.error("%s", exc)
        _quiet_after_refusal()
        status = EXIT_FAILED
    except AuthenticationFailedError as exc:
        logger.error(
            "the broker refused the %s: %s",
            name,
            broker_problem(service.outage, exc),
        )
        status = EXIT_FAILED
    except REFUSED as exc:
        logger.error("%s", explain(exc, name, service.settings))
        _quiet_after_refusal()
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


def _quiet_after_refusal() -> None:
    """After the one line about a refusal, the Kafka client's own futures that
    carry the same refusal (a transaction's, its sends') are dropped unread as
    the service stops; asyncio would log each with a traceback. Drop those
    reports; anything else still reaches the default handler."""
    loop = asyncio.get_running_loop()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if isinstance(error, KafkaError) and "never retrieved" in context.get("message", ""):
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
