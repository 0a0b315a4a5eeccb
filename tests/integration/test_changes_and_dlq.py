"""Live changes (ICP versions, firmographic updates and deletes) and the dead-letter queue."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from itertools import count
from pathlib import Path
from typing import Any

import orjson

from tests.kafka_harness import Deployment, consume, documents, produce

ACME = {"domain": "acme.example", "name": "Acme", "industry": "retail", "employees": 200}
_serial = count()


def icp(version: int, industry: str) -> str:
    return (
        f"id: swap\nversion: {version}\nfit:\n  - {{field: industry, in: [{industry}], "
        "must_have: true}\nintent: {signals: [{type: page_view, points: 5}]}\n"
        "weights: {fit: 1, intent: 0}\nhot: {min_total: 50, min_fit: 50, cooldown: 1s}\n"
    )


def visit(domain: str = "acme.example") -> bytes:
    n = next(_serial)
    return orjson.dumps(
        {
            "event_id": f"v{n}",
            "type": "page_view",
            "company_domain": domain,
            "occurred_at": f"2026-11-20T10:{n // 60:02d}:{n % 60:02d}Z",
        }
    )


async def score_until(
    deployment: Deployment, test: Callable[[dict[str, Any]], bool], timeout: float = 45
) -> dict[str, Any]:
    """Send visits until an account-score passes `test` (a change applies asynchronously)."""
    bootstrap = deployment.broker.bootstrap
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await produce(bootstrap, [(deployment.topic("visitor-events"), b"acme.example", visit())])
        docs = documents(
            await consume(bootstrap, deployment.topic("account-scores"), idle=0.7, timeout=5)
        )
        for doc in reversed(docs):
            if test(doc):
                return doc
        await asyncio.sleep(0.3)
    raise AssertionError("no account-score passed the test in time")


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


async def test_icp_hot_swap_and_version_rule(deployment: Deployment, tmp_path: Path) -> None:
    """A higher ICP version takes effect without restart; a lower one is ignored."""
    company = {**ACME, "industry": "software"}
    deployment.run(
        "firmographics", "load", write(tmp_path, "c.jsonl", orjson.dumps(company).decode())
    )
    deployment.run("icp", "publish", write(tmp_path, "v1.yaml", icp(1, "retail")))
    deployment.start_worker(SCORER_EMIT_SCORES="true").wait_ready()
    first = await score_until(deployment, lambda d: d["icp"]["version"] == 1)
    assert first["disqualified"] and first["score"]["total"] == 0
    deployment.run("icp", "publish", write(tmp_path, "v2.yaml", icp(2, "software")))
    second = await score_until(deployment, lambda d: d["icp"]["version"] == 2)
    assert second["score"]["fit"] == 100 and second["hot"]
    alerts = await deployment.documents("hot-accounts", until=lambda r: len(r) >= 1, timeout=30)
    assert alerts[0]["icp"] == {"id": "swap", "version": 2}
    deployment.run("icp", "publish", write(tmp_path, "v1b.yaml", icp(1, "retail")))
    await asyncio.sleep(1.5)  # give a wrongly applied downgrade the time to show
    later = await score_until(deployment, lambda d: True)
    assert later["icp"]["version"] == 2


async def test_firmographic_update_and_tombstone(deployment: Deployment, tmp_path: Path) -> None:
    """An updated company record changes later scores; a tombstone removes the company."""
    deployment.run("firmographics", "load", write(tmp_path, "c.jsonl", orjson.dumps(ACME).decode()))
    deployment.run("icp", "publish", write(tmp_path, "icp.yaml", icp(1, "software")))
    deployment.start_worker(SCORER_EMIT_SCORES="true").wait_ready()
    before = await score_until(deployment, lambda d: True)
    assert before["disqualified"] and before["account"]["name"] == "Acme"
    updated = {**ACME, "industry": "Software", "name": "Acme Two"}
    deployment.run(
        "firmographics", "load", write(tmp_path, "u.jsonl", orjson.dumps(updated).decode())
    )
    after = await score_until(deployment, lambda d: d["account"]["name"] == "Acme Two")
    assert after["score"]["fit"] == 100 and not after["disqualified"]
    deployment.run("firmographics", "load", "--delete", "WWW.Acme.example")
    gone = await score_until(deployment, lambda d: d["account"]["name"] is None)
    assert gone["score"]["fit"] == 0 and gone["score"]["data_quality"] == 0
    assert not gone["disqualified"] and gone["reasons"][0]["matched"] is None


async def test_every_bad_input_class_goes_to_the_dlq(
    deployment: Deployment, tmp_path: Path
) -> None:
    """Each bad record lands in the DLQ with its bytes and why/where headers; work goes on."""
    deployment.run("icp", "publish", write(tmp_path, "icp.yaml", icp(1, "software")))
    deployment.start_worker(SCORER_EMIT_SCORES="true").wait_ready()
    visitor = deployment.topic("visitor-events")
    good = {
        "event_id": "g1",
        "type": "page_view",
        "occurred_at": "2026-11-20T10:00:00Z",
        "company_domain": "acme.example",
    }
    bad = {
        "undecodable": b"\xff\xfe\x00",
        "invalid_json": b'{"event_id": ',
        "schema": orjson.dumps({**good, "event_id": 7, "email": "pat@secret.example"}),
        "oversize": orjson.dumps({**good, "pad": "x" * 70_000}),
        "timestamp": orjson.dumps({**good, "occurred_at": "2026-11-20T10:00:00"}),
    }
    records = [(visitor, b"acme.example", value) for value in bad.values()]
    records.append((visitor, b"acme.example", None))  # a null value
    records.append((deployment.topic("firmographics"), b"bad.example", b"{not json"))
    records.append((visitor, b"acme.example", orjson.dumps(good)))
    await deployment.produce(records, headers=[("trace", b"t-1")])
    dlq = await deployment.consume("scorer-dlq", until=lambda r: len(r) >= 7, timeout=60)
    by_value = {r.value: dict(r.headers) for r in dlq}
    for reason, value in bad.items():
        headers = by_value[value]
        assert headers["scorer.reason"] == reason.encode()
        assert headers["scorer.topic"] == visitor.encode()
        assert headers["scorer.partition"].isdigit() and headers["scorer.offset"].isdigit()
        assert headers["trace"] == b"t-1"  # the original headers are kept
    assert b"secret" not in b"".join(h for r in dlq for _, h in r.headers)
    assert dict(by_value[None])["scorer.reason"] == b"schema"
    assert dict(by_value[b"{not json"])["scorer.reason"] == b"invalid_json"
    scores = await deployment.documents("account-scores", until=lambda r: len(r) >= 1, timeout=30)
    assert scores[0]["trigger"]["event_id"] == "g1"
    worker_log = deployment.workers[0].log()
    assert "secret" not in worker_log and "Traceback" not in worker_log
