"""Senders for HubSpot and Salesforce, through their official Python clients.

Both clients are synchronous (urllib3, requests): each sender runs them on its
own thread pool, one thread per allowed concurrent delivery. Both write by
upsert, so a replayed alert updates the same record: the company by domain
(HubSpot `idProperty=domain`, Salesforce an external-id field), and in
Salesforce the Task too (an external-id field holding the alert id). A
HubSpot task has no such key: after a crash between creating it and
recording the delivery, the owner may get the task twice (the same bound as
Slack's message in flight).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

import requests
import urllib3
from hubspot import HubSpot
from hubspot.crm.companies import (
    BatchInputSimplePublicObjectBatchInputUpsert,
    SimplePublicObjectBatchInputUpsert,
)
from hubspot.crm.objects.tasks import (
    AssociationSpec,
    PublicAssociationsForObject,
    PublicObjectId,
    SimplePublicObjectInputForCreate,
)
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceError

from scorer.route.destinations import DeliveryError, Job, Sender, status_error
from scorer.route.messages import task_text
from scorer.route.rules import HubSpotDestination, SalesforceDestination

T = TypeVar("T")
# HubSpot's defined association type "task to company".
TASK_TO_COMPANY = 192


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


class _Threaded(Sender):
    """A synchronous client's calls, run off the event loop."""

    def __init__(self, threads: int) -> None:
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="route-crm")

    async def call(self, function: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.pool, function)

    async def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class HubSpotSender(_Threaded):
    """Upsert the company by domain with score, tier and hot-since; a task for its owner."""

    def __init__(self, config: HubSpotDestination) -> None:
        super().__init__(config.concurrency)
        self.config = config
        self.client: Any = None

    async def start(self) -> None:
        # retry=None: the lane retries, honouring Retry-After, with its own budget.
        self.client = HubSpot(
            access_token=self.config.access_token.get_secret_value(),
            host=self.config.host,
            retry=urllib3.util.Retry(total=0, connect=0, read=0, redirect=0, status=0),
        )

    async def send(self, job: Job) -> str | None:
        try:
            return await self.call(lambda: self._deliver(job))
        except urllib3.exceptions.HTTPError as exc:
            raise DeliveryError(f"hubspot: {type(exc).__name__}", retriable=True) from None
        except Exception as exc:
            status = getattr(exc, "status", None)
            if not isinstance(status, int):
                raise
            if status == 0:  # the client's wrapping of a connection or TLS error
                raise DeliveryError("hubspot: connection error", retriable=True) from None
            headers = getattr(exc, "headers", None) or {}
            raise status_error("hubspot", status, headers.get("Retry-After")) from None

    def _deliver(self, job: Job) -> str:
        config = self.config
        properties = {
            config.score_property: str(job.alert.get("score", {}).get("total")),
            config.tier_property: str(job.alert.get("tier") or ""),
            config.hot_since_property: _iso(job.timestamp),
        }
        name = job.alert.get("account", {}).get("name")
        if name:
            properties["name"] = str(name)
        batch = BatchInputSimplePublicObjectBatchInputUpsert(
            inputs=[
                SimplePublicObjectBatchInputUpsert(
                    id_property="domain", id=job.domain, properties=properties
                )
            ]
        )
        answer = self.client.crm.companies.batch_api.upsert(
            batch_input_simple_public_object_batch_input_upsert=batch,
            _request_timeout=config.timeout,
        )
        company_id = str(answer.results[0].id)
        if config.create_task:
            subject, body = task_text(job.alert)
            task: dict[str, str] = {
                "hs_timestamp": _iso(job.timestamp),
                "hs_task_subject": subject,
                "hs_task_body": body,
                "hs_task_status": "NOT_STARTED",
                "hs_task_priority": "HIGH",
            }
            owner = (job.company or {}).get(config.owner_field)
            if owner:
                task["hubspot_owner_id"] = str(owner)
            link = PublicAssociationsForObject(
                to=PublicObjectId(id=company_id),
                types=[
                    AssociationSpec(
                        association_category="HUBSPOT_DEFINED",
                        association_type_id=TASK_TO_COMPANY,
                    )
                ],
            )
            self.client.crm.objects.tasks.basic_api.create(
                simple_public_object_input_for_create=SimplePublicObjectInputForCreate(
                    properties=task, associations=[link]
                ),
                _request_timeout=config.timeout,
            )
        return company_id


class _Session(requests.Session):
    """A timeout and CA bundle on every request: requests has no session-wide
    timeout (simple-salesforce passes none), and REQUESTS_CA_BUNDLE in the
    environment overrides a session's `verify` (requests issue #3829)."""

    def __init__(self, timeout: float, ca_file: str | None) -> None:
        super().__init__()
        self.timeout = timeout
        self.ca_file = ca_file

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        if self.ca_file:
            kwargs.setdefault("verify", self.ca_file)
        return super().request(*args, **kwargs)


class SalesforceSender(_Threaded):
    """Upsert the Account by an external id, then a Task keyed by the alert id."""

    def __init__(self, config: SalesforceDestination) -> None:
        super().__init__(config.concurrency)
        self.config = config
        self.client: Any = None

    async def start(self) -> None:
        session = _Session(self.config.timeout, self.config.ca_file)
        self.client = Salesforce(
            instance_url=self.config.instance_url,
            session_id=self.config.access_token.get_secret_value(),
            version=self.config.api_version,
            session=session,
        )

    async def close(self) -> None:
        await super().close()
        if self.client is not None:
            self.client.session.close()

    async def send(self, job: Job) -> str | None:
        try:
            return await self.call(lambda: self._deliver(job))
        except SalesforceError as exc:
            # exc.content: the parsed JSON error list, or the body's text.
            # Salesforce refuses with 403 REQUEST_LIMIT_EXCEEDED when the org's API quota is spent.
            limited = "REQUEST_LIMIT_EXCEEDED" in str(exc.content)
            error = status_error("salesforce", 429 if limited else exc.status)
            error.detail = f"salesforce: HTTP {exc.status}" + (" REQUEST_LIMIT_EXCEEDED" * limited)
            raise error from None
        except requests.RequestException as exc:
            raise DeliveryError(f"salesforce: {type(exc).__name__}", retriable=True) from None

    def _deliver(self, job: Job) -> str:
        config = self.config
        fields: dict[str, Any] = {
            config.score_field: job.alert.get("score", {}).get("total"),
            config.tier_field: job.alert.get("tier"),
            config.hot_since_field: _iso(job.timestamp),
        }
        name = job.alert.get("account", {}).get("name")
        fields["Name"] = str(name or job.domain)
        self.client.Account.upsert(f"{config.account_id_field}/{job.domain}", fields)
        account = self.client.Account.get_by_custom_id(config.account_id_field, job.domain)
        account_id = str(account["Id"])
        if config.create_task:
            subject, body = task_text(job.alert)
            task: dict[str, Any] = {
                "Subject": subject,
                "Description": body,
                "WhatId": account_id,
                "Priority": "High",
                "Status": "Not Started",
                "ActivityDate": _iso(job.timestamp)[:10],
            }
            owner = (job.company or {}).get(config.owner_field)
            if owner:
                task["OwnerId"] = str(owner)
            self.client.Task.upsert(f"{config.task_id_field}/{job.alert_id}", task)
        return account_id
