"""Running the router until SIGTERM or Ctrl-C, with the worker's exit statuses.

SIGTERM stops reading, lets the lanes finish what they hold for a few
seconds, commits what was delivered and exits 0; what was not delivered is
delivered again by the next router from the last commit (webhooks and CRMs
deduplicate it; see docs/routing.md for Slack's bound).
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiokafka.errors import KafkaConnectionError

from scorer.config import Settings
from scorer.logs import BrokerOutage, broker_problem, configure_logging
from scorer.route.router import Router
from scorer.route.rules import RoutesDocument
from scorer.stream.worker import EXIT_FAILED, EXIT_SHUTDOWN_TIMEOUT, REFUSED, SHUTDOWN_SECONDS

log = logging.getLogger("scorer.route")


async def serve(settings: Settings, routes: RoutesDocument) -> int:
    outage = configure_logging(settings.log_level, settings.log_format)
    router = Router(settings, routes)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, router.stop)
    main = asyncio.create_task(_run(router, outage))
    stop = asyncio.create_task(router.stopping.wait())
    await asyncio.wait([main, stop], return_when=asyncio.FIRST_COMPLETED)
    if main.done():
        return main.result()
    try:
        return await asyncio.wait_for(main, SHUTDOWN_SECONDS + 2)
    except TimeoutError:
        log.error("shutdown did not finish in time; exiting")
        return EXIT_SHUTDOWN_TIMEOUT


async def _run(router: Router, outage: BrokerOutage) -> int:
    status = 0
    try:
        await router.start()
        log.info(
            "routing %s to %s; feed on :%d/feed",
            router.hot_topic,
            ", ".join(router.routes.destinations),
            router.settings.router_web_port,
        )
        await router.run()
    except REFUSED as exc:
        log.error("the broker refused the router: %s: %s", type(exc).__name__, exc)
        status = EXIT_FAILED
    except KafkaConnectionError as exc:
        log.error(
            "cannot use the broker at %s: %s", router.settings.broker, broker_problem(outage, exc)
        )
        status = EXIT_FAILED
    except Exception:
        log.exception("the router failed")
        status = EXIT_FAILED
    try:
        await asyncio.wait_for(router.close(), 5.0)
    except Exception:
        log.debug("close after failure", exc_info=True)
    return status


def run_router(settings: Settings, routes: RoutesDocument) -> int:
    return asyncio.run(serve(settings, routes))
