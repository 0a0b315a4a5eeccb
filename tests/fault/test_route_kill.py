"""The router under `kill -9` while the webhook flaps: no alert lost, none delivered
twice by idempotency key, and Slack's repeats (it has no idempotency key) counted
and within the documented bound."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.kafka_harness import Deployment
from tests.route.services import Services
from tests.route.support import publish_alerts, router_env, write_routes

pytestmark = pytest.mark.broker
ALERTS = 1_500
KILLS = 3
# docs/routing.md: after a kill, Slack may get again the messages that were in
# flight: at most the destination's concurrency (1 for Slack) per crash.
SLACK_REPEATS_PER_KILL = 1

ROUTES = """
destinations:
  hook:
    type: webhook
    url: {webhook}/hook
    secret: ${{ROUTE_WEBHOOK_SECRET}}
    concurrency: 16
  slack:
    type: slack
    token: ${{SLACK_BOT_TOKEN}}
    channel: "#hot-accounts"
    api_url: {slack}/api/
    rate_per_second: 200
default: [hook, slack]
"""


def many_alerts(docs: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """`count` distinct alerts cut from the sample's (new alert ids)."""
    return [
        {**docs[i % len(docs)], "alert_id": f"{docs[i % len(docs)]['alert_id']}-{i}"}
        for i in range(count)
    ]


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_kill_9_loses_nothing_and_webhooks_get_each_alert_once(
    deployment: Deployment,
    services: Services,
    alerts: tuple[Path, list[dict[str, Any]]],
    tmp_path: Path,
) -> None:
    """kill -9 the router three times mid-stream while the webhook answers 500 to one
    request in five: every alert reaches the webhook exactly once by Idempotency-Key and
    Slack at least once, with repeats within the bound."""
    seed = int(os.environ.get("SCORER_FAULT_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    _, docs = alerts
    sent = many_alerts(docs, ALERTS)
    ids = {d["alert_id"] for d in sent}
    services.webhook.flap, services.webhook.latency = 0.2, 0.01
    services.slack.latency = 0.005
    routes = write_routes(tmp_path / "routes.yaml", services, ROUTES)
    deployment.extra_env.update(
        {**router_env(services), "SCORER_SESSION_TIMEOUT": "6", "SCORER_LOG_LEVEL": "INFO"}
    )
    router = deployment.start_router(routes)
    router.wait_ready(60)
    asyncio.run(publish_alerts(deployment, sent))

    def slack_ids() -> list[str]:
        return [m["metadata"]["event_payload"]["alert_id"] for m in services.slack.messages]

    for kill in range(KILLS):
        target = (kill + 1) * ALERTS // (KILLS + 1) + rng.randrange(-100, 100)
        wait_until(lambda t=target: len(slack_ids()) >= t, 120, f"{target} Slack messages")
        router.kill()
        router = deployment.start_router(routes)
        router.wait_ready(60)
    wait_until(lambda: set(services.webhook.posts) == ids, 180, "every alert at the webhook")
    wait_until(lambda: set(slack_ids()) == ids, 180, "every alert in Slack")
    time.sleep(2)  # let any straggling repeat arrive before counting

    webhook_repeats = len(services.webhook.posts) - len(set(services.webhook.posts))
    slack_repeats = sum(n - 1 for n in Counter(slack_ids()).values())
    print(
        f"\nroute kill test (seed {seed}): {ALERTS} alerts, {KILLS} kills; "
        f"webhook: {len(set(services.webhook.posts))} unique, {webhook_repeats} repeated POSTs "
        f"(deduplicated by Idempotency-Key), {services.webhook.failures['500']} 500s; "
        f"slack: {len(set(slack_ids()))} unique, {slack_repeats} repeats"
    )
    assert set(services.webhook.posts) == ids  # none lost, each key once after dedup
    assert services.webhook.bad_signatures == 0
    assert set(slack_ids()) == ids
    assert slack_repeats <= SLACK_REPEATS_PER_KILL * KILLS, f"seed {seed}"
