"""Exactly-once under failure, in the spirit of Kafka Streams' StreamsEosTest.

Two workers score steady traffic while one of them is `kill -9`ed five times
at random moments (each victim restarted on its own RocksDB directory), a
third worker joins and leaves, and the broker itself is stopped and started
once. Afterwards every event must have been applied exactly once (the state
read back from the changelog equals one clean pass) and a read_committed
consumer of hot-accounts must see exactly the alerts of that clean pass, each
once.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

import orjson

from scorer.events import event_from_document
from tests.fault.recovery import reconcile, wait_caught_up
from tests.integration.streaming import sample, setup_deployment
from tests.kafka_harness import Deployment, Worker, start_broker

EVENTS = 30_000
SECONDS = 60.0  # of traffic


def visitor_records(deployment: Deployment, events: list[dict]) -> tuple[list, list[bytes]]:
    """Every event on visitor-events keyed by account: one topic gives each account a
    defined order, so the recovered state can be compared with one clean pass."""
    records, raws = [], []
    for doc in events:
        raw = orjson.dumps(doc)
        account = event_from_document(doc).account
        key = account.encode() if account else None
        records.append((deployment.topic("visitor-events"), key, raw))
        raws.append(raw)
    return records, raws


async def produce_steadily(deployment: Deployment, records: list, seconds: float) -> None:
    """The records in 100 chunks spread over `seconds`; a chunk that meets the broker
    restart is retried until it is acknowledged."""
    chunks = 100
    size = max(1, len(records) // chunks)
    for i in range(0, len(records), size):
        while True:
            try:
                await deployment.produce(records[i : i + size])
                break
            except Exception:  # the broker is restarting; the chunk was not acked
                await asyncio.sleep(0.5)
        await asyncio.sleep(seconds / chunks)


async def test_exactly_once_through_kills_joins_and_a_broker_restart(tmp_path: Path) -> None:
    """kill -9 x5, a worker joining and leaving, a broker restart: zero lost, zero
    duplicated, state equal to a clean pass, hot-accounts equal to the batch alerts."""
    seed = int(os.environ.get("SCORER_FAULT_SEED", time.time_ns() % 10_000))
    rng = random.Random(seed)
    print(f"\nfault seed {seed} (SCORER_FAULT_SEED={seed} repeats this run's moments)")
    broker = start_broker(tmp_path / "kafka", own=True)
    deployment = Deployment(broker, tmp_path, extra_env={"SCORER_SESSION_TIMEOUT": "6"})
    try:
        companies, events = sample(tmp_path, 600, EVENTS, seed=17)
        setup_deployment(deployment, companies)
        records, raws = visitor_records(deployment, events)
        dirs = {name: str(tmp_path / f"data-{name}") for name in ("a", "b", "c")}
        running: dict[str, Worker] = {}

        def start(name: str) -> Worker:
            running[name] = deployment.start_worker(
                SCORER_STORE="rocksdb", SCORER_DATA_DIR=dirs[name]
            )
            return running[name]

        start("a").wait_ready()
        start("b").wait_ready()
        traffic = asyncio.create_task(produce_steadily(deployment, records, SECONDS))
        # Eight disturbances at random moments of the traffic, in random order.
        plan = ["kill"] * 5 + ["join", "leave", "broker"]
        rng.shuffle(plan)
        if plan.index("leave") < plan.index("join"):
            i, j = plan.index("leave"), plan.index("join")
            plan[i], plan[j] = plan[j], plan[i]
        moments = sorted(rng.uniform(3, SECONDS - 3) for _ in plan)
        started = time.monotonic()
        log = []
        for moment, action in zip(moments, plan, strict=True):
            await asyncio.sleep(max(0.0, moment - (time.monotonic() - started)))
            if action == "kill":
                victim = rng.choice(sorted(n for n in running if n in ("a", "b")))
                running.pop(victim).kill()
                start(victim)
                log.append(f"{time.monotonic() - started:5.1f}s kill -9 {victim}, restarted")
            elif action == "join":
                start("c")
                log.append(f"{time.monotonic() - started:5.1f}s worker c joins")
            elif action == "leave":
                running.pop("c").terminate()
                log.append(f"{time.monotonic() - started:5.1f}s worker c leaves")
            else:
                down = await asyncio.to_thread(broker.restart)
                log.append(f"{time.monotonic() - started:5.1f}s broker restarted ({down:.1f}s)")
        await traffic
        print("\n".join(log))
        await wait_caught_up(deployment, "visitor-events", timeout=300)

        outcome = await reconcile(deployment, broker.bootstrap, companies, raws)
        resolved, lost, wrong = outcome.resolved, outcome.lost, outcome.wrong
        ids, expected = outcome.ids, outcome.expected
        duplicated = sum(n - 1 for n in ids.values())
        print(
            f"exactly-once: {len(resolved)} events, {len(lost)} lost, "
            f"{len(wrong)} accounts differing from a clean pass, {sum(ids.values())} alert "
            f"records for {sum(expected.values())} batch alerts, {duplicated} duplicated"
        )
        assert not lost, f"{len(lost)} events never applied"
        assert not wrong, f"{len(wrong)} accounts differ from a clean pass, e.g. {wrong[:3]}"
        assert duplicated == 0
        assert ids == expected
    finally:
        deployment.stop_all()
        broker.stop()
