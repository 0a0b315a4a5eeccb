"""A web port: /metrics (Prometheus), /healthz, /readyz, and any pages a caller adds.

It binds `SCORER_WEB_HOST`. With `SCORER_WEB_TOKEN` set, the caller's pages
(the router's /feed and its event stream: account names, scores, reasons)
answer only a request that carries the token: an `Authorization: Bearer`
header (curl, a proxy), or the cookie a browser gets by opening a page once
with `?token=...` (it is then sent back to the same URL without the token,
so the token does not stay in the address bar or the history; an
EventSource sends the cookie, where it could not send a header). Probes and
scrapes stay open unless `SCORER_WEB_TOKEN_SCOPE` says otherwise: `pages`
(the default), `pages+metrics`, or `all`. Tokens are compared in constant
time; the cookie holds a hash of the token, never the token.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import SecretStr

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
COOKIE = "scorer_token"
SCOPES = ("pages", "pages+metrics", "all")


class TokenGuard:
    """Checks a request for the bearer token, or the cookie derived from it."""

    def __init__(self, token: SecretStr) -> None:
        self.token = token.get_secret_value().encode()
        self.cookie = hashlib.sha256(b"scorer-web-cookie:" + self.token).hexdigest()

    def allows(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token):
            return True
        cookie = request.cookies.get(COOKIE, "")
        return hmac.compare_digest(cookie.encode(), self.cookie.encode())

    def wrap(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            given = request.query.get("token")
            if given is not None:
                if not hmac.compare_digest(given.encode(), self.token):
                    return self.refuse()
                # Keep it in a cookie, and drop it from the URL the browser shows.
                query = {k: v for k, v in request.query.items() if k != "token"}
                target = request.rel_url.with_query(query)
                response = web.Response(status=303, headers={"Location": str(target)})
                secure = request.secure or request.headers.get("X-Forwarded-Proto") == "https"
                response.set_cookie(
                    COOKIE,
                    self.cookie,
                    path="/",
                    httponly=True,
                    samesite="Strict",
                    secure=secure,
                )
                return response
            if not self.allows(request):
                return self.refuse()
            return await handler(request)

        return guarded

    @staticmethod
    def refuse() -> web.Response:
        return web.Response(
            status=401,
            text="401: this page needs the token (SCORER_WEB_TOKEN): open it once with "
            "?token=..., or send Authorization: Bearer ...\n",
            headers={"WWW-Authenticate": 'Bearer realm="scorer"'},
        )


class WebServer:
    """`/healthz`: the process and its loop answer. `/readyz`: 200 when
    `ready()` gives no reason against it, else 503 with the reason."""

    def __init__(
        self,
        port: int,
        registry: CollectorRegistry,
        not_ready: Callable[[], str | None],
        routes: Sequence[web.RouteDef] = (),
        host: str = "0.0.0.0",
        token: SecretStr | None = None,
        scope: str = "pages",
    ) -> None:
        if scope not in SCOPES:
            raise ValueError(f"token scope {scope!r}: one of {', '.join(SCOPES)}")
        self.port = port
        self.host = host
        self.registry = registry
        self.not_ready = not_ready
        guard = TokenGuard(token) if token is not None and token.get_secret_value() else None

        def protect(handler: Handler, when: bool = True) -> Handler:
            return guard.wrap(handler) if guard is not None and when else handler

        self.app = web.Application()
        self.app.add_routes(
            [
                web.get("/healthz", protect(self.healthz, scope == "all")),
                web.get("/readyz", protect(self.readyz, scope == "all")),
                web.get("/metrics", protect(self.metrics, scope != "pages")),
                *(web.route(r.method, r.path, protect(r.handler), **r.kwargs) for r in routes),
            ]
        )
        # A short shutdown: open /feed streams must not hold up SIGTERM's exit.
        self.runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port)
        await site.start()
        if not self.port:  # 0: a free port, for tests; say which
            self.port = self.runner.addresses[0][1]

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
