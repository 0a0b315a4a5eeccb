"""Loopback HTTP servers that answer like Slack, HubSpot, Salesforce and a
webhook receiver, errors and rate limits included, for the router's tests.

Each records what it was sent and can be told to fail: `script` is a list of
answers given to the next requests before the normal one ("429" with a
Retry-After of 1 s, "500", a service-specific error code). Shapes follow the
services' documentation: Slack's Web API (`{"ok": false, "error": ...}` with
HTTP 200, 429 + Retry-After for rate limits) and Block Kit limits; HubSpot's
CRM v3 batch upsert and object create (error bodies with `category` /
`errorType`); Salesforce REST upserts by external id (error lists with
`errorCode`, 403 REQUEST_LIMIT_EXCEEDED). The Salesforce fake speaks HTTPS
with a throwaway CA, since simple-salesforce only builds https URLs.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import ssl
import subprocess
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

SLACK_TOKEN = "xoxb-test-token"
HUBSPOT_TOKEN = "pat-test-token"
SALESFORCE_TOKEN = "00Dtest!session"
WEBHOOK_SECRET = "whsec-test"
BLOCK_TYPES = {"header", "section", "context", "actions", "divider"}


@dataclass
class Fake:
    """Shared bookkeeping: requests seen, scripted failures, latency."""

    script: list[str] = field(default_factory=list)
    latency: float = 0.0
    requests: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    flap: float = 0.0  # fraction of requests answered 500, at random
    seed: int = 0

    def __post_init__(self) -> None:
        import random

        self.rng = random.Random(self.seed)

    async def begin(self) -> str | None:
        """Count the request, wait the latency, and return a scripted failure if any."""
        self.requests += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.script:
            failure = self.script.pop(0)
            self.failures[failure] += 1
            return failure
        if self.flap and self.rng.random() < self.flap:
            self.failures["500"] += 1
            return "500"
        return None


def rate_limited(body: Any, content_type: str = "application/json") -> web.Response:
    text = body if isinstance(body, str) else orjson.dumps(body).decode()
    return web.Response(
        status=429, text=text, content_type=content_type, headers={"Retry-After": "1"}
    )


class SlackFake(Fake):
    """chat.postMessage and an incoming webhook."""

    def __init__(self, channels: tuple[str, ...] = ("#hot-accounts",), **kw: Any) -> None:
        super().__init__(**kw)
        self.channels = set(channels)
        self.messages: list[dict[str, Any]] = []
        self.ts = itertools.count(1)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/chat.postMessage", self.post_message),
            web.post("/services/T000/B000/hook", self.incoming_webhook),
        ]

    @staticmethod
    def check_blocks(blocks: Any) -> str | None:
        """Block Kit's documented limits: 50 blocks; header 150, section 3000 chars."""
        if not isinstance(blocks, list) or len(blocks) > 50:
            return "invalid_blocks"
        for block in blocks:
            kind = block.get("type")
            if kind not in BLOCK_TYPES:
                return "invalid_blocks"
            text = block.get("text", {}).get("text", "") if "text" in block else ""
            if kind == "header" and (len(text) > 150 or block["text"]["type"] != "plain_text"):
                return "invalid_blocks"
            if kind == "section" and len(text) > 3000:
                return "invalid_blocks"
        return None

    async def post_message(self, request: web.Request) -> web.Response:
        failure = await self.begin()
        if failure == "429":
            return rate_limited({"ok": False, "error": "ratelimited"})
        if failure == "500":
            return web.Response(status=500, text="internal error", content_type="text/plain")
        if request.headers.get("Authorization") != f"Bearer {SLACK_TOKEN}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if request.content_type == "application/json":
            body = await request.json()
        else:
            body = dict(await request.post())
            if "blocks" in body:
                body["blocks"] = orjson.loads(str(body["blocks"]))
        if body.get("channel") not in self.channels:
            return web.json_response({"ok": False, "error": "channel_not_found"})
        problem = self.check_blocks(body.get("blocks", []))
        if problem:
            return web.json_response({"ok": False, "error": problem})
        ts = f"{int(time.time())}.{next(self.ts):06d}"
        self.messages.append({**body, "ts": ts})
        return web.json_response(
            {"ok": True, "channel": "C0HOT", "ts": ts, "message": {"text": body.get("text")}}
        )

    async def incoming_webhook(self, request: web.Request) -> web.Response:
        failure = await self.begin()
        if failure == "429":
            return rate_limited("rate_limited", "text/plain")
        if failure == "500":
            return web.Response(status=500, text="internal_error", content_type="text/plain")
        if failure == "no_service":
            return web.Response(status=404, text="no_service", content_type="text/plain")
        body = await request.json()
        problem = self.check_blocks(body.get("blocks", []))
        if problem:
            return web.Response(status=400, text="invalid_blocks", content_type="text/plain")
        self.messages.append(body)
        return web.Response(text="ok", content_type="text/plain")


class WebhookFake(Fake):
    """Checks the signature; deduplicates by Idempotency-Key like a careful receiver."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.posts: list[str] = []  # Idempotency-Key of every accepted POST, repeats included
        self.bodies: dict[str, bytes] = {}
        self.bad_signatures = 0

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/hook", self.receive)]

    async def receive(self, request: web.Request) -> web.Response:
        failure = await self.begin()
        if failure == "429":
            return rate_limited({"error": "slow down"})
        if failure == "500":
            return web.json_response({"error": "flapping"}, status=500)
        body = await request.read()
        stamp = request.headers.get("X-Scorer-Timestamp", "")
        expected = (
            "v1="
            + hmac.new(
                WEBHOOK_SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256
            ).hexdigest()
        )
        if not hmac.compare_digest(expected, request.headers.get("X-Scorer-Signature", "")):
            self.bad_signatures += 1
            return web.json_response({"error": "bad signature"}, status=401)
        key = request.headers["Idempotency-Key"]
        self.posts.append(key)
        self.bodies.setdefault(key, body)
        return web.json_response({"received": True})


class HubSpotFake(Fake):
    """CRM v3: companies batch upsert by domain, task create with an association."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.companies: dict[str, dict[str, Any]] = {}
        self.tasks: list[dict[str, Any]] = []
        self.ids = itertools.count(1001)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/crm/v3/objects/companies/batch/upsert", self.upsert),
            web.post("/crm/v3/objects/tasks", self.create_task),
        ]

    def refuse(self, request: web.Request, failure: str | None) -> web.Response | None:
        if failure == "429":
            return rate_limited(
                {
                    "status": "error",
                    "message": "You have reached your secondly limit.",
                    "errorType": "RATE_LIMIT",
                    "correlationId": str(uuid.uuid4()),
                    "policyName": "SECONDLY",
                }
            )
        if failure == "500":
            return web.json_response(
                {"status": "error", "message": "internal error", "category": "INTERNAL_ERROR"},
                status=500,
            )
        if request.headers.get("Authorization") != f"Bearer {HUBSPOT_TOKEN}":
            return web.json_response(
                {
                    "status": "error",
                    "message": "Authentication credentials not found.",
                    "correlationId": str(uuid.uuid4()),
                    "category": "INVALID_AUTHENTICATION",
                },
                status=401,
            )
        return None

    @staticmethod
    def invalid(message: str) -> web.Response:
        return web.json_response(
            {"status": "error", "message": message, "category": "VALIDATION_ERROR"}, status=400
        )

    async def upsert(self, request: web.Request) -> web.Response:
        refused = self.refuse(request, await self.begin())
        if refused is not None:
            return refused
        body = await request.json()
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            return self.invalid("inputs is required")
        results = []
        for item in inputs:
            if item.get("idProperty") != "domain" or not item.get("id"):
                return self.invalid("idProperty and id are required")
            if not isinstance(item.get("properties"), dict):
                return self.invalid("properties is required")
            known = self.companies.get(item["id"])
            if known is None:
                known = self.companies[item["id"]] = {"id": str(next(self.ids)), "properties": {}}
            known["properties"].update(item["properties"])
            results.append(
                {
                    "id": known["id"],
                    "properties": known["properties"],
                    "createdAt": "2026-11-30T10:00:00Z",
                    "updatedAt": "2026-11-30T10:00:00Z",
                    "archived": False,
                    "new": False,
                }
            )
        return web.json_response(
            {
                "status": "COMPLETE",
                "results": results,
                "startedAt": "2026-11-30T10:00:00Z",
                "completedAt": "2026-11-30T10:00:00Z",
            }
        )

    async def create_task(self, request: web.Request) -> web.Response:
        refused = self.refuse(request, await self.begin())
        if refused is not None:
            return refused
        body = await request.json()
        properties = body.get("properties", {})
        if "hs_timestamp" not in properties:
            return self.invalid("hs_timestamp is required")
        for link in body.get("associations", []):
            types = link.get("types", [])
            if not link.get("to", {}).get("id") or not types:
                return self.invalid("associations need to.id and types")
            if types[0].get("associationCategory") != "HUBSPOT_DEFINED":
                return self.invalid("associationCategory")
        self.tasks.append(body)
        return web.json_response(
            {
                "id": str(next(self.ids)),
                "properties": properties,
                "createdAt": "2026-11-30T10:00:00Z",
                "updatedAt": "2026-11-30T10:00:00Z",
                "archived": False,
            },
            status=201,
        )


class SalesforceFake(Fake):
    """REST API v59.0: upsert Account and Task by external id, read Account by it."""

    BASE = "/services/data/v59.0/sobjects"

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.accounts: dict[str, dict[str, Any]] = {}
        self.tasks: dict[str, dict[str, Any]] = {}
        self.task_writes = 0
        self.ids = itertools.count(1)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.patch(self.BASE + "/{object}/{field}/{value}", self.upsert),
            web.get(self.BASE + "/Account/{field}/{value}", self.get_account),
        ]

    def refuse(self, request: web.Request, failure: str | None) -> web.Response | None:
        if failure == "REQUEST_LIMIT_EXCEEDED":
            return web.json_response(
                [{"message": "TotalRequests Limit exceeded.", "errorCode": failure}], status=403
            )
        if failure == "500":
            return web.json_response(
                [{"message": "An unexpected error occurred.", "errorCode": "UNKNOWN_EXCEPTION"}],
                status=500,
            )
        if request.headers.get("Authorization") != f"Bearer {SALESFORCE_TOKEN}":
            return web.json_response(
                [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}],
                status=401,
            )
        return None

    async def upsert(self, request: web.Request) -> web.Response:
        refused = self.refuse(request, await self.begin())
        if refused is not None:
            return refused
        kind, value = request.match_info["object"], request.match_info["value"]
        body = await request.json()
        store = self.accounts if kind == "Account" else self.tasks
        if kind not in ("Account", "Task"):
            return web.json_response(
                [{"message": f"sObject type '{kind}' is not supported.", "errorCode": "NOT_FOUND"}],
                status=404,
            )
        if kind == "Task":
            self.task_writes += 1
            if body.get("WhatId") not in {a["Id"] for a in self.accounts.values()}:
                return web.json_response(
                    [{"message": "invalid WhatId", "errorCode": "INVALID_CROSS_REFERENCE_KEY"}],
                    status=400,
                )
        created = value not in store
        if created:
            prefix = "001" if kind == "Account" else "00T"
            store[value] = {"Id": f"{prefix}{next(self.ids):015d}"}
        store[value].update(body)
        answer = {"id": store[value]["Id"], "success": True, "errors": [], "created": created}
        return web.json_response(answer, status=201 if created else 200)

    async def get_account(self, request: web.Request) -> web.Response:
        refused = self.refuse(request, await self.begin())
        if refused is not None:
            return refused
        record = self.accounts.get(request.match_info["value"])
        if record is None:
            return web.json_response(
                [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}],
                status=404,
            )
        return web.json_response({"attributes": {"type": "Account"}, **record})


@web.middleware
async def close_after(request: web.Request, handler: Any) -> web.StreamResponse:
    response: web.StreamResponse = await handler(request)
    response.force_close()
    return response


def make_ca(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate for 127.0.0.1 signed by it: (ca.pem, cert.pem, key.pem)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    cert, key, csr = folder / "cert.pem", folder / "key.pem", folder / "cert.csr"
    ext = folder / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-subj", "/CN=route-test-ca", "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", str(key), "-out", str(csr))  # fmt: skip
    run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))  # fmt: skip
    return ca, cert, key


class Services:
    """All fakes on loopback ports, served from a background thread's event loop."""

    def __init__(self, tls_dir: Path) -> None:
        self.slack = SlackFake()
        self.webhook = WebhookFake()
        self.hubspot = HubSpotFake()
        self.salesforce = SalesforceFake()
        self.ca, cert, key = make_ca(tls_dir)
        self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.tls.load_cert_chain(cert, key)
        self.ports: dict[str, int] = {}
        self.loop = asyncio.new_event_loop()
        self.runners: list[web.AppRunner] = []
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(self._start())

    def call(self, coroutine: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    async def _start(self) -> None:
        for name, fake in (
            ("slack", self.slack),
            ("webhook", self.webhook),
            ("hubspot", self.hubspot),
            ("salesforce", self.salesforce),
        ):
            # The TLS fake closes each connection after its answer: a kept-alive
            # TLS connection left at shutdown would wait for a close_notify that
            # never comes, and leak into a later test's garbage collection.
            app = web.Application(middlewares=[close_after] if name == "salesforce" else [])
            app.add_routes(fake.routes())
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(
                runner, "127.0.0.1", 0, ssl_context=self.tls if name == "salesforce" else None
            )
            await site.start()
            self.runners.append(runner)
            self.ports[name] = runner.addresses[0][1]

    def url(self, name: str) -> str:
        scheme = "https" if name == "salesforce" else "http"
        return f"{scheme}://127.0.0.1:{self.ports[name]}"

    def stop(self) -> None:
        async def cleanup() -> None:
            for runner in self.runners:
                await runner.cleanup()
            await asyncio.sleep(0.2)  # let closing TLS connections finish their shutdown

        self.call(cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()
