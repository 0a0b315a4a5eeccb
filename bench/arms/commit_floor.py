"""An experiment, not product code: the worker's commit cycle with no scoring.

A consume -> produce loop with the worker's exactly-once shape: a
transactional producer per task (input partition p), read_committed input,
the worker's fetch settings, and per commit one transaction per task with
the outputs, a changelog record per key (account) changed since the last
commit, and the input offsets. Instead
of scoring it spends WORK_US microseconds of CPU per event (a busy-wait), so
one can ask what latency a worker with that per-event cost could reach. One
event in ALERT_EVERY produces an alert-shaped record on the hot topic, which
`bench/arms/alert_watch.py` times.

    python bench/arms/commit_floor.py BOOTSTRAP PREFIX MODE WORK_US
With FLOOR_FROM_START=1 it reads the inputs from the start (for a drain rate).
MODE: overlap (the worker's: score while a commit is in flight), seq
(wait for the commit before fetching more), one (overlap, but one
transaction for all tasks on one producer: no per-task fencing) or alo (overlap,
at-least-once: no transaction). Runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from scorer.config import Settings
from scorer.kafka.client import producer_options, send_batches
from scorer.stream.committer import TRANSACTION_GAP
from scorer.stream.manager import SLICE
from scorer.stream.worker import FETCH_MAX_WAIT_MS, FETCH_MIN_BYTES, MAX_BATCH

PARTITIONS = 4
ALERT_EVERY = 80
LAST_END: dict[int, float] = {}  # producer -> when its last transaction ended


class Task:
    def __init__(self, partition: int, producer: AIOKafkaProducer) -> None:
        self.partition = partition
        self.producer = producer
        self.alerts: list[tuple[bytes, bytes]] = []
        self.changes: dict[bytes, bytes] = {}
        self.positions: dict[TopicPartition, int] = {}

    def has_work(self) -> bool:
        return bool(self.positions)


async def commit(tasks: list[Task], prefix: str, group: str, mode: str, consumer: Any) -> float:
    """One transaction (or, in mode alo, one acknowledged send and an offset
    commit) for `tasks`, on the first task's producer."""
    producer = tasks[0].producer
    # As the worker does (scorer.stream.committer): a transaction begun right
    # after the producer's last one finds the broker still writing its markers
    # and costs aiokafka a fixed 20 ms retry; a 3 ms pause costs less.
    pause = LAST_END.get(id(producer), 0.0) + TRANSACTION_GAP - time.monotonic()
    if pause > 0:
        await asyncio.sleep(pause)
    started = time.monotonic()
    if mode != "alo":
        await producer.begin_transaction()
    positions: dict[TopicPartition, int] = {}
    futures = []
    for task in tasks:
        alerts, task.alerts = task.alerts, []
        changes, task.changes = task.changes, {}
        positions.update(task.positions)
        task.positions = {}
        futures += await send_batches(producer, prefix + "hot-accounts", task.partition, alerts)
        futures += await send_batches(
            producer, prefix + "changelog", task.partition, changes.items()
        )
    if mode == "alo":
        await asyncio.gather(*(f for f, _ in futures))
        await consumer.commit(positions)
        return time.monotonic() - started
    offsets = {tp: OffsetAndMetadata(pos, "") for tp, pos in positions.items()}
    await producer.send_offsets_to_transaction(offsets, group)
    await producer.commit_transaction()
    LAST_END[id(producer)] = time.monotonic()
    return time.monotonic() - started


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def main(bootstrap: str, prefix: str, mode: str, work_us: float) -> None:
    group = prefix + "floor"
    inputs = [TopicPartition(prefix + "visitor-events", p) for p in range(PARTITIONS)]
    inputs += [TopicPartition(prefix + "lead-events", p) for p in range(PARTITIONS)]
    # The worker's own client settings, not copies of them.
    options = producer_options(Settings(broker=f"kafka://{bootstrap}"))
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if os.environ.get("FLOOR_FROM_START") else "latest",
        isolation_level="read_committed",
        max_partition_fetch_bytes=2 * 1024 * 1024,
        fetch_min_bytes=FETCH_MIN_BYTES,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )
    tasks = {}
    for p in range(PARTITIONS):
        producer = AIOKafkaProducer(
            **options, transactional_id=None if mode == "alo" else f"{group}-{p}"
        )
        await producer.start()
        tasks[p] = Task(p, producer)
    await consumer.start()
    consumer.assign(inputs)
    for tp in inputs:
        await consumer.position(tp)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    inflight: asyncio.Future[Any] | None = None
    durations: list[float] = []
    work = work_us / 1e6
    try:
        while not stop.is_set():
            if mode == "seq" and inflight is not None:
                await asyncio.wait([inflight])
            busy = inflight is not None and not inflight.done()
            batch = await consumer.getmany(timeout_ms=5 if busy else 100, max_records=MAX_BATCH)
            for tp, records in batch.items():
                task = tasks[tp.partition]
                for start in range(0, len(records), SLICE):
                    part = records[start : start + SLICE]
                    for record in part:
                        doc = orjson.loads(record.value)
                        if work:
                            spin(work)
                        task.changes[record.key or b""] = record.value[:200]
                        if hash(doc["event_id"]) % ALERT_EVERY == 0:
                            alert = orjson.dumps({"trigger": {"event_id": doc["event_id"]}})
                            task.alerts.append((record.key, alert))
                    task.positions[tp] = part[-1].offset + 1
                    if inflight is not None and not inflight.done():
                        await asyncio.sleep(0)
            if inflight is not None and inflight.done():
                durations += inflight.result()
                inflight = None
            if inflight is None:
                work_tasks = [t for t in tasks.values() if t.has_work()]
                if work_tasks:
                    if mode in ("one", "alo"):  # every task on task 0's producer
                        commits = [commit(work_tasks, prefix, group, mode, consumer)]
                    else:
                        commits = [commit([t], prefix, group, mode, consumer) for t in work_tasks]
                    inflight = asyncio.ensure_future(asyncio.gather(*commits))
    finally:
        if inflight is not None:
            durations += await inflight
        for task in tasks.values():
            await task.producer.stop()
        await consumer.stop()
        if durations:
            durations.sort()
            print(
                f"task commits {len(durations)}, mean {sum(durations) / len(durations) * 1000:.1f}"
                f" ms, p50 {durations[len(durations) // 2] * 1000:.1f} ms",
                flush=True,
            )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
