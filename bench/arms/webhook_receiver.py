"""A webhook receiver for the routing benchmark, in its own process: answers
every POST after LATENCY seconds, like a real service, and measures each
alert's latency from the `sent_ms` the bench wrote into it to the moment the
answer goes back (what the router sees as delivered).

    python -m bench.arms.webhook_receiver PORT LATENCY

GET /stats: {"posts", "unique"} (cheap: the bench polls it every second);
GET /latency: {"latency_ms": [...since the last /reset]}; POST /reset clears it.
"""

from __future__ import annotations

import asyncio
import sys
import time

import orjson
from aiohttp import web


class Receiver:
    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.posts = 0
        self.keys: set[str] = set()
        self.latencies: list[float] = []

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        await asyncio.sleep(self.latency)
        self.posts += 1
        self.keys.add(request.headers.get("Idempotency-Key", ""))
        sent = orjson.loads(body).get("sent_ms")
        if sent:
            self.latencies.append(time.time() * 1000 - sent)
        return web.Response(text="ok")

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response({"posts": self.posts, "unique": len(self.keys)})

    async def latency_list(self, request: web.Request) -> web.Response:
        return web.json_response({"latency_ms": self.latencies})

    async def reset(self, request: web.Request) -> web.Response:
        self.latencies = []
        return web.Response(text="ok")


def main() -> None:
    port, latency = int(sys.argv[1]), float(sys.argv[2])
    receiver = Receiver(latency)
    app = web.Application()
    app.add_routes(
        [
            web.post("/hook", receiver.hook),
            web.get("/stats", receiver.stats),
            web.get("/latency", receiver.latency_list),
            web.post("/reset", receiver.reset),
        ]
    )
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
