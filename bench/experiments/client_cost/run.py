"""An experiment, not product code: what the Kafka client costs the worker's
process in CPU, with aiokafka (the worker's client, called as the worker calls
it) and with confluent-kafka (librdkafka), on the same broker with the same
records: per exactly-once task commit, and per record consumed. See README.md
beside this file.

    .venv/bin/pip install confluent-kafka   # not a dependency of the project
    .venv/bin/python -m bench.experiments.client_cost.run [BOOTSTRAP]

A task commit here is the worker's (`scorer.stream.committer`): begin a
transaction, send the outputs, send the changelog records (aiokafka: in whole
batches, `send_batches`), add the input offset of the task's partition for the
consumer group, commit. Four tasks commit at once, each on its own
transactional producer, as the worker's four tasks do in `make bench`. CPU is
the whole process's (`time.process_time`: every thread, librdkafka's too).

Consumption: CONSUMED records of the bench's size (350 bytes) in four
partitions, read from the start, read_committed, by each client as the worker
would read them (aiokafka: `getmany` of up to 1,000 records with the worker's
fetch settings; confluent-kafka: `consume` of up to 1,000), keys and values
touched, nothing else done.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import threading
import time
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import OffsetAndMetadata

from bench import paced
from scorer.config import Settings
from scorer.kafka.client import producer_options, send_batches

TASKS = 4
# (name, outputs, changelog records) per task commit. "2,000/s": what a task
# commit of `make bench`'s fixed 2,000 events/s phase carries (about 26 events,
# 0.7 changelog writes an event, an alert now and then); "half load": about 500
# events at 0.5 changelog writes an event and an alert in 80.
SHAPES = (("2,000/s", 1, 18), ("half load", 6, 250))
OUTPUT = b"x" * 900  # an alert document's size
CHANGELOG = b"y" * 600  # an account record's, at half load
ROUNDS = int(os.environ.get("TXN_ROUNDS", "150"))
CONSUMED = int(os.environ.get("CONSUMED", "500000"))
EVENT = b"e" * 350
REPEATS = int(os.environ.get("TXN_REPEATS", "3"))
ONE = ", one transaction a round"
CLIENTS = ("aiokafka", "aiokafka" + ONE, "confluent-kafka", "confluent-kafka" + ONE)


def topics(prefix: str) -> tuple[str, str, str]:
    return f"{prefix}-in", f"{prefix}-out", f"{prefix}-changelog"


def events_topic(prefix: str) -> str:
    return f"{prefix}-events"


Records = dict[int, tuple[list[bytes], list[tuple[bytes, bytes]]]]


def records(shape: tuple[str, int, int]) -> Records:
    """Each task's outputs and changelog records of one commit, built once, before
    any clock starts (both clients send the same objects at every commit)."""
    _, outputs, writes = shape
    return {
        p: (
            [OUTPUT] * outputs,
            [(b"account-%d-%d.example" % (p, i), CHANGELOG) for i in range(writes)],
        )
        for p in range(TASKS)
    }


# -- aiokafka, as the worker calls it ---------------------------------------------


async def aiokafka_commit(
    producer: AIOKafkaProducer, prefix: str, parts: Records, offset: int
) -> None:
    """One transaction with the records and input offsets of the tasks in `parts`
    (more than one: KIP-447's shape, not safe without it, which aiokafka lacks;
    measured for its cost only)."""
    source, out, changelog = topics(prefix)
    await producer.begin_transaction()
    for p, (outputs, writes) in parts.items():
        for value in outputs:
            await producer.send(out, value, key=b"k", partition=p)
        await send_batches(producer, changelog, p, writes)
    offsets = {TopicPartition(source, p): OffsetAndMetadata(offset, "") for p in parts}
    await producer.send_offsets_to_transaction(offsets, prefix)
    await producer.commit_transaction()


async def aiokafka_arm(
    bootstrap: str, prefix: str, shape: Any, rounds: int, one: bool = False
) -> float:
    """CPU ms per task commit (`one`: a round's share of one transaction per round)."""
    options = producer_options(Settings(broker=f"kafka://{bootstrap}"))
    made = records(shape)
    # (producer, the tasks it commits): one for all tasks, or one per task
    groups = [made] if one else [{p: made[p]} for p in range(TASKS)]
    producers = [
        AIOKafkaProducer(**options, transactional_id=f"{prefix}-aiokafka-{n}")
        for n in range(len(groups))
    ]
    for producer in producers:
        await producer.start()
    try:

        async def round_(n: int) -> None:
            await asyncio.gather(
                *(
                    aiokafka_commit(pr, prefix, parts, n)
                    for pr, parts in zip(producers, groups, strict=True)
                )
            )

        for warm in range(3):
            await round_(warm)
        started = time.process_time()
        for n in range(rounds):
            await round_(n)
        cpu = time.process_time() - started
    finally:
        for producer in producers:
            await producer.stop()
    return cpu / (rounds * TASKS) * 1000


# -- confluent-kafka (librdkafka) --------------------------------------------------


def confluent_arm(bootstrap: str, prefix: str, shape: Any, rounds: int, one: bool = False) -> float:
    """CPU ms per task commit: a thread per task (librdkafka's calls block); `one`:
    one producer, every task's records and offsets in one transaction a round
    (KIP-447: the group metadata fences a zombie), a round's share per task."""
    import confluent_kafka as ck

    source, out, changelog = topics(prefix)
    consumer = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": prefix})
    group = consumer.consumer_group_metadata()
    made = records(shape)
    threads_n = 1 if one else TASKS
    start = threading.Barrier(threads_n + 1)
    done = threading.Barrier(threads_n + 1)
    errors: list[BaseException] = []

    def task(p: int) -> None:
        parts = made if one else {p: made[p]}
        producer = ck.Producer(
            {
                "bootstrap.servers": bootstrap,
                "transactional.id": f"{prefix}-confluent-{p}",
                "acks": "all",
                "enable.idempotence": True,
                "compression.type": "zstd",
                "linger.ms": 0,
                "batch.size": 256 * 1024,
                "retry.backoff.ms": 10,
            }
        )

        def commit(offset: int) -> None:
            producer.begin_transaction()
            for q, (outputs, writes) in parts.items():
                for value in outputs:
                    producer.produce(out, value, b"k", partition=q)
                for key, value in writes:
                    producer.produce(changelog, value, key, partition=q)
            offsets = [ck.TopicPartition(source, q, offset) for q in parts]
            producer.send_offsets_to_transaction(offsets, group, 30)
            producer.commit_transaction(30)

        try:
            producer.init_transactions(30)
            for warm in range(3):
                commit(warm)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        start.wait()
        try:
            if not errors:
                for n in range(rounds):
                    commit(n)
        except BaseException as exc:
            errors.append(exc)
        done.wait()

    threads = [threading.Thread(target=task, args=(p,)) for p in range(threads_n)]
    for thread in threads:
        thread.start()
    start.wait()
    started = time.process_time()
    done.wait()
    cpu = time.process_time() - started
    for thread in threads:
        thread.join()
    consumer.close()
    if errors:
        raise errors[0]
    return cpu / (rounds * TASKS) * 1000


# -- consumption -------------------------------------------------------------------


async def fill(bootstrap: str, topic: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    await producer.start()
    try:
        per = CONSUMED // TASKS
        for p in range(TASKS):
            await send_batches(producer, topic, p, ((b"%d" % i, EVENT) for i in range(per)))
        await producer.flush()
    finally:
        await producer.stop()


async def aiokafka_consume(bootstrap: str, topic: str) -> float:
    """CPU us per record."""
    from aiokafka import AIOKafkaConsumer

    from scorer.stream.worker import FETCH_MAX_WAIT_MS, FETCH_MIN_BYTES, MAX_BATCH

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        fetch_min_bytes=FETCH_MIN_BYTES,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(TASKS)])
        started, count, size = time.process_time(), 0, 0
        while count < CONSUMED - CONSUMED % TASKS:
            batch = await consumer.getmany(timeout_ms=1000, max_records=MAX_BATCH)
            for records in batch.values():
                for record in records:
                    size += len(record.value) + len(record.key)
                count += len(records)
        cpu = time.process_time() - started
    finally:
        await consumer.stop()
    return cpu / count * 1e6


def confluent_consume(bootstrap: str, topic: str) -> float:
    import confluent_kafka as ck

    consumer = ck.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{topic}-confluent",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    consumer.assign([ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in range(TASKS)])
    started, count, size = time.process_time(), 0, 0
    while count < CONSUMED - CONSUMED % TASKS:
        for message in consumer.consume(1000, 1.0):
            if message.error():
                raise RuntimeError(message.error())
            size += len(message.value()) + len(message.key())
            count += 1
    cpu = time.process_time() - started
    consumer.close()
    return cpu / count * 1e6


# -- the run -----------------------------------------------------------------------


async def create(bootstrap: str, prefix: str) -> None:
    async with paced.started(AIOKafkaAdminClient(bootstrap_servers=bootstrap)) as admin:
        names = [*topics(prefix), events_topic(prefix)]
        await admin.create_topics([NewTopic(t, TASKS, 1) for t in names])


async def delete(bootstrap: str, prefix: str) -> None:
    async with paced.started(AIOKafkaAdminClient(bootstrap_servers=bootstrap)) as admin:
        await admin.delete_topics([*topics(prefix), events_topic(prefix)])


def main(bootstrap: str) -> None:
    prefix = f"clientcost{int(time.time())}"
    asyncio.run(create(bootstrap, prefix))
    results: dict[tuple[str, str], list[float]] = {}
    consumed: dict[str, list[float]] = {}
    try:
        asyncio.run(fill(bootstrap, events_topic(prefix)))
        for repeat in range(REPEATS):
            for client in ("aiokafka", "confluent-kafka"):
                if client == "aiokafka":
                    us = asyncio.run(aiokafka_consume(bootstrap, events_topic(prefix)))
                else:
                    us = confluent_consume(bootstrap, events_topic(prefix))
                consumed.setdefault(client, []).append(us)
                print(f"[{repeat + 1}/{REPEATS}] consume {client:15s} {us:5.2f} us CPU a record")
        for repeat in range(REPEATS):
            for shape in SHAPES:
                for client in CLIENTS:
                    wall = time.monotonic()
                    one = client.endswith(ONE)
                    if client.startswith("aiokafka"):
                        ms = asyncio.run(aiokafka_arm(bootstrap, prefix, shape, ROUNDS, one))
                    else:
                        ms = confluent_arm(bootstrap, prefix, shape, ROUNDS, one)
                    wall = (time.monotonic() - wall) / ROUNDS * 1000
                    results.setdefault((shape[0], client), []).append(ms)
                    print(
                        f"[{repeat + 1}/{REPEATS}] {shape[0]:9s} {client:40s} "
                        f"{ms:6.2f} ms CPU a task commit ({wall:5.1f} ms a round of {TASKS})",
                        flush=True,
                    )
    finally:
        asyncio.run(delete(bootstrap, prefix))
    print(f"\nconsuming {CONSUMED:,} records of {len(EVENT)} bytes, medians of {REPEATS}:")
    for client, values in consumed.items():
        print(f"  {client:15s} {statistics.median(values):5.2f} us CPU a record")
    print(f"\nmedians of {REPEATS} runs of {ROUNDS} rounds x {TASKS} task commits:")
    for shape in SHAPES:
        print(f"  {shape[0]} ({shape[1]} outputs, {shape[2]} changelog records a task):")
        base = statistics.median(results[(shape[0], CLIENTS[0])])
        for client in CLIENTS:
            ms = statistics.median(results[(shape[0], client)])
            print(f"    {client:40s} {ms:6.2f} ms CPU a task commit ({ms / base:.2f}x)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9092")
