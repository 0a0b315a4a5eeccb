"""A web port: /metrics (Prometheus), /healthz, /readyz, and any routes a caller adds."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


class WebServer:
    """`/healthz`: the process and its loop answer. `/readyz`: 200 when
    `ready()` gives no reason against it, else 503 with the reason."""

    def __init__(
        self,
        port: int,
        registry: CollectorRegistry,
        not_ready: Callable[[], str | None],
        routes: Sequence[web.RouteDef] = (),
    ) -> None:
        self.port = port
        self.registry = registry
        self.not_ready = not_ready
        self.app = web.Application()
        self.app.add_routes(
            [
                web.get("/healthz", self.healthz),
                web.get("/readyz", self.readyz),
                web.get("/metrics", self.metrics),
                *routes,
            ]
        )
        # A short shutdown: open /feed streams must not hold up SIGTERM's exit.
        self.runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "0.0.0.0", self.port)
        await site.start()

    async def stop(self) -> None:
        await self.runner.cleanup()

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.Response:
        reason = self.not_ready()
        if reason is None:
            return web.Response(text="ready\n")
        return web.Response(text=f"not ready: {reason}\n", status=503)

    async def metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
