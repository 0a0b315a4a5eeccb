"""The /feed page in a real browser (headless Chromium): live cards, filters, screenshot."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.kafka_harness import Deployment
from tests.route.browser import Browser
from tests.route.support import publish_alerts

pytestmark = pytest.mark.broker
TIER_A_BORDER = (0xC0, 0x39, 0x2B)
TIER_B_BORDER = (0xE6, 0x7E, 0x22)


def pixels_of(path: Path, colour: tuple[int, int, int]) -> int:
    with Image.open(path) as image:
        counts = image.convert("RGB").getcolors(maxcolors=1 << 24) or []
    return sum(count for count, rgb in counts if rgb == colour)


async def drive(url: str, deployment: Deployment, docs: list[dict[str, Any]], tmp: Path) -> None:
    browser = Browser()
    page = await browser.session()
    try:
        await page.goto(url)
        await page.wait_for("document.getElementById('status').textContent === 'live'")
        await publish_alerts(deployment, docs[:-1])
        count = len(docs) - 1
        await page.wait_for(f"document.querySelectorAll('article.card').length === {count}")
        # A card published while the page is open arrives live, on top.
        await publish_alerts(deployment, docs[-1:])
        newest = docs[-1]["account"]["domain"]
        await page.wait_for(
            f"document.querySelector('article.card .domain').textContent === {newest!r}"
        )
        first = await page.evaluate("document.querySelector('article.card').innerText")
        assert docs[-1]["icp"]["id"] in first and "total " in first

        all_shot = await page.screenshot(tmp / "feed-all.png")
        assert pixels_of(all_shot, TIER_A_BORDER) and pixels_of(all_shot, TIER_B_BORDER)
        # Filter to tier B: only B cards are shown, and no A border is drawn.
        await page.evaluate(
            "(() => { const s = document.getElementById('tier'); s.value = 'B';"
            " s.dispatchEvent(new Event('change')); })()"
        )
        shown = await page.evaluate(
            "[...document.querySelectorAll('article.card')].filter(e => !e.hidden)"
            ".map(e => e.dataset.tier)"
        )
        assert shown and set(shown) == {"B"}
        assert len(shown) == sum(1 for d in docs if d["tier"] == "B")
        b_shot = await page.screenshot(tmp / "feed-tier-b.png")
        assert pixels_of(b_shot, TIER_B_BORDER) and not pixels_of(b_shot, TIER_A_BORDER)
        icps = await page.evaluate(
            "[...document.getElementById('icp').options].map(o => o.value).filter(Boolean)"
        )
        assert sorted(icps) == sorted({d["icp"]["id"] for d in docs})
    finally:
        await page.close()
        browser.close()


def test_feed_page_shows_alerts_live_and_filters_them(
    deployment: Deployment, alerts: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """Cards arrive live by server-sent events, newest first; the tier filter hides the
    others, and the screenshot shows the tier colours the filter leaves."""
    _, docs = alerts
    routes = tmp_path / "routes.yaml"
    routes.write_text("destinations:\n  feed: {type: feed}\ndefault: [feed]\n")
    router = deployment.start_router(routes)
    router.wait_ready(60)
    asyncio.run(drive(f"http://127.0.0.1:{router.port}/feed", deployment, docs, tmp_path))


async def drive_with_token(
    base: str, token: str, deployment: Deployment, docs: list[dict[str, Any]]
) -> None:
    browser = Browser()
    page = await browser.session()
    try:
        await page.goto(f"{base}/feed")
        await page.wait_for("document.body && document.body.innerText.startsWith('401')")
        await page.goto(f"{base}/feed?token={token}")
        await page.wait_for("document.getElementById('status').textContent === 'live'")
        # The token went into a cookie: the address bar no longer shows it.
        assert await page.evaluate("location.search") == ""
        await publish_alerts(deployment, docs)
        await page.wait_for(f"document.querySelectorAll('article.card').length === {len(docs)}")
    finally:
        await page.close()
        browser.close()


def test_feed_page_with_a_token_connects_through_its_cookie(
    deployment: Deployment, alerts: tuple[Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """With SCORER_WEB_TOKEN the page refuses a browser without it; opened once with
    ?token=..., it keeps a cookie, drops the token from its URL and its event stream
    delivers cards live; the token is in no log line."""
    _, docs = alerts
    token = "feed-token-7d1e"
    routes = tmp_path / "routes.yaml"
    routes.write_text("destinations:\n  feed: {type: feed}\ndefault: [feed]\n")
    router = deployment.start_router(routes, SCORER_WEB_TOKEN=token)
    router.wait_ready(60)
    base = f"http://127.0.0.1:{router.port}"
    asyncio.run(drive_with_token(base, token, deployment, docs[:5]))
    assert token not in router.log()
