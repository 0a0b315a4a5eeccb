"""`scorer collect` against a real broker: the real Segment and RudderStack SDKs, an
analytics.js-shaped raw request, auth, size limits, gzip, metrics, the HubSpot hook,
and 503 while the broker is away."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from scorer.collect.hubspot import signature_v3
from tests.collect.support import (
    BACKEND_KEY,
    NOW,
    WEB_KEY,
    WRITE_KEYS,
    post,
    visitors,
)
from tests.integration.streaming import (
    batch_alerts,
    comparable,
    processing_order,
    sample,
    samples,
    setup_deployment,
    total,
)
from tests.kafka_harness import Deployment, Worker, free_port, start_broker
from tests.observability import tool

pytestmark = pytest.mark.broker


def start(deployment: Deployment, *args: str | Path, **extra: str) -> Worker:
    collector = deployment.start_collector(*args, SCORER_COLLECT_WRITE_KEYS=WRITE_KEYS, **extra)
    collector.wait_ready(90)
    return collector


def sdk_send(client: Any, calls: list[dict[str, Any]]) -> None:
    """Each call through the SDK's own method, then a flush (the SDK batches them)."""
    for call in calls:
        common = {
            "anonymous_id": call["anonymousId"],
            "timestamp": datetime.fromisoformat(call["timestamp"]),
            "message_id": call["messageId"],
        }
        if call["type"] == "page":
            client.page(properties=call["properties"], context=call.get("context"), **common)
        elif call["type"] == "identify":
            client.identify(user_id=call["userId"], traits=call["traits"], **common)
        elif call["type"] == "group":
            client.group(group_id=call["groupId"], traits=call["traits"], **common)
        else:
            client.track(event=call["event"], properties={}, **common)
    client.flush()


def demo_requests(calls: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """A "Demo Requested" track after every identify: mapped to demo_request."""
    for call in calls:
        yield call
        if call["type"] == "identify":
            at = datetime.fromisoformat(call["timestamp"]) + timedelta(seconds=1)
            yield {
                "type": "track",
                "event": "Demo Requested",
                "anonymousId": call["anonymousId"],
                "messageId": "demo-" + call["messageId"],
                "timestamp": at.isoformat(),
            }


async def test_both_sdks_end_as_the_right_events_scored_as_if_sent_directly(
    deployment: Deployment, tmp_path: Path
) -> None:
    """segment-analytics-python and rudder-sdk-python send page/track/identify/group
    batches; visitor-events and lead-events get exactly the mapped events (no email, no
    IP), and the worker's alerts equal `scorer score` over the same events sent directly."""
    from rudderstack.analytics.client import Client as RudderClient
    from segment.analytics.client import Client as SegmentClient

    companies, _ = sample(tmp_path, 40, 0)
    domains = [orjson.loads(line)["domain"] for line in companies.read_bytes().splitlines()][:8]
    setup_deployment(deployment, companies)
    collector = start(deployment)
    host = f"http://127.0.0.1:{collector.port}"
    start_at = NOW - timedelta(hours=2)
    seg = visitors(domains, 40, 1, start_at, ("identify", "group", "never"))
    rud = visitors(domains, 40, 2, start_at, ("identify", "group", "never"))
    seg_calls, rud_calls = list(demo_requests(seg.calls)), list(demo_requests(rud.calls))
    errors: list[Any] = []
    segment = SegmentClient(WEB_KEY, host=host, on_error=lambda e, b: errors.append(e), gzip=True)
    rudder = RudderClient(BACKEND_KEY, host=host, on_error=lambda e, b: errors.append(e))
    await asyncio.to_thread(sdk_send, segment, seg_calls)
    await asyncio.to_thread(sdk_send, rudder, rud_calls)
    assert errors == []

    identifies = [c for c in seg_calls + rud_calls if c["type"] == "identify"]
    demos = [c for c in seg_calls + rud_calls if c["type"] == "track"]
    expected_visits = {e["event_id"]: e for e in seg.expected + rud.expected}
    for call in demos:  # linked by the identify just before: credited at once
        link = next(c for c in identifies if "demo-" + c["messageId"] == call["messageId"])
        expected_visits[call["messageId"]] = {
            "event_id": call["messageId"],
            "type": "demo_request",
            "occurred_at": datetime.fromisoformat(call["timestamp"]).strftime(
                "%Y-%m-%dT%H:%M:%S.000Z"
            ),
            "company_domain": link["traits"]["email"].split("@")[1],
        }
    visits = await deployment.documents(
        "visitor-events", until=lambda r: len(r) >= len(expected_visits), timeout=90
    )
    leads = await deployment.documents(
        "lead-events", until=lambda r: len(r) >= len(identifies), timeout=30
    )
    assert {v["event_id"]: v for v in visits} == expected_visits
    assert len(visits) == len(expected_visits)
    assert sorted(lead["company_domain"] for lead in leads) == sorted(
        c["traits"]["email"].split("@")[1] for c in identifies
    )
    raw = orjson.dumps(visits + leads).decode()
    assert "@" not in raw and "203.0.113" not in raw and "anon-" not in raw

    worker = deployment.start_worker(SCORER_EMIT_SCORES="true")
    worker.wait_ready()
    events = visits + leads
    scores = await deployment.documents(
        "account-scores", until=lambda r: len(r) >= 2 * len(events), timeout=120
    )
    alerts = await deployment.documents("hot-accounts", idle=3, timeout=60)
    expected = batch_alerts(tmp_path, companies, processing_order(scores, events))
    print(f"\nSDKs: {len(visits)} visits, {len(leads)} leads, {len(alerts)} alerts")
    assert alerts and sorted(map(comparable, alerts)) == sorted(map(comparable, expected))
    metrics = samples(collector.get("/metrics").decode())
    assert total(metrics, "scorer_collect_calls_total", source="web") == len(seg_calls)
    assert total(metrics, "scorer_collect_calls_total", source="backend") == len(rud_calls)
    assert total(metrics, "scorer_collect_stitch_events_total", outcome="stitched") > 0


def analytics_js_page(anonymous_id: str, message_id: str) -> dict[str, Any]:
    """What analytics.js posts to /v1/p: writeKey in the body, context.page, sentAt."""
    return {
        "type": "page",
        "anonymousId": anonymous_id,
        "messageId": message_id,
        "timestamp": "2026-11-20T10:00:00.000Z",
        "sentAt": "2026-11-20T10:00:00.050Z",
        "writeKey": WEB_KEY,
        "properties": {"path": "/pricing", "url": "https://site.example/pricing?x=1"},
        "context": {
            "ip": "203.0.113.7",
            "userAgent": "Mozilla/5.0",
            "page": {"path": "/pricing", "url": "https://site.example/pricing?x=1"},
            "library": {"name": "analytics.js", "version": "next-1.70.0"},
        },
        "integrations": {},
    }


async def test_raw_requests_auth_limits_gzip_and_metrics(
    deployment: Deployment, tmp_path: Path
) -> None:
    """analytics.js's shape (text/plain, key in the body, /v1/p and /v1/g) is accepted;
    a missing or wrong key gets 401, oversize 400 and bad JSON 400, in the spec's error
    shape, counted by reason, nothing produced and nothing logged of the payload."""
    collector = start(deployment)
    port = collector.port
    plain = {"Content-Type": "text/plain"}
    status, body, headers = post(port, "/v1/p", analytics_js_page("a1", "m1"), None, False, plain)
    assert (status, body) == (200, {"success": True})
    assert headers["Access-Control-Allow-Origin"] == "*"
    group = {"type": "group", "anonymousId": "a1", "groupId": "g", "messageId": "g1",
             "traits": {"website": "acme.example"},
             "timestamp": "2026-11-20T10:01:00Z"}  # fmt: skip
    assert post(port, "/v1/g", group, compress=True)[0] == 200
    [visit] = await deployment.documents("visitor-events", until=lambda r: len(r) >= 1)
    assert visit == {
        "event_id": "m1",
        "type": "page_view",
        "occurred_at": "2026-11-20T10:00:00.000Z",
        "page_url": "https://site.example/pricing",
        "company_domain": "acme.example",
    }

    secret_page = {**analytics_js_page("a2", "m2"), "writeKey": None}
    secret_page["properties"]["email"] = "jane.secret@acme.example"
    refused = [
        (post(port, "/v1/page", secret_page, None), 401, "unauthorized"),
        (post(port, "/v1/page", secret_page, "wrong-key"), 401, "unauthorized"),
        (post(port, "/v1/page", {**secret_page, "pad": "x" * 33_000}), 400, "too_large"),
        (post(port, "/v1/batch", {"batch": [secret_page] * 20, "pad": "y" * 510_000}), 400,
         "too_large"),
        (post(port, "/v1/batch", b"{not json jane.secret@acme.example"), 400, "invalid_json"),
        (post(port, "/v1/batch", {"batch": [{**secret_page, "anonymousId": None}]}), 400,
         "missing_id"),
        (post(port, "/v1/track", {**secret_page, "type": "track"}), 400, "missing_event"),
    ]  # fmt: skip
    for (status, body, _), want_status, want_code in refused:
        assert (status, body.get("code")) == (want_status, want_code), body
        assert body["success"] is False and "jane" not in body["message"]

    exposition = collector.get("/metrics")
    lint = subprocess.run(
        [tool("promtool"), "check", "metrics"], input=exposition, capture_output=True
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    m = samples(exposition.decode())
    assert total(m, "scorer_collect_rejected_total", reason="unauthorized") == 2
    assert total(m, "scorer_collect_rejected_total", reason="too_large") == 2
    assert total(m, "scorer_collect_rejected_total", reason="invalid_json") == 1
    assert total(m, "scorer_collect_requests_total", source="web", outcome="accepted") == 2
    assert total(m, "scorer_collect_stitch_events_total", outcome="stitched") == 1
    assert total(m, "scorer_collect_ready") == 1
    visits = await deployment.documents("visitor-events", idle=2, timeout=10)
    assert [v["event_id"] for v in visits] == ["m1"]
    assert collector.terminate() < 10 and collector.process.returncode == 0
    log = collector.log_path.read_text()
    assert "jane" not in log and "203.0.113" not in log and WEB_KEY not in log


class HubSpotApi:
    """HubSpot's contacts batch-read endpoint on loopback, in a thread."""

    def __init__(self, contacts: dict[int, dict[str, Any]]) -> None:
        self.contacts = contacts
        self.port = free_port()
        self.requests: list[dict[str, Any]] = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()
        assert self.ready.wait(10)

    async def batch_read(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer hs-token":
            return web.json_response({"category": "INVALID_AUTHENTICATION"}, status=401)
        body = await request.json()
        self.requests.append(body)
        results = [
            {"id": item["id"], "properties": {p: self.contacts[int(item["id"])].get(p)
                                              for p in body["properties"]}}
            for item in body["inputs"] if int(item["id"]) in self.contacts
        ]  # fmt: skip
        return web.json_response({"status": "COMPLETE", "results": results})

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.add_routes([web.post("/crm/v3/objects/contacts/batch/read", self.batch_read)])
        runner = web.AppRunner(app)
        self.loop.run_until_complete(runner.setup())
        self.loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self.ready.set()
        self.loop.run_forever()


async def test_hubspot_signed_contact_creation_becomes_a_lead(
    deployment: Deployment, tmp_path: Path
) -> None:
    """A signed contact.creation becomes a lead_created for the contact's company (never
    its email); free mail makes none; a tampered or stale request gets 401, nothing
    produced."""
    api = HubSpotApi(
        {
            501: {"hs_email_domain": "acme.example", "jobtitle": "Chief Revenue Officer"},
            502: {"hs_email_domain": "gmail.com", "jobtitle": "CEO"},
        }
    )
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        "hubspot:\n  app_secret: ${HS_APP_SECRET}\n  access_token: ${HS_TOKEN}\n"
        f"  api_url: http://127.0.0.1:{api.port}\n"
    )
    collector = start(
        deployment, "--mapping", mapping, HS_APP_SECRET="hs-secret", HS_TOKEN="hs-token"
    )
    uri = f"http://127.0.0.1:{collector.port}/hooks/hubspot"
    events = [
        {"eventId": 1, "subscriptionId": 9, "portalId": 77, "appId": 5, "occurredAt": ms,
         "subscriptionType": "contact.creation", "attemptNumber": 0, "objectId": oid,
         "changeFlag": "CREATED", "changeSource": "CRM"}
        for oid, ms in ((501, 1_795_000_000_000), (502, 1_795_000_001_000))
    ]  # fmt: skip
    body = orjson.dumps(events)

    def signed(payload: bytes, age: float = 0.0, secret: bytes = b"hs-secret") -> dict[str, str]:
        stamp = str(int((time.time() - age) * 1000))
        return {
            "X-HubSpot-Signature-v3": signature_v3(secret, "POST", uri, payload, stamp),
            "X-HubSpot-Request-Timestamp": stamp,
        }

    tampered = body.replace(b"501", b"502")
    assert post(collector.port, "/hooks/hubspot", tampered, None, headers=signed(body))[0] == 401
    assert post(collector.port, "/hooks/hubspot", body, None, headers=signed(body, 400))[0] == 401
    wrong = signed(body, secret=b"other")
    assert post(collector.port, "/hooks/hubspot", body, None, headers=wrong)[0] == 401
    assert api.requests == []
    status, answer, _ = post(collector.port, "/hooks/hubspot", body, None, headers=signed(body))
    assert (status, answer) == (200, {"success": True})
    leads = await deployment.documents("lead-events", idle=2, timeout=30)
    assert leads == [
        {
            "event_id": "hubspot-77-501",
            "type": "lead_created",
            "occurred_at": "2026-11-18T11:06:40.000Z",
            "lead_id": "hubspot-501",
            "company_domain": "acme.example",
            "title": "Chief Revenue Officer",
            "source": "hubspot",
        }
    ]
    assert api.requests[0]["properties"] == ["hs_email_domain", "jobtitle"]
    m = samples(collector.get("/metrics").decode())
    assert total(m, "scorer_collect_rejected_total", source="hubspot") == 3
    assert total(m, "scorer_collect_rejected_total", reason="stale_signature") == 1
    assert total(m, "scorer_collect_calls_total", source="hubspot", type="contact") == 2


async def test_503_with_retry_after_while_the_broker_is_away(tmp_path: Path) -> None:
    """With the broker stopped a call gets 503 and Retry-After, never 200; once it is back
    the same call is accepted, and the event is on visitor-events."""
    broker = start_broker(tmp_path / "kafka", own=True)
    deployment = Deployment(broker, tmp_path)
    try:
        collector = start(deployment, SCORER_COLLECT_ACK_TIMEOUT="2")
        page = {"type": "page", "anonymousId": "a", "messageId": "m-503",
                "timestamp": "2026-11-20T10:00:00Z", "properties": {"path": "/"}}  # fmt: skip
        group = {"type": "group", "anonymousId": "a", "groupId": "g", "messageId": "g-503",
                 "traits": {"domain": "acme.example"},
                 "timestamp": "2026-11-20T10:00:01Z"}  # fmt: skip
        broker.stop()
        status, body, headers = post(collector.port, "/v1/batch", {"batch": [page]})
        assert (status, body["code"]) == (503, "unavailable")
        assert int(headers["Retry-After"]) > 0
        await asyncio.to_thread(broker.restart)
        deadline = time.monotonic() + 90
        while (status := post(collector.port, "/v1/batch", {"batch": [page, group]})[0]) != 200:
            assert status == 503 and time.monotonic() < deadline
            await asyncio.sleep(1)
        visits = await deployment.documents("visitor-events", until=lambda r: len(r) >= 1)
        assert {v["event_id"] for v in visits} == {"m-503"}
        m = samples(collector.get("/metrics").decode())
        assert total(m, "scorer_collect_requests_total", outcome="unavailable") >= 1
    finally:
        deployment.stop_all()
        broker.stop()
