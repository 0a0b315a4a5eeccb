"""Helpers of the collector tests: write keys, raw HTTP calls, the SDK clients, and a
seeded generator of visitors (anonymous for a while, then identified, grouped or never)."""

from __future__ import annotations

import base64
import gzip
import random
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from scorer.timefmt import format_epoch

WEB_KEY = "wk_web_test"
BACKEND_KEY = "wk_backend_test"
WRITE_KEYS = f"web={WEB_KEY},backend={BACKEND_KEY}"
PAGES = ["/", "/pricing", "/docs/getting-started", "/blog/icp-scoring", "/customers"]


def post(
    port: int,
    path: str,
    body: Any,
    key: str | None = WEB_KEY,
    compress: bool = False,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """POST JSON (or raw bytes) to the collector; (status, JSON answer, headers)."""
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    sent = {"Content-Type": "application/json", **(headers or {})}
    if key is not None:
        sent["Authorization"] = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    if compress:
        data = gzip.compress(data)
        sent["Content-Encoding"] = "gzip"
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, headers=sent, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, orjson.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read() or b"{}"), dict(exc.headers)


def iso(at: float) -> str:
    return format_epoch(at)


@dataclass
class Visitors:
    """Calls of seeded visitors and the visitor/lead events a correct collector makes
    of them (`expected`, in the order each account should get them credited)."""

    calls: list[dict[str, Any]] = field(default_factory=list)
    expected: list[dict[str, Any]] = field(default_factory=list)
    never_linked: int = 0


def visitors(
    domains: list[str], count: int, seed: int, start: datetime, kinds: tuple[str, ...]
) -> Visitors:
    """`count` visitors: each views a few pages anonymously, then (by `kinds`, at random)
    identifies with a work email, is grouped to a company, or never says who it is;
    some view more pages after. Timestamps run forward from `start`."""
    rng = random.Random(seed)
    out = Visitors()
    clock = start
    for n in range(count):
        anon = f"anon-{seed}-{n}"
        domain = rng.choice(domains)
        ending = rng.choice(kinds)
        before = [rng.choice(PAGES) for _ in range(rng.randint(1, 6))]
        after = [rng.choice(PAGES) for _ in range(rng.randint(0, 3))] if ending != "never" else []
        kept = []
        for i, path in enumerate(before):
            clock += timedelta(seconds=rng.randint(1, 90))
            message_id = f"pv-{seed}-{n}-{i}"
            at = clock.timestamp()
            out.calls.append(
                {
                    "type": "page",
                    "anonymousId": anon,
                    "messageId": message_id,
                    "timestamp": clock.isoformat(),
                    "properties": {"url": f"https://site.example{path}?utm=x", "path": path},
                    "context": {"ip": "203.0.113.7"},
                }
            )
            kept.append(page_event(message_id, at, path, domain))
        if ending == "never":
            out.never_linked += 1
            continue
        clock += timedelta(seconds=rng.randint(1, 90))
        link_id = f"link-{seed}-{n}"
        if ending == "identify":
            out.calls.append(
                {
                    "type": "identify",
                    "anonymousId": anon,
                    "userId": f"user-{seed}-{n}",
                    "messageId": link_id,
                    "timestamp": clock.isoformat(),
                    "traits": {"email": f"person{n}@{domain}", "title": "VP Sales"},
                }
            )
        else:
            out.calls.append(
                {
                    "type": "group",
                    "anonymousId": anon,
                    "groupId": f"acct-{n}",
                    "messageId": link_id,
                    "timestamp": clock.isoformat(),
                    "traits": {"website": f"https://www.{domain}/"},
                }
            )
        out.expected.extend(kept)
        for i, path in enumerate(after):
            clock += timedelta(seconds=rng.randint(1, 90))
            message_id = f"pa-{seed}-{n}-{i}"
            out.calls.append(
                {
                    "type": "page",
                    "anonymousId": anon,
                    "messageId": message_id,
                    "timestamp": clock.isoformat(),
                    "properties": {"url": f"https://site.example{path}", "path": path},
                }
            )
            out.expected.append(page_event(message_id, clock.timestamp(), path, domain))
    return out


def page_event(event_id: str, at: float, path: str, domain: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "page_view",
        "occurred_at": iso(at),
        "page_url": f"https://site.example{path}",
        "company_domain": domain,
    }


def batches(calls: list[dict[str, Any]], size: int = 100) -> list[dict[str, Any]]:
    return [{"batch": calls[i : i + size]} for i in range(0, len(calls), size)]


NOW = datetime.now(UTC).replace(microsecond=0)
