"""Each sender against its loopback service, and a lane's retry and dead-letter rules:
what is retried (429 with Retry-After, 5xx), what is refused for good, and when."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from scorer.route.crm import HubSpotSender, SalesforceSender
from scorer.route.delivery import Lane, Limits
from scorer.route.destinations import DeliveryError, Job, SlackSender, WebhookSender
from scorer.route.metrics import RouteMetrics
from scorer.route.rules import parse_routes
from tests.route.services import (
    HUBSPOT_TOKEN,
    SALESFORCE_TOKEN,
    SLACK_TOKEN,
    WEBHOOK_SECRET,
    Services,
)

ALERT: dict[str, Any] = {
    "alert_id": "a-1",
    "account": {"domain": "acme.example", "name": "Acme"},
    "icp": {"id": "midmarket-saas", "version": 3},
    "score": {"total": 82.0, "fit": 90.0, "intent": 70.0},
    "tier": "A",
    "reasons": [{"field": "industry", "matched": True, "weight": 3, "value": "software"}],
    "trigger": {"event_id": "e-1", "type": "page_view", "occurred_at": "2026-11-30T10:00:00Z"},
}


def job(**changes: Any) -> Job:
    return Job({**ALERT, **changes}, b'{"alert_id": "a-1"}', {"hubspot_owner_id": "77"}, 0, 0,
               time.time())  # fmt: skip


def destination(monkeypatch: pytest.MonkeyPatch, **config: Any) -> Any:
    for name, value in {
        "T_SLACK": SLACK_TOKEN,
        "T_HOOK": WEBHOOK_SECRET,
        "T_HUBSPOT": HUBSPOT_TOKEN,
        "T_SF": SALESFORCE_TOKEN,
        "T_WRONG": "wrong",
    }.items():
        monkeypatch.setenv(name, value)
    return parse_routes({"destinations": {"d": config}}).destinations["d"]


async def attempt(sender: Any, item: Job) -> Any:
    await sender.start()
    try:
        return await sender.send(item)
    except DeliveryError as exc:
        return exc
    finally:
        await sender.close()


async def test_slack_incoming_webhook_and_its_errors(
    services: Services, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An incoming webhook gets the blocks; 429 is retriable with its Retry-After after
    slack_sdk's own retry; `no_service` (a deleted webhook) is refused for good."""
    config = destination(monkeypatch, type="slack", webhook_url="${T_SLACK}", rate_per_second=None)
    url = services.url("slack") + "/services/T000/B000/hook"
    config = config.model_copy(update={"webhook_url": type(config.webhook_url)(url)})
    assert await attempt(SlackSender(config), job()) is None
    assert services.slack.messages[-1]["blocks"][0]["type"] == "header"
    services.slack.script = ["429", "429"]
    caplog.set_level(logging.DEBUG)
    limited = await attempt(SlackSender(config), job())
    assert url not in caplog.text  # the webhook URL is the secret: never logged
    assert isinstance(limited, DeliveryError) and limited.retriable
    assert limited.retry_after == 1.0
    services.slack.script = ["no_service"]
    gone = await attempt(SlackSender(config), job())
    assert isinstance(gone, DeliveryError) and not gone.retriable


async def test_slack_bad_token_is_refused_not_retried(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """invalid_auth is permanent and its message carries Slack's code, not the token."""
    config = destination(
        monkeypatch, type="slack", token="${T_WRONG}", channel="#hot-accounts",
        api_url=services.url("slack") + "/api/",
    )  # fmt: skip
    refused = await attempt(SlackSender(config), job())
    assert isinstance(refused, DeliveryError)
    assert (refused.detail, refused.retriable) == ("slack: invalid_auth", False)


async def test_webhook_answers(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    """2xx delivers; 500 and 429 are retriable (with Retry-After); a wrong secret's 401
    is refused for good."""
    config = destination(
        monkeypatch, type="webhook", url=services.url("webhook") + "/hook", secret="${T_HOOK}"
    )
    assert await attempt(WebhookSender(config), job()) is None
    services.webhook.script = ["500"]
    failed = await attempt(WebhookSender(config), job())
    assert isinstance(failed, DeliveryError) and failed.retriable
    services.webhook.script = ["429"]
    limited = await attempt(WebhookSender(config), job())
    assert isinstance(limited, DeliveryError) and limited.retry_after == 1.0
    wrong = config.model_copy(update={"secret": type(config.secret)("not-the-secret")})
    refused = await attempt(WebhookSender(wrong), job())
    assert isinstance(refused, DeliveryError) and not refused.retriable
    assert services.webhook.bad_signatures == 1


async def test_hubspot_upserts_and_tasks_for_the_owner(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A company upsert by domain with score, tier and hot-since; a task for the owner
    associated to it; 429 retriable; a bad token refused for good."""
    config = destination(
        monkeypatch, type="hubspot", access_token="${T_HUBSPOT}", host=services.url("hubspot")
    )
    company_id = await attempt(HubSpotSender(config), job())
    company = services.hubspot.companies["acme.example"]
    assert company["id"] == company_id
    assert company["properties"]["icp_score"] == "82.0"
    assert company["properties"]["icp_tier"] == "A"
    task = services.hubspot.tasks[-1]
    assert task["properties"]["hubspot_owner_id"] == "77"
    assert task["associations"][0]["to"]["id"] == company_id
    services.hubspot.script = ["429"]
    limited = await attempt(HubSpotSender(config), job())
    assert isinstance(limited, DeliveryError) and limited.retriable
    wrong = config.model_copy(update={"access_token": type(config.access_token)("nope")})
    refused = await attempt(HubSpotSender(wrong), job())
    assert isinstance(refused, DeliveryError) and refused.detail == "hubspot: HTTP 401"
    assert not refused.retriable


async def test_salesforce_upserts_account_and_task_by_external_ids(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Account and Task upserts by external id over TLS; a replay updates the same Task;
    REQUEST_LIMIT_EXCEEDED is retriable; an expired session is refused for good."""
    config = destination(
        monkeypatch, type="salesforce", instance_url=services.url("salesforce"),
        access_token="${T_SF}", ca_file=str(services.ca),
    )  # fmt: skip
    account_id = await attempt(SalesforceSender(config), job())
    await attempt(SalesforceSender(config), job())
    assert services.salesforce.accounts["acme.example"]["Id"] == account_id
    assert list(services.salesforce.tasks) == ["a-1"]
    assert services.salesforce.tasks["a-1"]["WhatId"] == account_id
    services.salesforce.script = ["REQUEST_LIMIT_EXCEEDED"]
    limited = await attempt(SalesforceSender(config), job())
    assert isinstance(limited, DeliveryError) and limited.retriable
    assert "REQUEST_LIMIT_EXCEEDED" in limited.detail
    wrong = config.model_copy(update={"access_token": type(config.access_token)("expired")})
    refused = await attempt(SalesforceSender(wrong), job())
    assert isinstance(refused, DeliveryError) and not refused.retriable


class Scripted:
    """A sender that fails as told, then delivers."""

    def __init__(self, *failures: DeliveryError) -> None:
        self.failures = list(failures)
        self.calls: list[float] = []

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def remember(self, job_domain: str, ref: str, at: float) -> None: ...

    async def send(self, item: Job) -> str | None:
        self.calls.append(time.monotonic())
        if self.failures:
            raise self.failures.pop(0)
        return "ref"


class Broken(Scripted):
    async def send(self, item: Job) -> str | None:
        self.calls.append(time.monotonic())
        raise RuntimeError("an answer nobody expected")


async def run_lane(
    sender: Scripted, item: Job, attempts: int = 3, age: float = 60, seen: bool = False
) -> list[Any]:
    from prometheus_client import CollectorRegistry

    finished: list[Any] = []
    done = asyncio.Event()

    async def finish(name: str, job: Job, outcome: str, ref: str | None, reason: str) -> None:
        finished.append((outcome, ref, reason))
        done.set()

    metrics = RouteMetrics(CollectorRegistry(), ["d"])
    lane = Lane("d", sender, 1, None, 10, Limits(attempts, age), metrics, finish, lambda n, j: seen)
    lane.start()
    lane.queue.put_nowait(item)
    await asyncio.wait_for(done.wait(), 30)
    await lane.stop()
    return finished


async def test_lane_retries_then_delivers_honouring_retry_after() -> None:
    """Two retriable failures, the first with Retry-After 0.3 s, then success."""
    sender = Scripted(DeliveryError("x", True, 0.3), DeliveryError("y", True))
    assert await run_lane(sender, job()) == [("delivered", "ref", "")]
    assert len(sender.calls) == 3 and sender.calls[1] - sender.calls[0] >= 0.3


async def test_lane_gives_up_after_max_attempts_and_at_once_when_refused() -> None:
    """Retriable failures end in the DLQ after max attempts; a refusal ends there at once."""
    always = Scripted(*(DeliveryError("500", True, 0.01) for _ in range(5)))
    assert await run_lane(always, job(), attempts=3) == [("dlq", "500", "max_attempts")]
    assert len(always.calls) == 3
    refused = Scripted(DeliveryError("slack: invalid_auth", False))
    assert await run_lane(refused, job()) == [("dlq", "slack: invalid_auth", "rejected")]
    assert len(refused.calls) == 1


async def test_lane_sends_an_alert_older_than_max_age_to_the_dlq_untried() -> None:
    """An alert older than SCORER_ROUTE_MAX_AGE is dead-lettered without an attempt."""
    sender = Scripted()
    old = job()
    old.timestamp -= 120
    assert await run_lane(sender, old, age=60) == [("dlq", None, "max_age")]
    assert sender.calls == []


async def test_lane_sends_an_unexpected_failure_to_the_dlq_instead_of_sticking() -> None:
    """A sender raising something unexpected ends in the DLQ (reason error), so the
    offset can still be committed."""
    broken = Broken()
    assert await run_lane(broken, job()) == [("dlq", "d: RuntimeError", "error")]
    assert len(broken.calls) == 1


async def test_lane_skips_a_job_an_earlier_copy_delivered() -> None:
    """After a rebalance the same alert can be queued twice: the second is skipped."""
    sender = Scripted()
    assert await run_lane(sender, job(), seen=True) == [("skipped", None, "")]
    assert sender.calls == []
