"""Account expiry through a real worker: a scaled-down year fed a day at a time."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest

from bench.year import (
    DAY,
    differing,
    run_stream,
    stream_order,
    topic_documents,
    worst_ratio,
    write_year,
)
from scorer import synthetic
from tests.integration.streaming import ICPS, setup_deployment
from tests.kafka_harness import SCORER, Deployment

pytestmark = pytest.mark.broker
DOMAINS = 20_000
DAYS = 90
TTL = 20 * DAY
WINDOW = 2 * DAY


async def test_the_worker_keeps_state_within_1_2x_of_the_active_accounts_and_equals_batch(
    deployment: Deployment, tmp_path: Path
) -> None:
    """20,000 domains over 90 days, TTL 20 days: the worker's accounts gauge stays within
    1.2x the accounts active in the TTL, the changelog's live keys follow it down, and
    its alerts are `scorer score`'s with the same TTL and window (each account's
    events in the worker's order)."""
    year = write_year(tmp_path / "year.jsonl", DOMAINS, TTL, days=DAYS)
    companies = tmp_path / "companies.jsonl"
    records = synthetic.companies(DOMAINS // 10)
    companies.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    deployment.extra_env.update(
        SCORER_ACCOUNT_TTL="20d", SCORER_DEDUP_WINDOW="2d", SCORER_COLLECT_KEEP_MAX_AGE="12h"
    )
    setup_deployment(deployment, companies)
    worker = deployment.start_worker(SCORER_STORE="rocksdb", SCORER_EMIT_SCORES="true")
    worker.wait_ready()
    bootstrap = deployment.broker.bootstrap
    run = await run_stream(
        year, bootstrap, deployment.prefix, deployment.name, worker.port, worker.process.pid
    )
    assert all(s >= a for s, a in zip(run.state, year.active, strict=True))
    ratio, day = worst_ratio(run.state, year.active, TTL)
    assert ratio <= 1.2, f"{ratio:.3f} on day {day + 1}"
    assert run.expired[-1] > DOMAINS / 2
    # What compaction would leave: an account record per account in state, a chunk
    # or two for the busiest, the marker: nowhere near one per account ever seen.
    assert run.changelog_live_keys[-1] < 1.2 * run.state[-1] + 200

    alerts = await topic_documents(bootstrap, deployment.topic("hot-accounts"))
    # The batch takes each account's events in the order the worker applied them.
    ordered = tmp_path / "ordered.jsonl"
    ordered.write_bytes(
        b"".join(await stream_order(bootstrap, deployment.topic("account-scores"), year))
    )
    options = [a for p in ICPS for a in ("--icp", str(p))]
    window = ["--account-ttl", "20d", "--dedup-window", "2d"]
    command = [SCORER, "score", "--quiet", *options, "--firmographics", str(companies), *window]
    out = subprocess.run([*command, str(ordered)], check=True, capture_output=True)
    batch = [orjson.loads(line) for line in out.stdout.splitlines()]
    assert batch, "the year should make some accounts hot"
    assert differing(alerts, batch) == 0, f"{len(alerts)} stream alerts, {len(batch)} batch"
