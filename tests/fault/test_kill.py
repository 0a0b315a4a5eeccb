"""Killed and restarted workers: nothing lost, state as a clean pass, alerts exact."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import orjson

from scorer.events import decode_event
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


SKIPPED = re.compile(r"visitor-events\[(\d+)\]: offsets (\d+)\.\.(\d+) were skipped")


def logged_skips(deployment: Deployment) -> list[tuple[int, int, int]]:
    """(partition, first, last) of every skipped range any worker logged."""
    ranges = []
    for worker in deployment.workers:
        for match in SKIPPED.finditer(worker.log_path.read_text(errors="replace")):
            ranges.append((int(match[1]), int(match[2]), int(match[3])))
    return ranges


async def check_against_clean_pass(
    deployment: Deployment, companies: Path, raws: list[bytes], positions: list[tuple[int, int]]
) -> tuple[int, int, int]:
    """Every event is applied or was logged as skipped (no silent loss); every account
    no loss touched equals a clean pass, alerts included. Returns (alert records,
    duplicate alert records, lost events)."""
    # faust names changelogs after the app id, without the topic prefix
    changelog = await consume(
        deployment.broker.bootstrap, f"{deployment.name}-accounts-changelog", idle=3, timeout=60
    )
    accounts, applied = table_state(changelog)
    expected_states, expected_alerts = clean_pass(companies, raws)
    events = [decode_event(r) for r in raws]
    lost = [
        (e, pos)
        for e, pos in zip(events, positions, strict=True)
        if e.account is not None and e.event_id not in applied
    ]
    skips = logged_skips(deployment)
    silent = [
        e.event_id
        for e, (partition, offset) in lost
        if not any(p == partition and a <= offset <= b for p, a, b in skips)
    ]
    assert not silent, f"{len(silent)} events lost without a logged skip: {silent[:5]}"
    touched = {e.account for e, _ in lost}
    stored = ("buckets", "recent")  # how ids are stored, not what the state is
    states = {d: {k: v for k, v in a.items() if k not in stored} for d, a in accounts.items()}
    for domain, state in expected_states.items():
        if domain not in touched:
            assert states.get(domain) == state, domain
    alerts = await deployment.documents("hot-accounts", idle=3, timeout=60)
    ids = [a["alert_id"] for a in alerts if a["account"]["domain"] not in touched]
    expected = {alert_id for domain, alert_id in expected_alerts if domain not in touched}
    assert set(ids) == expected
    return len(ids), duplicates(ids), len(lost)


async def test_kill_9_mid_stream_then_restart(deployment: Deployment, tmp_path: Path) -> None:
    """kill -9 mid-stream, restart (RocksDB store): every event applied once, none lost,
    the state equals a clean pass, every alert_id present; duplicate alert records are
    counted."""
    companies, events = sample(tmp_path, 600, 12_000, seed=5)
    setup_deployment(deployment, companies)
    records, raws = visitor_records(deployment, events)
    positions = await deployment.produce(records)
    first = deployment.start_worker(SCORER_STORE="rocksdb", SCORER_EMIT_SCORES="true")
    first.wait_ready()
    await deployment.consume("account-scores", until=lambda r: len(r) >= 6000, timeout=120)
    first.kill()
    second = deployment.start_worker(SCORER_STORE="rocksdb")
    second.wait_ready(timeout=90)
    await wait_caught_up(deployment, "visitor-events")
    total, dup, lost = await check_against_clean_pass(deployment, companies, raws, positions)
    print(f"kill -9: {total} alert records, {dup} duplicates, {lost} events lost")
    assert lost == 0


async def test_two_workers_share_partitions_and_take_over(
    deployment: Deployment, tmp_path: Path
) -> None:
    """Two workers split the partitions; when one is killed the other takes its accounts
    over with their state. Traffic keeps flowing while the first worker dies, so the
    takeover happens mid-stream; still no event is lost and the end state equals a
    clean pass.

    The second worker joins after the first half is produced, not while it arrives:
    with traffic during that join, one run in about twelve left the first worker's
    table recovery waiting for ever ("No event received for active tp ... since
    recovery start"), an open problem (README, "Delivery guarantees")."""
    companies, events = sample(tmp_path, 600, 8000, seed=9)
    setup_deployment(deployment, companies)
    records, raws = visitor_records(deployment, events)
    half = len(records) // 2
    a = deployment.start_worker()
    a.wait_ready()
    positions = await produce_slowly(deployment, records[:half], seconds=4)
    b = deployment.start_worker()
    b.wait_ready(timeout=90)
    await wait_until(lambda: a.status("/readyz") == 200 and b.status("/readyz") == 200)
    await wait_caught_up(deployment, "visitor-events")
    assert [last_assignment(w) for w in (a, b)] in (["[2, 3]", "[0, 1]"], ["[0, 1]", "[2, 3]"])
    quarter = len(records) * 3 // 4
    positions += await produce_slowly(deployment, records[half:quarter], seconds=2)
    a.kill()  # mid-stream
    positions += await produce_slowly(deployment, records[quarter:], seconds=8)
    await wait_until(lambda: last_assignment(b) == "[0, 1, 2, 3]", timeout=90)
    await wait_caught_up(deployment, "visitor-events", timeout=240)
    total, dup, lost = await check_against_clean_pass(deployment, companies, raws, positions)
    print(f"takeover: {total} alert records, {dup} duplicates, {lost} events lost")
    assert lost == 0


async def produce_slowly(
    deployment: Deployment, records: list, seconds: float, chunks: int = 20
) -> list[tuple[int, int]]:
    """Spread the records over `seconds`, so workers join or die while they arrive."""
    size = max(1, len(records) // chunks)
    positions: list[tuple[int, int]] = []
    for i in range(0, len(records), size):
        positions += await deployment.produce(records[i : i + size])
        await asyncio.sleep(seconds / chunks)
    return positions


def last_assignment(worker: Any) -> str:
    lines = [
        line
        for line in worker.log_path.read_text(errors="replace").splitlines()
        if "scoring partitions" in line
    ]
    return lines[-1].split("scoring partitions ", 1)[1].strip() if lines else ""


async def wait_until(condition: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.2)
