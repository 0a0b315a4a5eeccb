"""Floor arm: the same join and score done the obvious faust way.

faust.Record decoding per event, faust's default settings (commit interval,
buffers, `stream_recovery_delay`), firmographics joined from a faust Table,
account state in a faust Table, and `await send` of every event's score. The
scoring itself is the scorer's engine, so the arm measures the plumbing.

    BENCH_BROKER=... BENCH_PREFIX=... BENCH_GROUP=... BENCH_DATA=... \
        python bench/arms/naive_faust.py worker --web-port N
"""

from __future__ import annotations

import os
from pathlib import Path

import faust
import orjson

from scorer.events import event_from_document
from scorer.icp import load_icp
from scorer.scoring import Engine
from scorer.scoring.output import ACCOUNT_SCORE, build_document
from scorer.stream.account_codec import (
    FORMAT_1_BUCKETS_PER_WINDOW,
    load_account,
    store_account,
)

ROOT = Path(__file__).resolve().parents[2]
PREFIX = os.environ["BENCH_PREFIX"]
app = faust.App(
    os.environ["BENCH_GROUP"],
    broker=os.environ["BENCH_BROKER"],
    store="memory://",
    datadir=os.environ.get("BENCH_DATA", "/tmp/naive-faust"),
    topic_partitions=4,
)


class Event(faust.Record, serializer="json"):
    event_id: str
    type: str
    occurred_at: str
    company_domain: str | None = None
    visitor_id: str | None = None
    session_id: str | None = None
    page_url: str | None = None
    referrer: str | None = None
    ip: str | None = None
    lead_id: str | None = None
    email: str | None = None
    title: str | None = None
    full_name: str | None = None
    source: str | None = None
    user_agent: str | None = None


events = app.topic(f"{PREFIX}visitor-events", f"{PREFIX}lead-events", value_type=Event)
RAW = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
companies = app.topic(f"{PREFIX}firmographics", **RAW)
scores = app.topic(f"{PREFIX}naive-scores", **RAW)
firmographics = app.Table("firmographics", key_type=bytes, value_type=bytes)
accounts = app.Table("accounts", key_type=bytes, value_type=bytes)
engine = Engine(
    load_icp(ROOT / "scorer" / "samples" / name)
    for name in ("midmarket-saas.yaml", "enterprise-fintech.yaml")
)


@app.agent(companies)
async def load_companies(stream: faust.StreamT) -> None:
    async for key, value in stream.items():
        firmographics[key] = value


@app.agent(events)
async def score(stream: faust.StreamT) -> None:
    async for record in stream:
        event = event_from_document(record.asdict())
        if event.account is None:
            continue
        key = event.account.encode()
        raw = firmographics.get(key)
        company = orjson.loads(raw) if raw is not None else None
        window = engine.dedup_window
        state, ids = load_account(accounts, key, window, window / FORMAT_1_BUCKETS_PER_WINDOW)
        _, results = engine.apply(state, event, company)
        store_account(accounts, key, state, ids)
        for result in results:
            doc = build_document(result, ACCOUNT_SCORE, 0.0)
            await scores.send(key=key, value=orjson.dumps(doc))


if __name__ == "__main__":
    app.main()
