"""Helpers of the router tests: secrets for the fakes, a routes file, publishing alerts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from tests.kafka_harness import Deployment
from tests.route.services import (
    HUBSPOT_TOKEN,
    SALESFORCE_TOKEN,
    SLACK_TOKEN,
    WEBHOOK_SECRET,
    Services,
)


def router_env(services: Services) -> dict[str, str]:
    return {
        "SLACK_BOT_TOKEN": SLACK_TOKEN,
        "HUBSPOT_TOKEN": HUBSPOT_TOKEN,
        "SF_TOKEN": SALESFORCE_TOKEN,
        "ROUTE_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }


def write_routes(path: Path, services: Services, text: str) -> Path:
    """A routes file; {slack}, {webhook}, {hubspot}, {salesforce}, {ca} filled in."""
    path.write_text(
        text.format(
            slack=services.url("slack"),
            webhook=services.url("webhook"),
            hubspot=services.url("hubspot"),
            salesforce=services.url("salesforce"),
            ca=services.ca,
        )
    )
    return path


async def publish_alerts(deployment: Deployment, alerts: list[dict[str, Any]]) -> None:
    """Alerts onto this deployment's hot-accounts, keyed by account as the worker does."""
    await deployment.produce(
        (deployment.topic("hot-accounts"), a["account"]["domain"].encode(), orjson.dumps(a))
        for a in alerts
    )
