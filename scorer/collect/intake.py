"""The HTTP intake: Segment's Tracking API and the HubSpot hook, answered only
after the broker acknowledged every record of the request.

- `POST /v1/batch`, `/v1/{page,track,identify,group,screen,alias}` and
  analytics.js's short forms `/v1/{p,t,i,g,s,a}`; Basic auth with a write key
  (or, as analytics.js sends from browsers, `writeKey` in the body); gzip
  bodies; 32 KB a call, 500 KB and 2,500 calls a batch.
- 200 `{"success": true}` once the broker acknowledged the request's records
  (acks=all, idempotent producer); 400 / 401 `{"success": false, "code",
  "message"}` for bad input or a bad key, nothing produced (a batch is all or
  nothing); 503 with `Retry-After` when the broker does not acknowledge within
  SCORER_COLLECT_ACK_TIMEOUT. The SDKs retry 503s, with the same messageIds,
  which become the same event ids: the workers apply each once.
- Nothing of a rejected request is logged, and no payload ever is.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import logging
import time
import zlib
from collections.abc import Iterable

import orjson
from aiohttp import web
from aiokafka.errors import KafkaError

from scorer.collect.hubspot import (
    ContactReader,
    HubSpotUnavailable,
    SignatureError,
    creations,
    verify,
)
from scorer.collect.mapping import Mapping
from scorer.collect.metrics import HUBSPOT_SOURCE, UNKNOWN_SOURCE, CollectMetrics
from scorer.collect.segment import (
    MAX_BATCH_BYTES,
    MAX_BATCH_CALLS,
    MAX_CALL_BYTES,
    CallError,
    Lead,
    Link,
    Mapper,
    Output,
    Visit,
    json_body,
)
from scorer.errors import ConfigError
from scorer.kafka.batcher import Batcher
from scorer.kafka.client import KeyPartitions
from scorer.kafka.topics import Topics

log = logging.getLogger("scorer.collect")
RETRY_AFTER_SECONDS = 5
SINGLE_CALLS = {
    "page": "page", "p": "page", "track": "track", "t": "track",
    "identify": "identify", "i": "identify", "group": "group", "g": "group",
    "screen": "screen", "s": "screen", "alias": "alias", "a": "alias",
}  # fmt: skip
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, Content-Encoding",
    "Access-Control-Max-Age": "86400",
}
OK_BODY = b'{"success":true}'


class Unavailable(Exception):
    """503: the broker (or HubSpot) did not answer in time."""


def parse_write_keys(text: str | None) -> dict[str, str]:
    """``web=KEY1,backend=KEY2`` -> {key: source}. A `ConfigError` says what is wrong
    (never the keys themselves)."""
    if not text or not text.strip():
        raise ConfigError(
            "SCORER_COLLECT_WRITE_KEYS is not set: give source=writekey pairs, "
            "comma-separated (e.g. website=wk_...,backend=wk_...)"
        )
    keys: dict[str, str] = {}
    for position, item in enumerate(text.split(","), start=1):
        source, equals, key = item.strip().partition("=")
        source = source.strip()
        if not equals or not key.strip() or not source:
            raise ConfigError(f"SCORER_COLLECT_WRITE_KEYS: item {position} is not source=writekey")
        if not source.replace("-", "").replace("_", "").isalnum() or source != source.lower():
            raise ConfigError(
                f"SCORER_COLLECT_WRITE_KEYS: item {position}: a source name is lower-case "
                "letters, digits, - and _"
            )
        if source in (UNKNOWN_SOURCE, HUBSPOT_SOURCE):
            raise ConfigError(f"SCORER_COLLECT_WRITE_KEYS: {source!r} is a reserved source name")
        keys[key.strip()] = source
    return keys


def error(status: int, code: str, message: str, **headers: str) -> web.Response:
    body = orjson.dumps({"success": False, "code": code, "message": message})
    return web.Response(
        status=status, body=body, content_type="application/json", headers={**CORS, **headers}
    )


def read_body(raw: bytes, encoding: str, limit: int) -> bytes:
    """The request body, un-gzipped, refusing more than `limit` bytes (no gzip bomb)."""
    # aiohttp's server un-gzips request bodies itself (bounded by its client_max_size);
    # the decoder here serves a body that arrives still compressed.
    if encoding in ("", "identity") or (encoding == "gzip" and raw[:2] != b"\x1f\x8b"):
        body = raw
    elif encoding == "gzip":
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = decoder.decompress(raw, limit + 1)
        except zlib.error:
            raise CallError("invalid_encoding", "the gzip body is corrupt") from None
    else:
        raise CallError("invalid_encoding", "Content-Encoding: only gzip is accepted")
    if len(body) > limit:
        raise CallError("too_large", f"the body is over {limit // 1024} KB")
    return body


class Intake:
    """The request handlers; `produce` hands records to the broker and waits for acks."""

    def __init__(
        self,
        mapping: Mapping,
        write_keys: dict[str, str],
        metrics: CollectMetrics,
        topics: Topics,
        ack_timeout: float,
    ) -> None:
        self.mapper = Mapper(mapping)
        self.hubspot = mapping.hubspot
        self.contacts = ContactReader(mapping.hubspot) if mapping.hubspot else None
        self.write_keys = write_keys
        self.metrics = metrics
        self.topics = topics
        self.ack_timeout = ack_timeout
        # Set once the producer is up: records go out through the batcher.
        self.batcher: Batcher | None = None
        # Topic -> Kafka's default partition of a key, set with the producer.
        self.partitions: dict[str, KeyPartitions] = {}

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/{call}", self.segment),
            web.options("/v1/{call}", self.preflight),
            web.post("/hooks/hubspot", self.hubspot_hook),
        ]

    async def preflight(self, request: web.Request) -> web.Response:
        return web.Response(status=204, headers=CORS)

    # -- Segment ------------------------------------------------------------------

    def _source(self, key: str | None) -> str | None:
        if not key:
            return None
        found = None
        for known, source in self.write_keys.items():  # every key compared: constant time
            if hmac.compare_digest(known.encode(), key.encode()):
                found = source
        return found

    def _header_key(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic" or not value:
            return None
        try:
            user = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return user.partition(":")[0]

    async def segment(self, request: web.Request) -> web.Response:
        started = time.monotonic()
        call = request.match_info["call"]
        forced = SINGLE_CALLS.get(call)
        if call not in ("batch", "import") and forced is None:
            return error(404, "not_found", "no such endpoint")
        limit = MAX_BATCH_BYTES if forced is None else MAX_CALL_BYTES
        header_key = self._header_key(request)
        source = self._source(header_key)
        if header_key is not None and source is None:
            return self._reject(UNKNOWN_SOURCE, 401, "unauthorized", "unknown write key")
        try:
            if request.content_length is not None and request.content_length > limit:
                raise CallError("too_large", f"the body is over {limit // 1024} KB")
            body = read_body(
                await request.read(), request.headers.get("Content-Encoding", "").lower(), limit
            )
            document = json_body(body, dict, "the body must be a JSON object")
            if source is None:
                body_key = document.get("writeKey")
                source = self._source(body_key if type(body_key) is str else None)
                if source is None:
                    return self._reject(UNKNOWN_SOURCE, 401, "unauthorized", "no valid write key")
            if forced is None:
                calls = document.get("batch")
                if type(calls) is not list:
                    raise CallError("invalid_call", "batch: expected a list of calls")
                if len(calls) > MAX_BATCH_CALLS:
                    raise CallError("too_large", f"batch: over {MAX_BATCH_CALLS} calls")
            else:
                calls = [document]
            mapped = self.mapper.map_calls(calls, source, time.time(), forced)
        except CallError as exc:
            return self._reject(source or UNKNOWN_SOURCE, 400, exc.reason, exc.message)
        try:
            await self.produce(mapped.outputs)
        except Unavailable:
            return self._unavailable(source)
        metrics = self.metrics
        for kind, count in mapped.calls.items():
            metrics.calls.labels(source=source, type=kind).inc(count)
        for reason, count in mapped.ignored.items():
            metrics.ignored.labels(reason=reason).inc(count)
        metrics.requests.labels(source=source, outcome="accepted").inc()
        metrics.last_call.labels(source=source).set(time.time())
        metrics.request_latency.observe(time.monotonic() - started)
        return web.Response(body=OK_BODY, content_type="application/json", headers=CORS)

    def _reject(self, source: str, status: int, reason: str, message: str) -> web.Response:
        self.metrics.requests.labels(source=source, outcome="rejected").inc()
        self.metrics.rejected.labels(source=source, reason=reason).inc()
        return error(status, reason, message)

    def _unavailable(self, source: str) -> web.Response:
        self.metrics.requests.labels(source=source, outcome="unavailable").inc()
        return error(
            503,
            "unavailable",
            "the broker did not acknowledge in time; retry",
            **{"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    # -- producing ------------------------------------------------------------------

    async def produce(self, outputs: Iterable[Output]) -> None:
        """Send every record and wait for all acknowledgements, or raise `Unavailable`."""
        batcher = self.batcher
        if batcher is None:
            raise Unavailable("not started")
        started = time.monotonic()
        identities, leads = self.topics.identities, self.topics.lead
        identity_partition, lead_partition = self.partitions[identities], self.partitions[leads]
        add = batcher.add
        deliveries: set[asyncio.Future[None]] = set()
        for output in outputs:
            if type(output) is Visit:
                key = output.identity
                value = orjson.dumps({"v": output.document, "at": output.at})
                deliveries.add(add(identities, identity_partition(key), key, value))
            elif type(output) is Link:
                key = output.identity
                value = orjson.dumps({"l": output.domain, "at": output.at})
                deliveries.add(add(identities, identity_partition(key), key, value))
            elif type(output) is Lead:
                key = output.domain.encode()
                value = orjson.dumps(output.document)
                deliveries.add(add(leads, lead_partition(key), key, value))
        try:
            async with asyncio.timeout(self.ack_timeout):
                if deliveries:
                    # asyncio.wait, not gather: a timeout must not cancel the
                    # batches' futures, shared with other requests (the records
                    # may still be delivered; SDK retries carry the same ids).
                    done, _ = await asyncio.wait(deliveries)
                    for future in done:
                        future.result()
        except (TimeoutError, KafkaError) as exc:
            log.debug("produce failed: %s", type(exc).__name__)
            raise Unavailable(type(exc).__name__) from None
        self.metrics.produce_latency.observe(time.monotonic() - started)

    # -- HubSpot --------------------------------------------------------------------

    async def hubspot_hook(self, request: web.Request) -> web.Response:
        started = time.monotonic()
        config, contacts = self.hubspot, self.contacts
        if config is None or contacts is None:
            return error(404, "not_found", "the HubSpot hook is not configured (mapping file)")
        body = await request.read()
        uri = config.webhook_url or str(request.url)
        try:
            verify(config, request.method, uri, body, request.headers, time.time())
        except SignatureError as exc:
            reason = "stale_signature" if "stale" in str(exc) else "bad_signature"
            return self._reject(HUBSPOT_SOURCE, 401, reason, "signature v3 not valid")
        try:
            found, other = creations(body)
        except CallError as exc:
            return self._reject(HUBSPOT_SOURCE, 400, exc.reason, exc.message)
        try:
            properties = await contacts.read([c.object_id for c in found]) if found else {}
        except HubSpotUnavailable:
            return self._unavailable(HUBSPOT_SOURCE)
        leads: list[Output] = []
        for creation in found:
            props = properties.get(creation.object_id)
            document = contacts.lead(creation, props) if props is not None else None
            if document is None:
                self.metrics.ignored.labels(reason="no_company").inc()
            else:
                leads.append(Lead(document["company_domain"], document))
        try:
            await self.produce(leads)
        except Unavailable:
            return self._unavailable(HUBSPOT_SOURCE)
        if other:
            self.metrics.ignored.labels(reason="hubspot_event").inc(other)
        if found:
            self.metrics.calls.labels(source=HUBSPOT_SOURCE, type="contact").inc(len(found))
        self.metrics.requests.labels(source=HUBSPOT_SOURCE, outcome="accepted").inc()
        self.metrics.last_call.labels(source=HUBSPOT_SOURCE).set(time.time())
        self.metrics.request_latency.observe(time.monotonic() - started)
        return web.Response(body=OK_BODY, content_type="application/json")
