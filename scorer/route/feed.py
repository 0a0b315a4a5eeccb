"""The live feed: `/feed`, a page of hot-account cards that arrive by
server-sent events (`/feed/events`), newest first, filterable by ICP and tier.

The hub keeps the last `keep` cards, so a page opened late starts full, and
hands each new card to every open page. A slow page never holds the router
up: its queue is bounded and it misses cards rather than growing. An
erasure (`forget`) removes the cards it covers from the hub and, by an
`erase` event naming their alert ids, from every open page.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from scorer.errors import InvalidInputError
from scorer.route.destinations import Job, Sender
from scorer.route.messages import reason_lines, trigger_text
from scorer.route.rules import FeedDestination
from scorer.timefmt import parse_event_time

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


# What an erasure looks at in a card: account domain, trigger time, lead id (or None).
Covered = Callable[[str, float, str | None], bool]


def alert_subject(alert: dict[str, Any]) -> tuple[str, float, str | None]:
    """The account, trigger time and lead id an alert is about, for erasure."""
    domain = str(alert.get("account", {}).get("domain"))
    try:
        at = parse_event_time(alert.get("trigger", {}).get("occurred_at"))
    except InvalidInputError:  # no readable time: covered by any erasure of its account or lead
        at = float("-inf")
    lead = alert.get("lead")
    lead_id = lead.get("lead_id") if isinstance(lead, dict) else None
    return domain, at, lead_id if isinstance(lead_id, str) else None


class FeedHub:
    def __init__(self, keep: int = 200) -> None:
        # (alert id, what an erasure looks at, the card's JSON)
        self.recent: deque[tuple[str, tuple[str, float, str | None], bytes]] = deque(maxlen=keep)
        self.pages: set[asyncio.Queue[bytes]] = set()

    def publish(self, alert: dict[str, Any]) -> None:
        data = orjson.dumps(card(alert))
        self.recent.append((str(alert.get("alert_id")), alert_subject(alert), data))
        self._send(b"data: " + data + b"\n\n")

    def forget(self, covered: Covered) -> int:
        """The cards an erasure covers leave the hub and the open pages; how many."""
        gone = [alert_id for alert_id, subject, _ in self.recent if covered(*subject)]
        if gone:
            kept = [entry for entry in self.recent if not covered(*entry[1])]
            self.recent = deque(kept, maxlen=self.recent.maxlen)
            self._send(b"event: erase\ndata: " + orjson.dumps(gone) + b"\n\n")
        return len(gone)

    def _send(self, frame: bytes) -> None:
        for queue in self.pages:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(frame)

    async def events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        queue: asyncio.Queue[bytes] = asyncio.Queue(PAGE_QUEUE)
        self.pages.add(queue)  # first: cards published while the backlog is written wait here
        try:
            for _, _, data in list(self.recent):
                await response.write(b"data: " + data + b"\n\n")
            while True:
                try:
                    frame = await asyncio.wait_for(queue.get(), timeout=15)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                await response.write(frame)
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
