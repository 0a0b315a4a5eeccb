"""Reading a deployment's committed progress and final table state back from Kafka."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from scorer.config import Settings
from scorer.events import decode_event, event_from_document
from scorer.icp import load_icp
from scorer.inputs import load_companies
from scorer.kafka.client import partitions_of
from scorer.scoring import AccountState, Engine, alert_id
from scorer.stream.account_codec import FORMAT_1_BUCKETS_PER_WINDOW, read_table
from scorer.stream.store import MARKER_KEY
from tests.integration.streaming import ICPS
from tests.kafka_harness import Deployment, consume


async def wait_caught_up(deployment: Deployment, topic: str, timeout: float = 180) -> None:
    """Until the group's committed offsets reach the end of every partition of `topic`."""
    name = deployment.topic(topic)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=deployment.broker.bootstrap,
        group_id=deployment.name,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        tps = [
            TopicPartition(name, p)
            for p in sorted(
                await partitions_of({"bootstrap_servers": deployment.broker.bootstrap}, name)
            )
        ]
        ends = await consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout
        while True:
            committed = {tp: await consumer.committed(tp) or 0 for tp in tps}
            if all(committed[tp] >= ends[tp] for tp in tps):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"not caught up: committed {committed}, ends {ends}")
            await asyncio.sleep(0.5)
    finally:
        await consumer.stop()


def table_state(changelog: list[Any]) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """(account state cores by domain, applied event ids) from an accounts changelog,
    read the way a worker restores it (`scorer.stream.account_codec`)."""
    latest: dict[bytes, bytes | None] = {}
    for record in changelog:
        latest[record.key] = record.value
    window = Settings().dedup_window
    width = window / FORMAT_1_BUCKETS_PER_WINDOW
    items = [(k, v) for k, v in latest.items() if v is not None and k != MARKER_KEY]
    accounts, applied = {}, set()
    for domain, (core, ids) in read_table(items, window, width).items():
        accounts[domain] = core
        applied |= ids
    return accounts, applied


def clean_pass(
    companies: Path, raws: list[bytes]
) -> tuple[dict[str, dict[str, Any]], list[tuple[str, str]]]:
    """Account records (core) and (domain, alert id) of one uninterrupted pass."""
    records = load_companies(str(companies), strict=True)
    engine = Engine([load_icp(p) for p in ICPS])
    states: dict[str, AccountState] = {}
    alerts = []
    for raw in raws:
        event = decode_event(raw)
        if event.account is None:
            continue
        state = states.setdefault(event.account, AccountState())
        for score in engine.apply(state, event, records.get(event.account))[1]:
            if score.alert:
                alerts.append(
                    (event.account, alert_id(score.icp.id, event.account, event.event_id))
                )
    return {domain: s.core() for domain, s in states.items()}, alerts


@dataclass
class Reconciled:
    """A deployment's outcome against one uninterrupted pass over the same input."""

    resolved: set[str]  # event ids with an account: each must be applied once
    lost: set[str]  # resolved but not applied
    wrong: list[str]  # accounts whose state differs from the clean pass
    ids: Counter[str]  # alert ids on hot-accounts (read_committed), with repeats
    expected: Counter[str]  # the clean pass's alert ids


async def reconcile(
    deployment: Deployment, bootstrap: str, companies: Path, raws: list[bytes]
) -> Reconciled:
    """Read the accounts changelog and hot-accounts back and compare them with
    `clean_pass` over `raws`."""
    changelog = await consume(
        bootstrap, deployment.topic(f"{deployment.name}-accounts-changelog"), idle=3
    )
    accounts, applied = table_state(changelog)
    expected_states, expected_alerts = clean_pass(companies, raws)
    resolved = set()
    for raw in raws:
        event = event_from_document(orjson.loads(raw))
        if event.account is not None:
            resolved.add(event.event_id)
    alerts = await deployment.documents("hot-accounts", idle=3, timeout=60)
    return Reconciled(
        resolved=resolved,
        lost=resolved - applied,
        wrong=[d for d, s in expected_states.items() if accounts.get(d) != s],
        ids=Counter(a["alert_id"] for a in alerts),
        expected=Counter(alert_id for _, alert_id in expected_alerts),
    )


def duplicates(ids: list[str]) -> int:
    return sum(n - 1 for n in Counter(ids).values())
