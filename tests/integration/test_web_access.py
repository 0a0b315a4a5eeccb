"""The services' web port over real HTTP: the bind address, and the bearer token
that guards pages with account data while probes and scrapes stay open."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from scorer.service.web import COOKIE, WebServer

TOKEN = "s3cret-token-for-tests"


async def account_page(request: web.Request) -> web.Response:
    return web.Response(text="acme.example: total 81\n")


async def serve(host: str = "127.0.0.1", **options: object) -> WebServer:
    server = WebServer(
        0,
        CollectorRegistry(),
        lambda: None,
        [web.get("/feed", account_page)],
        host=host,
        **options,  # type: ignore[arg-type]
    )
    await server.start()
    return server


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def status(client: aiohttp.ClientSession, url: str, **options: object) -> int:
    async with client.get(url, allow_redirects=False, **options) as response:  # type: ignore[arg-type]
        return response.status


async def test_pages_need_the_token_and_probes_stay_open(client: aiohttp.ClientSession) -> None:
    """With SCORER_WEB_TOKEN, /feed answers 401 without it or with a wrong one and 200
    with the bearer header; /metrics, /healthz and /readyz stay open."""
    server = await serve(token=SecretStr(TOKEN))
    base = f"http://127.0.0.1:{server.port}"
    try:
        for path in ("/healthz", "/readyz", "/metrics"):
            assert await status(client, base + path) == 200, path
        async with client.get(base + "/feed") as refused:
            assert refused.status == 401
            assert refused.headers["WWW-Authenticate"].startswith("Bearer")
            assert "acme" not in await refused.text()
        wrong = {"Authorization": "Bearer not-it"}
        assert await status(client, base + "/feed", headers=wrong) == 401
        right = {"Authorization": f"Bearer {TOKEN}"}
        assert await status(client, base + "/feed", headers=right) == 200
    finally:
        await server.stop()


async def test_a_browser_trades_the_token_in_the_url_for_a_cookie() -> None:
    """/feed?token=T answers 303 to /feed with an HttpOnly, SameSite cookie holding a
    hash of the token (not the token); the cookie alone then opens the page."""
    server = await serve(token=SecretStr(TOKEN))
    base = f"http://127.0.0.1:{server.port}"
    try:
        # unsafe=True: a jar that keeps cookies from an IP address, as browsers do
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            assert await status(browser, base + "/feed?token=wrong") == 401
            async with browser.get(base + "/feed?token=" + TOKEN, allow_redirects=False) as r:
                assert r.status == 303
                assert r.headers["Location"] == "/feed"
                cookie = r.headers["Set-Cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
            assert TOKEN not in cookie
            assert await status(browser, base + "/feed") == 200  # the cookie jar sends it
        async with aiohttp.ClientSession(cookies={COOKIE: "forged"}) as forger:
            assert await status(forger, base + "/feed") == 401
    finally:
        await server.stop()


async def test_token_scope_extends_to_metrics_and_probes(client: aiohttp.ClientSession) -> None:
    """SCORER_WEB_TOKEN_SCOPE=pages+metrics guards /metrics too; all guards the probes."""
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    expected = {
        "pages+metrics": {"/metrics": 401, "/healthz": 200, "/readyz": 200},
        "all": {"/metrics": 401, "/healthz": 401, "/readyz": 401},
    }
    for scope, statuses in expected.items():
        server = await serve(token=SecretStr(TOKEN), scope=scope)
        base = f"http://127.0.0.1:{server.port}"
        try:
            for path, code in statuses.items():
                assert await status(client, base + path) == code, (scope, path)
                assert await status(client, base + path, headers=bearer) == 200, (scope, path)
        finally:
            await server.stop()


async def test_no_token_leaves_every_path_open(client: aiohttp.ClientSession) -> None:
    """Without SCORER_WEB_TOKEN (the default) the feed is open, as before."""
    server = await serve()
    try:
        assert await status(client, f"http://127.0.0.1:{server.port}/feed") == 200
    finally:
        await server.stop()


async def test_the_server_binds_only_the_configured_address(
    client: aiohttp.ClientSession,
) -> None:
    """SCORER_WEB_HOST=127.0.0.2: the port answers there and refuses on 127.0.0.1."""
    server = await serve(host="127.0.0.2")
    try:
        assert await status(client, f"http://127.0.0.2:{server.port}/healthz") == 200
        with pytest.raises(aiohttp.ClientConnectorError):
            await status(client, f"http://127.0.0.1:{server.port}/healthz")
    finally:
        await server.stop()
