"""The live feed: `/feed`, a page of hot-account cards that arrive by
server-sent events (`/feed/events`), newest first, filterable by ICP and tier.

The hub keeps the last `keep` cards, so a page opened late starts full, and
hands each new card to every open page. A slow page never holds the router
up: its queue is bounded and it misses cards rather than growing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from scorer.route.destinations import Job, Sender
from scorer.route.messages import reason_lines, trigger_text
from scorer.route.rules import FeedDestination

PAGE_QUEUE = 1000
PAGE = (resources.files("scorer.route") / "feed.html").read_text()


def card(alert: dict[str, Any]) -> dict[str, Any]:
    """What the page shows of an alert."""
    account = alert.get("account", {})
    score = alert.get("score", {})
    return {
        "alert_id": alert.get("alert_id"),
        "domain": account.get("domain"),
        "name": account.get("name"),
        "icp": alert.get("icp", {}).get("id"),
        "version": alert.get("icp", {}).get("version"),
        "tier": alert.get("tier"),
        "total": score.get("total"),
        "fit": score.get("fit"),
        "intent": score.get("intent"),
        "reasons": reason_lines(alert, limit=3),
        "trigger": trigger_text(alert),
        "at": alert.get("trigger", {}).get("occurred_at"),
    }


class FeedHub:
    def __init__(self, keep: int = 200) -> None:
        self.recent: deque[bytes] = deque(maxlen=keep)
        self.pages: set[asyncio.Queue[bytes]] = set()

    def publish(self, alert: dict[str, Any]) -> None:
        data = orjson.dumps(card(alert))
        self.recent.append(data)
        for queue in self.pages:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(data)

    async def events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        queue: asyncio.Queue[bytes] = asyncio.Queue(PAGE_QUEUE)
        self.pages.add(queue)  # first: cards published while the backlog is written wait here
        try:
            for data in list(self.recent):
                await response.write(b"data: " + data + b"\n\n")
            while True:
                try:
                    data = await asyncio.wait_for(queue.get(), timeout=15)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                await response.write(b"data: " + data + b"\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.pages.discard(queue)
        return response

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/feed", self.page), web.get("/feed/events", self.events)]


class FeedSender(Sender):
    """The feed as a destination: publishing cannot fail."""

    def __init__(self, config: FeedDestination, hub: FeedHub) -> None:
        self.hub = hub

    async def send(self, job: Job) -> str | None:
        self.hub.publish(job.alert)
        return None
