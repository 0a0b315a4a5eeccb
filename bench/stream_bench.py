"""Streaming benchmark: ceiling, floor and scorer arms on one broker, in one run.

Arms, run one after the other over the same input topics (each its own group):
  ceiling  the strongest raw aiokafka passthrough we could write: batched
           getmany, hand-built record batches per partition, lz4, a linger
           (bench/arms/ceiling.py);
  java     Kafka's own Java consumer perf tool on the same topics (a consume-
           only physical reference: no produce, no commit per batch);
  floor    a naive faust agent: faust.Record, `await send` per event, default
           settings, the same join and engine (bench/arms/naive_faust.py);
  scorer   `scorer worker` as shipped (exactly-once, RocksDB store, defaults).

Drain throughput: events are all in the topics before an arm starts; its rate
is read from the group's committed offsets, between 5 % and 95 % of the input
(or, for a ceiling or floor arm that would take longer than BENCH_ARM_SECONDS,
over that many seconds from its first commit; the scorer always drains it
all). Then, on the scorer only: paced load at 50 % and 80 % of its own drain
rate for BENCH_PACED_SECONDS each, with the latency of every alert from its
input record's timestamp to its arrival at a read_committed consumer (the
alert committed and visible downstream); the worker's peak RSS; time
to the first event; and, with one event for each of the 100,000 companies
applied (100,000 accounts of state), the time from a restart to /readyz, on
the same RocksDB volume (warm) and on an empty one (cold: every task's store
rebuilt from its changelog).

Environment: BENCH_EVENTS (1,000,000), BENCH_ARM_SECONDS (120),
BENCH_PACED_SECONDS (30), BENCH_PACED_RATE (the paced phases' 100 %, instead of the
scorer's drain rate: for tuning), BENCH_PROFILE=1 (py-spy on the scorer while it
drains), BENCH_QUICK=1 (the scorer's drain only, no results file: for
tuning; BENCH_QUICK=latency adds the paced phases), BENCH_SCORER_WRAP (a
command to run the worker under, e.g. a profiler), SCORER_BROKER (else the
local broker `make bench` starts).
Writes bench/results/latest.json and bench/results/<date>-stream.json, and a
table on stdout; progress goes to stderr.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import murmur2
from prometheus_client.parser import text_string_to_metric_families

from bench.common import (
    ACTIVE_DOMAINS,
    ICPS,
    ROOT,
    TMP,
    companies_file,
    events_file,
    log,
    save_result,
)
from scorer import synthetic
from scorer.config import Settings
from scorer.events import event_from_document
from scorer.kafka.client import send_batches
from scorer.kafka.topics import Topics, ensure_topics
from scorer.stream.account_codec import SEPARATOR
from scorer.stream.store import MARKER_KEY

BIN = Path(sys.executable).parent
EVENTS = int(os.environ.get("BENCH_EVENTS", "1000000"))
ARM_SECONDS = float(os.environ.get("BENCH_ARM_SECONDS", "120"))
PACED_SECONDS = float(os.environ.get("BENCH_PACED_SECONDS", "30"))
PROFILE = os.environ.get("BENCH_PROFILE") == "1"
QUICK = os.environ.get("BENCH_QUICK", "")  # "1": the scorer's drain only; "latency": and paced
BROKER = os.environ.get("SCORER_BROKER", "kafka://127.0.0.1:9092")
BOOTSTRAP = BROKER.split("://", 1)[-1]
PARTITIONS = 4
PAD = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0"


# -- data --------------------------------------------------------------------------


def padded(event: dict[str, Any]) -> bytes:
    """300-400 bytes of JSON: pad smaller events with a user agent (ignored by the scorer)."""
    raw = orjson.dumps(event)
    if len(raw) < 300:
        event = {**event, "user_agent": PAD[: max(20, 330 - len(raw))]}
        raw = orjson.dumps(event)
    return raw


def make_data() -> tuple[Path, list[str], Path]:
    companies, domains = companies_file()
    return companies, domains, events_file("stream-events", EVENTS, domains, padded)


def record_for(prefix: str, raw: bytes) -> tuple[str, bytes | None]:
    doc = orjson.loads(raw)
    account = event_from_document(doc).account
    topic = "lead-events" if doc["type"] == "lead_created" else "visitor-events"
    return prefix + topic, account.encode() if account else None


# -- Kafka helpers ---------------------------------------------------------------------


async def produce_file(prefix: str, path: Path) -> int:
    producer = AIOKafkaProducer(
        bootstrap_servers=BOOTSTRAP, linger_ms=20, max_batch_size=512 * 1024, acks="all"
    )
    await producer.start()
    count = 0
    try:
        pending = []
        with path.open("rb") as lines:
            for raw in lines:
                raw = raw.rstrip(b"\n")
                topic, key = record_for(prefix, raw)
                pending.append(await producer.send(topic, raw, key=key))
                count += 1
                if len(pending) >= 20_000:
                    await asyncio.gather(*pending)
                    pending.clear()
                    if count % 200_000 == 0:
                        log(f"  produced {count:,}")
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return count


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
        await producer.stop()
    return sent_at


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
    async with started(AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)) as admin:
        await admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names])


async def delete_run_topics(prefix: str) -> None:
    async with started(AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)) as admin:
        names = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if names:
            await admin.delete_topics(names)


async def read_topic(topic: str) -> AsyncIterator[Any]:
    """Every record of `topic` from the start, until none arrives for 3 s."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=BOOTSTRAP, auto_offset_reset="earliest", group_id=None
    )
    async with started(consumer):
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < 3:
            batches = await consumer.getmany(timeout_ms=500, max_records=20_000)
            if batches:
                idle_since = time.monotonic()
            for records in batches.values():
                for record in records:
                    yield record


class AlertWatch:
    """bench/arms/alert_watch.py in a process of its own (the paced producer in
    this process would otherwise delay what it sees)."""

    def __init__(self, topic: str) -> None:
        self.out = TMP / "alert-arrivals.json"
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
        return [
            (arrived - sent_at[trigger]) * 1000
            for trigger, arrived in arrivals.items()
            if trigger in sent_at
        ]


# -- arms ---------------------------------------------------------------------------------


@dataclass
class Drain:
    events_per_s: float
    first_progress_s: float
    seconds: float
    processed: int
    cpu: float  # the arm process's CPU over the measured window, in cores


async def measure_drain(
    process: subprocess.Popen[bytes],
    group: str,
    tps: list[TopicPartition],
    total: int,
    cap: float = ARM_SECONDS,
) -> Drain:
    started = time.monotonic()
    samples: list[tuple[float, int, float]] = []  # (time, committed, the arm's CPU seconds)
    first = None
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"arm exited with {process.returncode}")
        now = time.monotonic()
        done = await committed_total(group, tps)
        samples.append((now, done, cpu_seconds(process.pid)))
        if first is None and done > 0:
            first = now
            log(f"  first commit {now - started:.1f} s after start")
        if done >= total or (first is not None and now - first > cap):
            break
        if len(samples) % 20 == 0:
            log(f"  {done:,}/{total:,} committed")
        await asyncio.sleep(0.5)
    assert first is not None
    lo, hi = 0.05 * total, 0.95 * total
    window = [s for s in samples if lo <= s[1] <= hi] if done >= total else []
    if len(window) < 2:  # capped, or too few samples: from the first commit to the end
        window = [s for s in samples if s[0] >= first]
    (t0, n0, c0), (t1, n1, c1) = window[0], window[-1]
    rate = (n1 - n0) / (t1 - t0) if t1 > t0 else float("nan")
    cpu = (c1 - c0) / (t1 - t0) if t1 > t0 else float("nan")
    return Drain(rate, first - started, samples[-1][0] - started, done, cpu)


def stop(process: subprocess.Popen[bytes], timeout: float = 20) -> float:
    start = time.monotonic()
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return time.monotonic() - start


STARTED: list[subprocess.Popen[bytes]] = []  # stopped when the run ends, however it ends


def start(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    handle = log_path.open("wb")
    process = subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)
    STARTED.append(process)
    return process


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


def histogram_totals(port: int, name: str) -> tuple[float, float]:
    """(sum, count) of a histogram on the worker's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    return values.get(f"{name}_sum", 0.0), values.get(f"{name}_count", 0.0)


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 600) -> float:
    start_at = time.monotonic()
    while time.monotonic() - start_at < timeout:
        if process.poll() is not None:
            raise RuntimeError("worker exited before it was ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return time.monotonic() - start_at
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError("worker not ready in time")


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


# -- the run ------------------------------------------------------------------------------


async def run() -> dict[str, Any]:
    companies_path, domains, events_path = make_data()
    prefix = f"bench{int(time.time())}-"
    settings = Settings(broker=BROKER, topic_prefix=prefix, topic_partitions=PARTITIONS)
    topics = Topics.from_settings(settings)
    await ensure_topics(settings, topics)
    await create_topics([f"{prefix}ceiling-out", f"{prefix}naive-scores"])
    env = {
        **os.environ,
        "SCORER_BROKER": BROKER,
        "SCORER_TOPIC_PREFIX": prefix,
        "SCORER_TOPIC_PARTITIONS": str(PARTITIONS),
    }
    scorer = str(BIN / "scorer")
    try:
        log("publishing 2 ICPs and loading 100,000 companies")
        for icp in ICPS:
            subprocess.run([scorer, "icp", "publish", str(icp)], env=env, check=True)
        subprocess.run(
            [scorer, "firmographics", "load", str(companies_path)],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        log(f"producing {EVENTS:,} events")
        t = time.monotonic()
        produced = await produce_file(prefix, events_path)
        log(f"  {produced:,} in {time.monotonic() - t:.1f} s")
        inputs = [f"{prefix}visitor-events", f"{prefix}lead-events"]
        tps = [TopicPartition(name, p) for name in inputs for p in range(PARTITIONS)]
        total = await end_total(tps)
        result: dict[str, Any] = {"arms": {}}

        if not QUICK:
            arms = {
                "ceiling": (
                    [sys.executable, str(ROOT / "bench/arms/ceiling.py"), BOOTSTRAP,
                     f"{prefix}ceiling", f"{prefix}ceiling-out", *inputs],
                    env, f"{prefix}ceiling",
                ),
                "floor": (
                    [sys.executable, str(ROOT / "bench/arms/naive_faust.py"), "worker",
                     "--web-port", str(free_port()), "--loglevel", "warn"],
                    {**env, "BENCH_BROKER": BROKER, "BENCH_PREFIX": prefix,
                     "BENCH_GROUP": f"{prefix}naive", "BENCH_DATA": str(TMP / "naive-data")},
                    f"{prefix}naive",
                ),
            }  # fmt: skip
            for name, (command, arm_env, group) in arms.items():
                log(f"arm: {name}")
                process = start(command, arm_env, TMP / f"{name}.log")
                drain = await measure_drain(process, group, tps, total)
                stop(process)
                result["arms"][name] = arm_result(drain)
                log(f"  {name}: {drain.events_per_s:,.0f} events/s")
                if name == "ceiling":
                    log("arm: java (Kafka's ConsumerPerformance, consume only)")
                    result["java_consumer_perf"] = java_consumer_perf(prefix, total)
                    log(f"  java: {result['java_consumer_perf']}")

        log("arm: scorer (scorer worker as shipped)")
        port = free_port()
        data_dir = TMP / "scorer-data"
        shutil.rmtree(data_dir, ignore_errors=True)
        worker_env = {
            **env,
            "SCORER_APP_ID": f"{prefix}scorer",
            "SCORER_WEB_PORT": str(port),
            "SCORER_DATA_DIR": str(data_dir),
            "SCORER_LOG_LEVEL": "WARNING",
        }
        worker_log = TMP / "scorer.log"
        wrap = os.environ.get("BENCH_SCORER_WRAP", "").split()  # e.g. a profiler
        process = start(
            [*wrap, scorer, "worker"], {**worker_env, "SCORER_LOG_LEVEL": "INFO"}, worker_log
        )
        profiler = None
        # py-spy, if installed, is beside this interpreter, not always on PATH.
        spy = None
        if PROFILE:
            spy = shutil.which("py-spy", path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
            if spy is None:
                log("BENCH_PROFILE: py-spy not found (it is not a dependency: pip install py-spy)")
        if spy is not None:
            profiler = subprocess.Popen(
                [spy, "record", "--pid", str(process.pid), "--duration", "40",
                 "--rate", "200", "--format", "raw", "--output", str(TMP / "scorer-profile.txt"),
                 "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        # The scorer drains all of it (latency is measured after, on an empty queue).
        drain = await measure_drain(process, f"{prefix}scorer", tps, total, cap=3600)
        result["arms"]["scorer"] = arm_result(drain)
        match = re.search(r"first event processed ([\d.]+) s", worker_log.read_text())
        result["first_event_s"] = float(match[1]) if match else None
        log(f"  scorer: {drain.events_per_s:,.0f} events/s, {drain.cpu:.2f} cores")
        if profiler is not None:
            profiler.wait()
        if QUICK == "1":
            stop(process)
            return result

        # Paced load: fresh events, later in event time (cooldowns have passed).
        last = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(seconds=2.0 * EVENTS)
        rate = float(os.environ.get("BENCH_PACED_RATE", 0)) or drain.events_per_s  # for tuning
        result["latency_ms"] = {}
        for share, seed in ((0.5, 101), (0.8, 102)):
            count = int(rate * share * PACED_SECONDS)
            last += timedelta(days=3)
            paced = prepare_paced(
                prefix,
                [
                    padded(e)
                    for e in synthetic.events(
                        count, domains[:ACTIVE_DOMAINS], seed=seed, start=last
                    )
                ],
            )
            last += timedelta(seconds=2.0 * count)
            log(f"paced load: {share:.0%} of {rate:,.0f}/s = {rate * share:,.0f}/s for "
                f"{PACED_SECONDS:.0f} s")  # fmt: skip
            watch = AlertWatch(f"{prefix}hot-accounts")
            watch.wait_ready()
            broker = local_broker_pid()
            cpu_before, own_before, broker_before, wall = (
                cpu_seconds(process.pid),
                time.process_time(),
                broker_cpu_seconds(broker),
                time.monotonic(),
            )
            commits_before = histogram_totals(port, "scorer_commit_seconds")
            sent_at = await produce_paced(paced, rate * share)
            await wait_drained(process, f"{prefix}scorer", tps)
            wall = time.monotonic() - wall
            broker_after = broker_cpu_seconds(broker)
            cpu = {  # share of one core, from the start of the load to the drained input
                "worker": round((cpu_seconds(process.pid) - cpu_before) / wall, 2),
                "load_generator": round((time.process_time() - own_before) / wall, 2),
                "broker": None,  # when it runs on another machine
            }
            if broker_before is not None and broker_after is not None:
                cpu["broker"] = round((broker_after - broker_before) / wall, 2)
            commits = histogram_totals(port, "scorer_commit_seconds")
            commit_count = commits[1] - commits_before[1]
            commit_mean = (commits[0] - commits_before[0]) / commit_count if commit_count else 0
            await asyncio.sleep(1.0)  # the last commit's alerts reach the watcher
            latencies = watch.latencies_ms(sent_at)
            result["latency_ms"][f"{int(share * 100)}pct"] = {
                **percentiles(latencies),
                "events_per_s": round(rate * share),
                "cpu": cpu,
                "task_commits": int(commit_count),
                "task_commit_mean_ms": round(commit_mean * 1000, 1),
            }
            log(f"  {result['latency_ms'][f'{int(share * 100)}pct']}")

        if QUICK:
            stop(process)
            return result

        # 100,000 accounts of state: one event for every company.
        log("state: one event for each of the 100,000 companies")
        last += timedelta(days=3)
        one_each = [
            padded({"event_id": f"s-{i:06d}", "type": "page_view", "company_domain": d,
                    "occurred_at": (last + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
                    "visitor_id": f"v-{i}", "page_url": "https://scorer.example/pricing"})
            for i, d in enumerate(domains)
        ]  # fmt: skip
        await produce_paced(prepare_paced(prefix, one_each), rate=max(1000.0, rate * 0.8))
        await wait_drained(process, f"{prefix}scorer", tps)
        result["rss_mb"] = round(rss_mb(process.pid)[1])
        result["state_accounts"] = await accounts_in_changelog(
            f"{prefix}{prefix}scorer-accounts-changelog"
        )
        result["shutdown_s"] = round(stop(process), 2)

        log("restart on the same RocksDB volume")
        process = start([scorer, "worker"], worker_env, TMP / "scorer-restart.log")
        result["restart_ready_s"] = round(wait_ready(port, process), 2)
        stop(process)
        log("restart on an empty volume (stores rebuilt from the changelog)")
        shutil.rmtree(data_dir, ignore_errors=True)
        cold_log = TMP / "scorer-cold.log"
        process = start([scorer, "worker"], {**worker_env, "SCORER_LOG_LEVEL": "INFO"}, cold_log)
        result["cold_restore_ready_s"] = round(wait_ready(port, process), 2)
        stop(process)
        restored = re.findall(
            r"restored (\d+) account records .* in ([\d.]+) s", cold_log.read_text()
        )
        result["cold_restore"] = {
            "records": sum(int(n) for n, _ in restored),
            "seconds": round(sum(float(t) for _, t in restored), 2),
        }
        return result
    finally:
        for process in STARTED:
            stop(process)
        await delete_run_topics(prefix)


async def accounts_in_changelog(topic: str) -> int:
    keys = set()
    async for record in read_topic(topic):
        # accounts, not id buckets nor the changelog marker
        if record.key and SEPARATOR not in record.key and record.key != MARKER_KEY:
            keys.add(record.key)
    return len(keys)


async def wait_drained(
    process: subprocess.Popen[bytes], group: str, tps: list[TopicPartition]
) -> None:
    end = await end_total(tps)
    deadline = time.monotonic() + 600
    while await committed_total(group, tps) < end:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the scorer did not drain its input")
        await asyncio.sleep(0.5)


def java_consumer_perf(prefix: str, total: int) -> dict[str, float]:
    """Kafka's Java consumer perf test over both input topics: records/s and MB/s."""
    out = subprocess.run(
        ["bash", str(ROOT / "deploy/local/kafka.sh"), "tool",
         "org.apache.kafka.tools.ConsumerPerformance", "--bootstrap-server", BOOTSTRAP,
         "--include", f"^{re.escape(prefix)}(visitor|lead)-events$", "--num-records", str(total),
         "--group", f"{prefix}java-perf", "--timeout", "120000"],
        capture_output=True, text=True, check=True, timeout=300,
        env={**os.environ, "KAFKA_DATA_DIR": str(TMP / "java-perf")},
    )  # fmt: skip
    header, values = [line for line in out.stdout.splitlines() if line.strip()][-2:]
    row = dict(zip([h.strip() for h in header.split(",")], values.split(","), strict=True))
    return {
        "events_per_s": round(float(row["nMsg.sec"])),
        "fetch_events_per_s": round(float(row["fetch.nMsg.sec"])),
        "mb_per_s": round(float(row["MB.sec"]), 1),
    }


def arm_result(drain: Drain) -> dict[str, Any]:
    return {
        "events_per_s": round(drain.events_per_s),
        "first_commit_s": round(drain.first_progress_s, 1),
        "processed": drain.processed,
        "seconds": round(drain.seconds, 1),
        "cpu_cores": round(drain.cpu, 2),
    }


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def report(result: dict[str, Any]) -> str:
    arms = result["arms"]
    ceiling, floor, scorer = (arms[a]["events_per_s"] for a in ("ceiling", "floor", "scorer"))
    p50 = result["latency_ms"]["50pct"]
    java = result["java_consumer_perf"]
    goals = {
        "scorer >= 0.5 x ceiling": (scorer / ceiling, scorer / ceiling >= 0.5),
        "scorer >= 10 x floor": (scorer / floor, scorer / floor >= 10),
        "alert p50 <= 30 ms at 50 % load": (p50["p50"], p50["p50"] <= 30),
        "alert p99 <= 100 ms at 50 % load": (p50["p99"], p50["p99"] <= 100),
        "cold restore of the accounts <= 5 s": (
            result["cold_restore"]["seconds"],
            result["cold_restore"]["seconds"] <= 5,
        ),
        # From the process's spawn to the group's first committed offset (polled
        # every 0.5 s): an upper bound of the time to the first event.
        "first event <= 5 s after start": (
            arms["scorer"]["first_commit_s"],
            arms["scorer"]["first_commit_s"] <= 5,
        ),
        "peak RSS <= 600 MB": (result["rss_mb"], result["rss_mb"] <= 600),
    }
    result["goals"] = {k: {"value": round(v, 2), "met": met} for k, (v, met) in goals.items()}
    lines = [
        f"{'arm':<10}{'events/s':>12}{'first commit s':>16}",
        *(
            f"{a:<10}{arms[a]['events_per_s']:>12,}{arms[a]['first_commit_s']:>16}"
            for a in ("ceiling", "floor", "scorer")
        ),
        f"{'java':<10}{java['events_per_s']:>12,}   (Kafka's consumer perf tool, consume only, "
        f"{java['mb_per_s']} MB/s)",
        "",
        f"{'load':<10}{'events/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'alerts':>8}",
        *(
            f"{k:<10}{v['events_per_s']:>10,}{v['p50']:>9}{v['p95']:>9}{v['p99']:>9}{v['n']:>8}"
            for k, v in result["latency_ms"].items()
        ),
        "",
        f"scorer: first event {result['first_event_s']} s after start, peak RSS "
        f"{result['rss_mb']} MB, {result['state_accounts']:,} accounts of state,",
        f"  ready {result['restart_ready_s']} s after a restart (warm RocksDB), "
        f"{result['cold_restore_ready_s']} s on an empty volume (restore of "
        f"{result['cold_restore']['records']:,} records: {result['cold_restore']['seconds']} s); "
        f"SIGTERM to exit {result['shutdown_s']} s",
        "",
        *(
            f"{'met    ' if g['met'] else 'NOT MET'} {k}: {g['value']}"
            for k, g in result["goals"].items()
        ),
    ]
    return "\n".join(lines)


def main() -> int:
    started = time.monotonic()
    result = asyncio.run(run())
    if QUICK:
        print(json.dumps(result, indent=2))
        return 0
    save_result({"events": EVENTS, **result}, "stream", started, report, latest="latest.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
