"""Paced load, and what the latency phases measure it with.

Shared by `make bench` (bench/stream_bench.py) and the commit-floor
experiment: the Kafka helpers the arms are driven with, the paced load
generator (record batches every 5 ms, so it takes as little CPU as it can),
the alert watcher (a read_committed consumer in a process of its own), a
process's CPU and memory from /proc, percentiles, and the commit-floor arm
(bench/arms/commit_floor.py) started and stopped.
"""

from __future__ import annotations

import asyncio
import gc
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import murmur2

from bench.common import ROOT, TMP, log
from scorer.events import event_from_document
from scorer.kafka.client import send_batches

BROKER = os.environ.get("SCORER_BROKER", "kafka://127.0.0.1:9092")
BOOTSTRAP = BROKER.split("://", 1)[-1]
PARTITIONS = 4


def record_for(prefix: str, raw: bytes) -> tuple[str, bytes | None]:
    doc = orjson.loads(raw)
    account = event_from_document(doc).account
    topic = "lead-events" if doc["type"] == "lead_created" else "visitor-events"
    return prefix + topic, account.encode() if account else None


# -- Kafka helpers ---------------------------------------------------------------------


@asynccontextmanager
async def started(client: Any) -> AsyncIterator[Any]:
    """An aiokafka consumer or admin client, started and stopped."""
    await client.start()
    try:
        yield client
    finally:
        await (client.close() if isinstance(client, AIOKafkaAdminClient) else client.stop())


async def committed_total(group: str, tps: list[TopicPartition]) -> int:
    async with started(AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=group)) as c:
        return sum([(await c.committed(tp)) or 0 for tp in tps])


async def end_total(tps: list[TopicPartition]) -> int:
    async with started(AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP)) as consumer:
        return sum((await consumer.end_offsets(tps)).values())


async def create_topics(names: list[str]) -> None:
    """Topics of PARTITIONS partitions; those that exist already are left as they are."""
    async with started(AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)) as admin:
        missing = [n for n in names if n not in set(await admin.list_topics())]
        if missing:
            await admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in missing])


# A run's topics are named `bench<its start, epoch seconds>-...` (stream_bench.run).
RUN_TOPIC = re.compile(r"bench(\d+)-")
LEFTOVER_AGE = 3600.0  # no run takes an hour: one older was stopped before its clean-up


def leftovers(names: list[str], now: float) -> list[str]:
    """The topics of runs started over LEFTOVER_AGE before `now`: stopped (Ctrl-C,
    a kill) before they deleted their topics. Those of a run still going are
    younger; no other topic has the form."""
    out = []
    for name in names:
        match = RUN_TOPIC.match(name)
        if match and now - int(match.group(1)) > LEFTOVER_AGE:
            out.append(name)
    return out


async def delete_leftovers() -> int:
    """Earlier runs' leftover topics deleted (their partitions, thousands after a few
    stopped runs, slowed the local broker: README, "The local broker's
    leftovers"); how many."""
    return await delete_topics(lambda names: leftovers(names, time.time()))


async def delete_run_topics(prefix: str) -> None:
    await delete_topics(lambda names: [t for t in names if t.startswith(prefix)])


async def delete_topics(pick: Callable[[list[str]], list[str]]) -> int:
    """The topics `pick` chooses of those on the broker, deleted; how many."""
    async with started(AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)) as admin:
        names = pick(await admin.list_topics())
        if names:
            await admin.delete_topics(names)
    return len(names)


# -- paced load ------------------------------------------------------------------------


Paced = list[tuple[str, int, bytes | None, bytes, str]]


def prepare_paced(prefix: str, events: list[bytes]) -> Paced:
    """(topic, partition, key, value, event id) of each event, decoded before the
    clock starts. Keys and partitions are those a client's default partitioner gives."""
    prepared: Paced = []
    for raw in events:
        topic, key = record_for(prefix, raw)
        partition = (murmur2(key) & 0x7FFFFFFF) % PARTITIONS if key else len(prepared) % PARTITIONS
        prepared.append((topic, partition, key, raw, orjson.loads(raw)["event_id"]))
    return prepared


async def produce_paced(prepared: Paced, rate: float) -> dict[str, float]:
    """Send at `rate` events/s; returns each event id's record timestamp (s).

    Every 5 ms the events due are appended to one record batch per partition
    (no per-record `send`): the load generator shares the machine's two cores
    with the broker and the worker, and should take as little of them as it can."""
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all")
    await producer.start()
    sent_at: dict[str, float] = {}
    # No cyclic garbage collection while the clock runs: in this process (every
    # event of the run, the arms' bookkeeping) a full one held the sending 140-430 ms,
    # and the burst after it was in every arm's latencies. What the phase leaves
    # in cycles (the client's futures) waits for the collection after it.
    gc.collect()
    gc.disable()
    try:
        start = time.monotonic()
        pending: list[asyncio.Future[Any]] = []
        index = 0
        while index < len(prepared):
            due = min(len(prepared), int((time.monotonic() - start) * rate) + 1)
            stamp = int(time.time() * 1000)
            groups: dict[tuple[str, int], list[tuple[bytes | None, bytes]]] = {}
            for topic, partition, key, raw, event_id in prepared[index:due]:
                groups.setdefault((topic, partition), []).append((key, raw))
                sent_at[event_id] = stamp / 1000.0
            for (topic, partition), records in groups.items():
                sent = await send_batches(producer, topic, partition, records, stamp)
                pending += [future for future, _ in sent]
            index = due
            if len(pending) > 2000:
                await asyncio.gather(*pending)
                pending.clear()
            await asyncio.sleep(0.005)
        await asyncio.gather(*pending)
        behind = time.monotonic() - start - len(prepared) / rate
        if behind > 1:
            log(f"  the producer fell {behind:.1f} s behind its pace")
    finally:
        gc.enable()
        await producer.stop()
    return sent_at


class AlertWatch:
    """bench/arms/alert_watch.py in a process of its own (the paced producer in
    this process would otherwise delay what it sees). Each phase's latencies are
    kept in bench/results/tmp/alert-latencies-<name>.json, [sent at (epoch s),
    latency (ms)] in the order sent: where in a phase its slowest alerts fell."""

    def __init__(self, topic: str, name: str = "phase") -> None:
        self.name = name
        self.out = TMP / f"alert-arrivals-{name}.json"
        self.out.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "bench/arms/alert_watch.py"), BOOTSTRAP, topic,
             str(PARTITIONS), str(self.out)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip

    def wait_ready(self) -> None:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError("the alert watcher did not start")

    def latencies_ms(self, sent_at: dict[str, float]) -> list[float]:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)
        arrivals: dict[str, float] = orjson.loads(self.out.read_bytes())
        timed = sorted(
            (sent_at[trigger], (arrived - sent_at[trigger]) * 1000)
            for trigger, arrived in arrivals.items()
            if trigger in sent_at
        )
        (TMP / f"alert-latencies-{self.name}.json").write_bytes(orjson.dumps(timed))
        return [latency for _, latency in timed]


def rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident set size of a process, MB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def context_switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of a process's main thread so far:
    the times it waited (for the network, a timer) and the times another task
    took its core while it could run. For an asyncio service the main thread is
    its event loop."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["voluntary_ctxt_switches"]), int(fields["nonvoluntary_ctxt_switches"])


def switch_rates(before: tuple[int, int], after: tuple[int, int], seconds: float) -> dict[str, int]:
    """Context switches per second between two `context_switches` readings."""
    return {
        "voluntary": round((after[0] - before[0]) / seconds),
        "involuntary": round((after[1] - before[1]) / seconds),
    }


def local_broker_pid() -> int | None:
    """The broker's pid when it runs on this machine (deploy/local starts it as
    `java ... kafka.Kafka <server.properties>` with a listener on BOOTSTRAP's port)."""
    host, _, port = BOOTSTRAP.rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        return None
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
            if b"kafka.Kafka" not in args:
                continue
            props = proc / "cwd" / args[args.index(b"kafka.Kafka") + 1].decode()
            lines = props.read_text().splitlines()
        except (OSError, IndexError, UnicodeDecodeError):
            continue
        listeners = [x for line in lines if line.startswith("listeners=") for x in
                     line.split("=", 1)[1].split(",")]  # fmt: skip
        if any(x.rpartition(":")[2] == port for x in listeners):
            return int(proc.name)
    return None


def broker_cpu_seconds(pid: int | None) -> float | None:
    """The broker's CPU time so far; None when it is not local (or has gone)."""
    try:
        return cpu_seconds(pid) if pid else None
    except OSError:
        return None


def percentiles(values: list[float]) -> dict[str, float]:
    if len(values) < 20:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "n": len(values)}
    q = statistics.quantiles(values, n=100)
    return {
        "p50": round(q[49], 1),
        "p95": round(q[94], 1),
        "p99": round(q[98], 1),
        "n": len(values),
    }


async def wait_drained(
    process: subprocess.Popen[bytes], group: str, tps: list[TopicPartition]
) -> None:
    end = await end_total(tps)
    deadline = time.monotonic() + 600
    while await committed_total(group, tps) < end:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the scorer did not drain its input")
        await asyncio.sleep(0.5)


# -- the commit-floor arm -------------------------------------------------------------

FLOOR_TOPICS = ("visitor-events", "lead-events", "hot-accounts", "changelog")


def floor_inputs(prefix: str) -> list[TopicPartition]:
    """The partitions the commit floor on `prefix` reads (its visitor and lead topics)."""
    return [TopicPartition(prefix + t, p) for t in FLOOR_TOPICS[:2] for p in range(PARTITIONS)]


@dataclass
class Floor:
    """A running commit_floor.py; `summary` is its last line (its commit times) once stopped."""

    process: subprocess.Popen[str]
    summary: str = ""


@asynccontextmanager
async def started_floor(
    prefix: str, mode: str, work_us: float, from_start: bool = False
) -> AsyncIterator[Floor]:
    """bench/arms/commit_floor.py on `prefix`'s four topics (created here), ready;
    stopped, and the topics deleted, after."""
    await create_topics([prefix + name for name in FLOOR_TOPICS])
    env = {**os.environ, "FLOOR_FROM_START": "1"} if from_start else None
    floor = Floor(
        subprocess.Popen(
            [sys.executable, str(ROOT / "bench/arms/commit_floor.py"), BOOTSTRAP, prefix, mode,
             str(work_us)],
            stdout=subprocess.PIPE, text=True, env=env,
        )
    )  # fmt: skip
    try:
        assert floor.process.stdout is not None
        if floor.process.stdout.readline().strip() != "ready":
            raise RuntimeError("commit_floor.py did not start")
        yield floor
    finally:
        floor.process.terminate()
        floor.summary = floor.process.communicate(timeout=30)[0].strip()
        await delete_run_topics(prefix)
