"""Running the router until SIGTERM or Ctrl-C, with the worker's exit statuses.

SIGTERM stops reading, lets the lanes finish what they hold for a few
seconds, commits what was delivered and exits 0; what was not delivered is
delivered again by the next router from the last commit (webhooks and CRMs
deduplicate it; see docs/routing.md for Slack's bound).
"""

from __future__ import annotations

import asyncio
import logging

from scorer.config import Settings
from scorer.logs import configure_logging
from scorer.route.router import Router
from scorer.route.rules import RoutesDocument
from scorer.service.runner import serve_service

log = logging.getLogger("scorer.route")


async def serve(settings: Settings, routes: RoutesDocument) -> int:
    outage = configure_logging(settings.log_level, settings.log_format)
    # The lanes may finish deliveries for up to 6 s (Router.drain) before the commit.
    return await serve_service(Router(settings, routes, outage=outage), "router", log, 10.0)


def run_router(settings: Settings, routes: RoutesDocument) -> int:
    return asyncio.run(serve(settings, routes))
