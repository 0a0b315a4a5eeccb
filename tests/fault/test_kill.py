"""Killed and restarted workers: nothing lost, state as a clean pass, alerts exact."""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.fault.recovery import clean_pass, duplicates, table_state, wait_caught_up
from tests.integration.streaming import sample, setup_deployment
from tests.kafka_harness import Deployment, consume


def visitor_records(deployment: Deployment, events: list[dict]) -> tuple[list, list[bytes]]:
    """Every event on visitor-events keyed by account: one topic gives each account a
    defined order, so the recovered state can be compared with one clean pass."""
    from scorer.events import event_from_document

    records, raws = [], []
    for doc in events:
        raw = orjson.dumps(doc)
        account = event_from_document(doc).account
        records.append(
            (deployment.topic("visitor-events"), account.encode() if account else None, raw)
        )
        raws.append(raw)
    return records, raws


async def check_against_clean_pass(
    deployment: Deployment, companies: Path, raws: list[bytes]
) -> tuple[int, int]:
    """Asserts state, applied ids and alerts; returns (alert records, duplicate records)."""
    # faust names changelogs after the app id, without the topic prefix
    changelog = await consume(
        deployment.broker.bootstrap, f"{deployment.name}-accounts-changelog", idle=3, timeout=60
    )
    accounts, applied = table_state(changelog)
    expected_states, expected_alerts = clean_pass(companies, raws)
    from scorer.events import decode_event

    resolved = {decode_event(r).event_id for r in raws if decode_event(r).account is not None}
    assert applied == resolved, f"{len(resolved - applied)} events missing from the state"
    assert {d: {k: v for k, v in a.items() if k != "buckets"} for d, a in accounts.items()} == (
        expected_states
    )
    alerts = await deployment.documents("hot-accounts", idle=3, timeout=60)
    ids = [a["alert_id"] for a in alerts]
    assert set(ids) == set(expected_alerts)
    return len(ids), duplicates(ids)


async def test_kill_9_mid_stream_then_restart(deployment: Deployment, tmp_path: Path) -> None:
    """kill -9 mid-stream, restart (RocksDB store): every event applied once, the state equals
    a clean pass, every alert_id present; duplicate alert records are counted."""
    companies, events = sample(tmp_path, 600, 12_000, seed=5)
    setup_deployment(deployment, companies)
    records, raws = visitor_records(deployment, events)
    await deployment.produce(records)
    first = deployment.start_worker(SCORER_STORE="rocksdb", SCORER_EMIT_SCORES="true")
    first.wait_ready()
    await deployment.consume("account-scores", until=lambda r: len(r) >= 6000, timeout=120)
    first.kill()
    second = deployment.start_worker(SCORER_STORE="rocksdb")
    second.wait_ready(timeout=90)
    await wait_caught_up(deployment, "visitor-events")
    total, dup = await check_against_clean_pass(deployment, companies, raws)
    print(f"kill -9: {total} alert records, {dup} duplicates")


async def test_two_workers_share_partitions_and_take_over(
    deployment: Deployment, tmp_path: Path
) -> None:
    """Two workers split the partitions; when one is killed the other takes its accounts
    over with their state, and the end state equals a clean pass."""
    companies, events = sample(tmp_path, 600, 8000, seed=9)
    setup_deployment(deployment, companies)
    records, raws = visitor_records(deployment, events)
    half = len(records) // 2
    a = deployment.start_worker()
    a.wait_ready()
    b = deployment.start_worker()
    b.wait_ready(timeout=90)
    await deployment.produce(records[:half])
    await wait_caught_up(deployment, "visitor-events")
    for worker in (a, b):
        assigned = [line for line in worker.log().splitlines() if "scoring partitions" in line]
        assert assigned and assigned[-1].rstrip().endswith("]") and "[]" not in assigned[-1], (
            worker.log()
        )
    a.kill()
    await deployment.produce(records[half:])
    await wait_caught_up(deployment, "visitor-events", timeout=240)
    total, dup = await check_against_clean_pass(deployment, companies, raws)
    print(f"takeover: {total} alert records, {dup} duplicates")
