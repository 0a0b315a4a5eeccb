"""HubSpot contact-creation webhooks to lead_created events.

A request is verified with HubSpot's v3 signature before anything else:
base64(HMAC-SHA256(app secret, method + URI + body + timestamp)) in
`X-HubSpot-Signature-v3`, the timestamp (ms) in `X-HubSpot-Request-Timestamp`
no older than `max_age` (5 minutes, as HubSpot advises). A `contact.creation`
event names only the contact's id, so the contacts are read back in one batch
call, asking for HubSpot's computed `hs_email_domain` and the job title: the
email itself is never requested. Free-mail domains make no lead.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from scorer.collect.mapping import HubSpotMapping
from scorer.collect.segment import CallError, company_domain, json_body
from scorer.timefmt import format_epoch

# The characters HubSpot's v3 docs say to decode in the URI before signing.
_URI_DECODE = {
    "%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'",
    "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";",
}  # fmt: skip
CREATION = "contact.creation"


class SignatureError(Exception):
    """401: the request is not from HubSpot, or too old to trust."""


class HubSpotUnavailable(Exception):
    """503: the contacts could not be read (HubSpot retries the webhook)."""


def signature_v3(secret: bytes, method: str, uri: str, body: bytes, timestamp: str) -> str:
    for encoded, plain in _URI_DECODE.items():
        uri = uri.replace(encoded, plain).replace(encoded.lower(), plain)
    source = method.encode() + uri.encode() + body + timestamp.encode()
    return base64.b64encode(hmac.new(secret, source, hashlib.sha256).digest()).decode()


def verify(
    config: HubSpotMapping,
    method: str,
    uri: str,
    body: bytes,
    headers: Any,
    now: float,
) -> None:
    """Raise `SignatureError` unless the signature is HubSpot's and fresh."""
    given = headers.get("X-HubSpot-Signature-v3")
    stamp = headers.get("X-HubSpot-Request-Timestamp")
    if not given or not stamp:
        raise SignatureError("missing signature headers")
    try:
        sent = int(stamp) / 1000.0
    except ValueError:
        raise SignatureError("bad timestamp") from None
    if abs(now - sent) > config.max_age:
        raise SignatureError("stale timestamp")
    secret = config.app_secret.get_secret_value().encode()
    expected = signature_v3(secret, method, uri, body, stamp)
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise SignatureError("signature mismatch")


@dataclass(frozen=True, slots=True)
class Creation:
    portal_id: int
    object_id: int
    occurred_at: float


def creations(body: bytes) -> tuple[list[Creation], int]:
    """The contact.creation events of a webhook body, and how many others it held."""
    events = json_body(body, list, "expected a JSON array of events")
    found, other = [], 0
    for event in events:
        if type(event) is not dict:
            raise CallError("invalid_call", "an event must be a JSON object")
        if event.get("subscriptionType") != CREATION:
            other += 1
            continue
        object_id, portal_id, occurred = (
            event.get("objectId"),
            event.get("portalId"),
            event.get("occurredAt"),
        )
        if type(object_id) is not int or type(portal_id) is not int:
            raise CallError("invalid_field", "objectId, portalId: expected integers")
        if type(occurred) is not int:
            raise CallError("invalid_timestamp", "occurredAt: expected epoch milliseconds")
        found.append(Creation(portal_id, object_id, occurred / 1000.0))
    return found, other


class ContactReader:
    """HubSpot's CRM v3 batch read of contacts: domain and title, never the email."""

    def __init__(self, config: HubSpotMapping) -> None:
        self.config = config
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.config.timeout)
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def read(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        """Properties by contact id; contacts HubSpot no longer has are absent."""
        assert self.session is not None
        url = self.config.api_url.rstrip("/") + "/crm/v3/objects/contacts/batch/read"
        body = {
            "properties": ["hs_email_domain", self.config.title_property],
            "inputs": [{"id": str(i)} for i in sorted(set(ids))],
        }
        token = self.config.access_token.get_secret_value()
        try:
            async with self.session.post(
                url, data=orjson.dumps(body), headers={
                    "Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            ) as response:  # fmt: skip
                if response.status not in (200, 207):
                    raise HubSpotUnavailable(f"HubSpot answered {response.status}")
                data = orjson.loads(await response.read())
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
            raise HubSpotUnavailable(type(exc).__name__) from None
        out = {}
        for result in data.get("results", ()):
            try:
                out[int(result["id"])] = result.get("properties") or {}
            except (KeyError, TypeError, ValueError):
                continue
        return out

    def lead(self, creation: Creation, properties: dict[str, Any]) -> dict[str, Any] | None:
        """The lead_created event of a created contact, or None without a company."""
        domain = company_domain(properties.get("hs_email_domain"))
        if domain is None:
            return None
        title = properties.get(self.config.title_property)
        return {
            "event_id": f"hubspot-{creation.portal_id}-{creation.object_id}",
            "type": "lead_created",
            "occurred_at": format_epoch(creation.occurred_at),
            "lead_id": f"hubspot-{creation.object_id}",
            "company_domain": domain,
            "title": title if isinstance(title, str) and title else None,
            "source": "hubspot",
        }
