"""Senders for webhooks and Slack: one alert out, or a `DeliveryError` saying
whether trying again can help and when.

Each sender owns its client (an aiohttp session, a slack_sdk client) between
`start` and `close`. `send` returns a reference worth keeping in the delivery
log (the Slack message's ts, which later alerts thread under), or None.
"""

from __future__ import annotations

import logging
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from scorer.route.messages import account_link, sign, slack_blocks
from scorer.route.rules import SlackDestination, WebhookDestination

THREADS_KEPT = 50_000  # accounts whose Slack thread is remembered before old ones are dropped
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
# Slack's answers that no retry can fix: the token, the channel or the message is wrong.
SLACK_PERMANENT = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "invalid_blocks",
        "invalid_blocks_format",
        "msg_too_long",
        "no_text",
        "restricted_action",
        "invalid_token",
        "no_service",
        "channel_is_archived",
        "invalid_payload",
        "action_prohibited",
        "posting_to_general_channel_denied",
        "user_not_found",
        "no_service_id",
        "no_team",
        "team_disabled",
        "invalid_arguments",
        "not_allowed_token_type",
        "invalid_metadata_format",
        "invalid_metadata_schema",
        "metadata_too_large",
    }
)
# slack_sdk logs request URLs (an incoming webhook's URL is its secret) when its
# logger's level is NOTSET; this one never logs below WARNING.
SLACK_LOG = logging.getLogger("scorer.route.slack")
SLACK_LOG.setLevel(logging.WARNING)


class DeliveryError(Exception):
    """A failed delivery. `detail` names what went wrong, never a secret or payload."""

    def __init__(self, detail: str, retriable: bool, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retriable = retriable
        self.retry_after = retry_after


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form); None when absent or odd."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def status_error(where: str, status: int, retry: str | None = None) -> DeliveryError:
    return DeliveryError(f"{where}: HTTP {status}", status in RETRY_STATUSES, retry_after(retry))


@dataclass
class Job:
    """One alert for one destination."""

    alert: dict[str, Any]
    raw: bytes
    company: dict[str, Any] | None
    partition: int
    offset: int
    timestamp: float  # the alert record's time, seconds
    attempts: int = 0
    # The Pending of the assignment that dispatched it: a job left over from an
    # earlier assignment of its partition finishes against that one, never the new.
    pending: Any = field(default=None, repr=False)
    replayed: bool = False  # copied back from the route DLQ: delivered whatever the log says

    @property
    def alert_id(self) -> str:
        return str(self.alert.get("alert_id"))

    @property
    def domain(self) -> str:
        return str(self.alert.get("account", {}).get("domain", ""))


class Sender:
    """A destination's client. `start`/`close` own its connections; `remember` takes
    a reference back from the delivery log (only Slack keeps any)."""

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def send(self, job: Job) -> str | None:
        raise NotImplementedError

    def remember(self, job_domain: str, ref: str, at: float) -> None:
        return None


class WebhookSender(Sender):
    """POST the alert bytes with an Idempotency-Key and an HMAC-SHA256 signature."""

    def __init__(self, config: WebhookDestination) -> None:
        self.config = config
        self.secret = config.secret.get_secret_value().encode()
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        context = ssl.create_default_context(cafile=self.config.ca_file)  # verification on
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.config.concurrency, ssl=context),
            timeout=aiohttp.ClientTimeout(total=self.config.timeout),
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def send(self, job: Job) -> str | None:
        assert self.session is not None
        stamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": job.alert_id,
            "X-Scorer-Timestamp": str(stamp),
            "X-Scorer-Signature": sign(self.secret, stamp, job.raw),
        }
        try:
            async with self.session.post(self.config.url, data=job.raw, headers=headers) as reply:
                await reply.read()
                # 409: a receiver that deduplicates says it has this Idempotency-Key.
                if reply.status >= 300 and reply.status != 409:
                    raise status_error("webhook", reply.status, reply.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryError(f"webhook: {type(exc).__name__}", retriable=True) from None
        return None


def slack_failure(exc: SlackApiError) -> DeliveryError:
    """Slack's error code (or HTTP status) and whether a retry can help."""
    response = exc.response  # a SlackResponse, or aiohttp's when the body was not JSON
    data = getattr(response, "data", None)
    code = str(data.get("error", "")) if isinstance(data, dict) else ""
    status = int(getattr(response, "status_code", 0) or getattr(response, "status", 0) or 0)
    headers = getattr(response, "headers", None) or {}
    return DeliveryError(
        f"slack: {code or f'HTTP {status}'}",
        retriable=code not in SLACK_PERMANENT and status not in (400, 401, 403, 404),
        retry_after=retry_after(headers.get("Retry-After")),
    )


class SlackSender(Sender):
    """chat.postMessage (threads an account's later alerts) or an incoming webhook."""

    def __init__(self, config: SlackDestination) -> None:
        self.config = config
        self.client: AsyncWebClient | None = None
        self.hook: AsyncWebhookClient | None = None
        self.threads: dict[str, tuple[str, float]] = {}  # domain -> (ts, first alert time)
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        timeout = int(max(1, self.config.timeout))
        # slack_sdk's own handler retries a 429 after Retry-After; the lane retries the rest.
        handlers: list[AsyncRetryHandler] = [AsyncRateLimitErrorRetryHandler(max_retry_count=1)]
        self.session = aiohttp.ClientSession()
        if self.config.token is not None:
            self.client = AsyncWebClient(
                token=self.config.token.get_secret_value(),
                base_url=self.config.api_url,
                timeout=timeout,
                retry_handlers=handlers,
                session=self.session,
                logger=SLACK_LOG,
            )
        elif self.config.webhook_url is not None:
            self.hook = AsyncWebhookClient(
                self.config.webhook_url.get_secret_value(),
                timeout=timeout,
                retry_handlers=handlers,
                session=self.session,
                logger=SLACK_LOG,
            )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    def remember(self, job_domain: str, ref: str, at: float) -> None:
        """A message from the delivery log: later alerts may thread under it."""
        known = self.threads.get(job_domain)
        if known is None or known[1] < at:
            self.threads[job_domain] = (ref, at)

    def _thread(self, job: Job) -> str | None:
        known = self.threads.get(job.domain)
        if known is None or job.timestamp - known[1] > self.config.thread_window:
            return None
        return known[0]

    async def send(self, job: Job) -> str | None:
        link = account_link(self.config.account_link, job.domain, job.company)
        text, blocks = slack_blocks(job.alert, link)
        try:
            if self.hook is not None:
                reply = await self.hook.send(text=text, blocks=blocks)
                if reply.status_code >= 300:
                    body = (reply.body or "").strip()[:60]
                    retry = reply.headers.get("Retry-After") if reply.headers else None
                    error = status_error(f"slack webhook ({body})", reply.status_code, retry)
                    error.retriable = error.retriable and body not in SLACK_PERMANENT
                    raise error
                return None
            assert self.client is not None
            thread = self._thread(job)
            # Message metadata carries the alert id: apps and audits can tie the
            # message back to the alert (and tests count repeats by it).
            answer = await self.client.chat_postMessage(
                channel=self.config.channel or "",
                text=text,
                blocks=blocks,
                thread_ts=thread,
                metadata={"event_type": "hot_account", "event_payload": {"alert_id": job.alert_id}},
            )
        except SlackApiError as exc:
            raise slack_failure(exc) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryError(f"slack: {type(exc).__name__}", retriable=True) from None
        ts = str(answer.get("ts", ""))
        if thread is None and ts:
            self.threads[job.domain] = (ts, job.timestamp)
            if len(self.threads) > THREADS_KEPT:  # bounded: forget threads past the window
                cutoff = job.timestamp - self.config.thread_window
                self.threads = {d: t for d, t in self.threads.items() if t[1] >= cutoff}
        return ts or None
