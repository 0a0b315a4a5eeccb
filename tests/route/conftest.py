"""Fixtures of the router tests: the fake services, sample alerts, a routes file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.streaming import batch_alerts, sample
from tests.kafka_harness import Deployment
from tests.route.services import (
    HUBSPOT_TOKEN,
    SALESFORCE_TOKEN,
    SLACK_TOKEN,
    WEBHOOK_SECRET,
    Services,
)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    """Slack, a webhook receiver, HubSpot and Salesforce fakes on loopback."""
    started = Services(tmp_path / "tls")
    yield started
    started.stop()


@pytest.fixture(scope="session")
def alerts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """Companies and the hot-account alerts `scorer score` gives for synthetic traffic."""
    tmp = tmp_path_factory.mktemp("alerts")
    companies, events = sample(tmp, 400, 12_000, seed=5)
    return companies, batch_alerts(tmp, companies, events)


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
