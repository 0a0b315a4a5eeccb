"""`scorer route` against a real broker and loopback services that fail like the real ones."""

from __future__ import annotations

import asyncio
import json
import math
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.kafka_harness import Deployment
from tests.observability import ROOT, Prometheus
from tests.route.services import (
    HUBSPOT_TOKEN,
    SALESFORCE_TOKEN,
    SLACK_TOKEN,
    WEBHOOK_SECRET,
    Services,
)
from tests.route.support import publish_alerts, router_env, write_routes

pytestmark = pytest.mark.broker
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "icp-router.json"

ROUTES = """
destinations:
  slack:
    type: slack
    token: ${{SLACK_BOT_TOKEN}}
    channel: "#hot-accounts"
    api_url: {slack}/api/
    rate_per_second: 50
    account_link: "https://crm.example/companies/{{domain}}"
  slack-wrong-channel:
    type: slack
    token: ${{SLACK_BOT_TOKEN}}
    channel: "#nowhere"
    api_url: {slack}/api/
    rate_per_second: 50
  hook:
    type: webhook
    url: {webhook}/hook
    secret: ${{ROUTE_WEBHOOK_SECRET}}
    queue_limit: 20  # small: reading pauses and resumes many times on the way
  hubspot:
    type: hubspot
    access_token: ${{HUBSPOT_TOKEN}}
    host: {hubspot}
  salesforce:
    type: salesforce
    instance_url: {salesforce}
    access_token: ${{SF_TOKEN}}
    ca_file: {ca}
  feed:
    type: feed
rules:
  - name: everything to the webhook and the feed
    to: [hook, feed]
  - match: {{tier: [A]}}
    to: [salesforce, hubspot]
  - match: {{icp: [enterprise-fintech]}}
    to: [slack-wrong-channel]
    stop: true
  - match: {{icp: [midmarket-saas]}}
    to: [slack]
"""


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    prefix = f"{name}{{{wanted}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    raise AssertionError(f"no {prefix!r} in the exposition")


def feed_cards(port: int, count: int) -> list[dict[str, Any]]:
    """The first `count` cards the /feed/events stream sends."""
    cards = []
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/feed/events", timeout=10) as stream:
        for line in stream:
            if line.startswith(b"data: "):
                cards.append(orjson.loads(line[6:]))
                if len(cards) == count:
                    return cards
    return cards


def test_router_delivers_each_alert_to_its_destinations_once(
    deployment: Deployment,
    services: Services,
    alerts: tuple[Path, list[dict[str, Any]]],
    tmp_path: Path,
) -> None:
    """Every alert reaches the destinations its rules pick, through 429s and 500s, exactly
    once; a refused delivery goes to the route DLQ at once; no secret reaches the log."""
    companies, docs = alerts
    deployment.run("firmographics", "load", companies)
    services.slack.script = ["429", "500"]
    services.webhook.script = ["500", "429", "500"]
    services.hubspot.script = ["429", "500"]
    services.salesforce.script = ["REQUEST_LIMIT_EXCEEDED", "500"]
    routes = write_routes(tmp_path / "routes.yaml", services, ROUTES)
    deployment.extra_env.update(router_env(services))
    router = deployment.start_router(routes)
    router.wait_ready(60)
    prometheus = Prometheus(tmp_path, router.port, job="icp-router")
    prometheus.wait_up()
    asyncio.run(publish_alerts(deployment, docs))

    ids = {d["alert_id"] for d in docs}
    tier_a = [d for d in docs if d["tier"] == "A"]
    fintech = [d for d in docs if d["icp"]["id"] == "enterprise-fintech"]
    midmarket = [d for d in docs if d["icp"]["id"] == "midmarket-saas"]
    assert tier_a and fintech and midmarket
    wait_for(lambda: set(services.webhook.posts) == ids, 60, "every alert at the webhook")
    wait_for(lambda: len(services.slack.messages) == len(midmarket), 60, "Slack messages")
    wait_for(lambda: len(services.hubspot.tasks) == len(tier_a), 60, "HubSpot tasks")
    wait_for(lambda: len(services.salesforce.tasks) == len(tier_a), 60, "Salesforce tasks")
    dead = asyncio.run(deployment.consume("route-dlq", until=lambda r: len(r) >= len(fintech)))

    # The webhook: every alert once, signed; the retries were real.
    assert sorted(services.webhook.posts) == sorted(ids)
    assert services.webhook.bad_signatures == 0
    assert services.webhook.failures == {"500": 2, "429": 1}
    # Slack: one message per midmarket alert; an account's later alerts in its thread.
    first: dict[str, str] = {}
    threads: dict[str, list[Any]] = defaultdict(list)
    for message in services.slack.messages:
        header = message["blocks"][0]["text"]["text"]
        domain = header.split("(")[-1].split(")")[0]
        threads[domain].append(message.get("thread_ts"))
        first.setdefault(domain, message["ts"])
    for domain, replies in threads.items():
        assert replies[0] is None
        assert all(reply == first[domain] for reply in replies[1:])
    assert any(len(replies) > 1 for replies in threads.values())
    button = services.slack.messages[0]["blocks"][-1]["elements"][0]["url"]
    assert button.startswith("https://crm.example/companies/")
    # The CRMs: the company upserted once per account, a task per alert.
    assert set(services.hubspot.companies) == {d["account"]["domain"] for d in tier_a}
    assert {t["properties"]["hs_task_subject"][:13] for t in services.hubspot.tasks} == {
        "Hot account: "
    }
    assert set(services.salesforce.accounts) == {d["account"]["domain"] for d in tier_a}
    assert set(services.salesforce.tasks) == {d["alert_id"] for d in tier_a}
    # The refused ones: in the route DLQ with the reason, at once (no retries).
    assert sorted(orjson.loads(r.value)["alert_id"] for r in dead) == sorted(
        d["alert_id"] for d in fintech
    )
    headers = dict(dead[0].headers)
    assert headers["route-reason"] == b"rejected"
    assert headers["route-destination"] == b"slack-wrong-channel"
    assert headers["route-detail"] == b"slack: channel_not_found"

    exposition = router.get("/metrics").decode()
    delivered = {
        name: metric(
            exposition, "scorer_route_deliveries_total", destination=name, outcome="delivered"
        )
        for name in ("hook", "slack", "hubspot", "salesforce", "feed")
    }
    assert delivered == {
        "hook": len(docs),
        "slack": len(midmarket),
        "hubspot": len(tier_a),
        "salesforce": len(tier_a),
        "feed": len(docs),
    }
    assert metric(exposition, "scorer_route_retries_total", destination="hook") == 3
    assert metric(
        exposition, "scorer_route_dlq_total", destination="slack-wrong-channel", reason="rejected"
    ) == len(fintech)
    cards = feed_cards(router.port, len(docs))
    assert {c["alert_id"] for c in cards} == ids

    # Every panel of the router's dashboard answers from a real Prometheus scraping it,
    # and its alert rules load.
    try:
        time.sleep(3)
        dashboard = json.loads(DASHBOARD.read_text())
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                expr = target["expr"].replace("$__rate_interval", "1m")
                values = [float(r["value"][1]) for r in prometheus.query(expr)]
                assert any(math.isfinite(v) for v in values), (panel["title"], expr, values)
        groups = {g["name"]: g for g in prometheus.api("rules")["groups"]}
        assert all(r["health"] == "ok" for r in groups["icp-router"]["rules"])
    finally:
        prometheus.stop()

    router.stop()
    log = router.log_path.read_text()
    for secret in (SLACK_TOKEN, HUBSPOT_TOKEN, SALESFORCE_TOKEN, WEBHOOK_SECRET):
        assert secret not in log
    assert "slack-wrong-channel refused alert" in log


DOWN_ROUTES = """
destinations:
  hook:
    type: webhook
    url: {webhook}/hook
    secret: ${{ROUTE_WEBHOOK_SECRET}}
  hubspot:
    type: hubspot
    access_token: ${{HUBSPOT_TOKEN}}
    host: {hubspot}
default: [hook, hubspot]
"""


def test_a_destination_that_is_down_does_not_hold_up_the_others(
    deployment: Deployment,
    services: Services,
    alerts: tuple[Path, list[dict[str, Any]]],
    tmp_path: Path,
) -> None:
    """HubSpot answers 500 to everything, slowly: the webhook still gets every alert while
    HubSpot's lane is busy, and HubSpot's alerts end in the route DLQ after
    SCORER_ROUTE_MAX_ATTEMPTS tries."""
    _, docs = alerts
    services.hubspot.flap, services.hubspot.latency = 1.0, 0.2
    routes = write_routes(tmp_path / "routes.yaml", services, DOWN_ROUTES)
    deployment.extra_env.update({**router_env(services), "SCORER_ROUTE_MAX_ATTEMPTS": "2"})
    router = deployment.start_router(routes)
    router.wait_ready(60)
    malformed = [  # dead-lettered without waiting for each ack: all land, none lost
        (deployment.topic("hot-accounts"), b"x", b'{"alert_id": "x%d", "account": null}' % i)
        for i in range(20)
    ]
    asyncio.run(deployment.produce(malformed))
    asyncio.run(publish_alerts(deployment, docs))
    ids = {d["alert_id"] for d in docs}
    wait_for(lambda: set(services.webhook.posts) == ids, 60, "every alert at the webhook")
    waiting = metric(
        router.get("/metrics").decode(), "scorer_route_queue_depth", destination="hubspot"
    )
    assert waiting > 0, "HubSpot's lane should still be busy when the webhook is done"
    records = asyncio.run(
        deployment.consume("route-dlq", until=lambda r: len(r) >= len(docs) + len(malformed))
    )
    invalid = [r for r in records if dict(r.headers)["route-reason"] == b"invalid_json"]
    dead = [r for r in records if r not in invalid]
    assert [r.value for r in invalid] == [m[2] for m in malformed]  # counted, not a crash
    assert {orjson.loads(r.value)["alert_id"] for r in dead} == ids
    assert {dict(r.headers)["route-reason"] for r in dead} == {b"max_attempts"}
    assert {dict(r.headers)["route-destination"] for r in dead} == {b"hubspot"}
    assert services.hubspot.requests == 2 * len(docs)
    exposition = router.get("/metrics").decode()
    assert metric(
        exposition, "scorer_route_dlq_total", destination="hubspot", reason="max_attempts"
    ) == len(docs)
    assert metric(exposition, "scorer_route_retries_total", destination="hubspot") == len(docs)
    assert metric(exposition, "scorer_route_alerts_total", outcome="invalid") == len(malformed)

    # HubSpot is back: the route-DLQ records, copied back with their headers, go to
    # HubSpot only; the webhook, which had them, gets nothing again.
    services.hubspot.flap = 0.0
    posts = len(services.webhook.posts)
    asyncio.run(
        deployment.produce(
            ((deployment.topic("hot-accounts"), r.key, r.value) for r in dead[:10]),
            headers=list(dead[0].headers),
        )
    )
    wait_for(lambda: len(services.hubspot.tasks) == 10, 60, "the replayed alerts at HubSpot")
    time.sleep(1)
    assert len(services.webhook.posts) == posts
    assert set(services.hubspot.companies) == {
        orjson.loads(r.value)["account"]["domain"] for r in dead[:10]
    }
