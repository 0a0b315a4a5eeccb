"""Streaming benchmark: ceiling, floor and scorer arms on one broker, in one run.

Arms, run one after the other over the same input topics (each its own group):
  ceiling  the strongest raw aiokafka passthrough we could write: batched
           getmany, hand-built record batches per partition, the worker's codec, a linger
           (bench/arms/ceiling.py); the median of three drains, each in a
           group of its own (one drain takes 4-5 s and spread 195k-228k
           events/s across a day's runs);
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
rate and at a fixed 2,000 events/s, for BENCH_PACED_SECONDS each, with the
latency of every alert from its input record's timestamp to its arrival at a
read_committed consumer (the alert committed and visible downstream), and
the worker's CPU per event. Right before the 50 % phase, the commit-floor
arm (bench/arms/commit_floor.py: the worker's own commit cycle, settings and
transaction per task, with a busy-wait per event equal to the scorer's CPU
per event while draining in place of scoring) takes the same load on topics
of its own: the latency the scorer's design could reach at that cost per
event. Before the paced phases it also drains the same events with that busy-wait:
its CPU per event draining and at half load is what the Kafka side of the design
adds at half load to a scorer that costs nothing more (`_floor_bound`). After the
paced phases, the duty-cycle arm (bench/arms/duty_cycle.py):
the scoring loop alone, no Kafka, flat out and in bursts held to the worker's
share of a core at half load, for what the machine itself adds to the CPU per
event of work done in bursts. Then the worker's peak RSS; time
to the first event; and, with one event for each of the 100,000 companies
applied (100,000 accounts of state), the time from a restart to /readyz, on
the same RocksDB volume (warm) and on an empty one (cold: every task's store
rebuilt from its changelog).

Environment: BENCH_EVENTS (1,000,000), BENCH_ARM_SECONDS (120),
BENCH_PACED_SECONDS (30), BENCH_INPUT_BATCH_BYTES (the drained input's record
batch size, 524288), BENCH_PACED_RATE (the paced phases' 100 %, instead of the
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
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from bench.common import (
    ACTIVE_DOMAINS,
    ICPS,
    ROOT,
    TMP,
    companies_file,
    events_file,
    log,
    record_goals,
    save_result,
)
from bench.paced import (
    BOOTSTRAP,
    BROKER,
    FLOOR_TOPICS,
    PARTITIONS,
    AlertWatch,
    Paced,
    broker_cpu_seconds,
    committed_total,
    context_switches,
    cpu_seconds,
    create_topics,
    delete_leftovers,
    delete_run_topics,
    end_total,
    floor_inputs,
    local_broker_pid,
    percentiles,
    prepare_paced,
    produce_paced,
    record_for,
    rss_mb,
    started,
    started_floor,
    switch_rates,
    wait_drained,
)
from scorer import synthetic
from scorer.config import Settings
from scorer.kafka.topics import Topics, ensure_topics
from scorer.stream.account_codec import SEPARATOR
from scorer.stream.store import MARKER_KEY

BIN = Path(sys.executable).parent
EVENTS = int(os.environ.get("BENCH_EVENTS", "1000000"))
ARM_SECONDS = float(os.environ.get("BENCH_ARM_SECONDS", "120"))
CEILING_PASSES = 3  # the ceiling arm's drains; its figure is their median
PACED_SECONDS = float(os.environ.get("BENCH_PACED_SECONDS", "30"))
# The drained input's record batches: the paced load's are a 5 ms tick's events
# of a partition (50-120 records, 16-40 KB at half load).
INPUT_BATCH_BYTES = int(os.environ.get("BENCH_INPUT_BATCH_BYTES", str(512 * 1024)))
PROFILE = os.environ.get("BENCH_PROFILE") == "1"
QUICK = os.environ.get("BENCH_QUICK", "")  # "1": the scorer's drain only; "latency": and paced
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


# -- Kafka helpers ---------------------------------------------------------------------


def publish_tables(env: dict[str, str], companies_path: Path) -> None:
    """The bench's ICPs and companies onto the topics `env` names (`scorer` commands)."""
    scorer = str(BIN / "scorer")
    for icp in ICPS:
        subprocess.run([scorer, "icp", "publish", str(icp)], env=env, check=True)
    subprocess.run(
        [scorer, "firmographics", "load", str(companies_path)],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


async def produce_file(prefix: str, path: Path) -> int:
    producer = AIOKafkaProducer(
        bootstrap_servers=BOOTSTRAP, linger_ms=20, max_batch_size=INPUT_BATCH_BYTES, acks="all"
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


# -- arms ---------------------------------------------------------------------------------


@dataclass
class Drain:
    events_per_s: float
    first_progress_s: float
    seconds: float
    processed: int
    cpu: float  # the arm process's CPU over the measured window, in cores
    switches: dict[str, int]  # its main thread's context switches per second, same window


async def measure_drain(
    process: subprocess.Popen[bytes],
    group: str,
    tps: list[TopicPartition],
    total: int,
    cap: float = ARM_SECONDS,
) -> Drain:
    started = time.monotonic()
    # (time, committed, the arm's CPU seconds, its main thread's context switches)
    samples: list[tuple[float, int, float, tuple[int, int]]] = []
    first = None
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"arm exited with {process.returncode}")
        now = time.monotonic()
        done = await committed_total(group, tps)
        samples.append((now, done, cpu_seconds(process.pid), context_switches(process.pid)))
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
    (t0, n0, c0, s0), (t1, n1, c1, s1) = window[0], window[-1]
    rate = (n1 - n0) / (t1 - t0) if t1 > t0 else float("nan")
    cpu = (c1 - c0) / (t1 - t0) if t1 > t0 else float("nan")
    switches = switch_rates(s0, s1, t1 - t0) if t1 > t0 else {}
    return Drain(rate, first - started, samples[-1][0] - started, done, cpu, switches)


async def drain_floor(
    prefix: str, mode: str, work_us: float, events: Path, cap: float = ARM_SECONDS
) -> tuple[Drain, str]:
    """The commit floor (bench/arms/commit_floor.py) on `prefix`, draining the events
    of a file already in its inputs: its drain, and its summary line once stopped."""
    await create_topics([prefix + name for name in FLOOR_TOPICS])
    total = await produce_file(prefix, events)
    async with started_floor(prefix, mode, work_us, from_start=True) as floor:
        process: Any = floor.process
        drain = await measure_drain(process, prefix + "floor", floor_inputs(prefix), total, cap)
    return drain, floor.summary


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


@dataclass
class EventClock:
    """Event time for the paced phases: each phase's events come later than the
    last's, three days on (every cooldown has passed)."""

    last: datetime

    def events(self, count: int, domains: list[str], seed: int) -> list[bytes]:
        self.last += timedelta(days=3)
        start, self.last = self.last, self.last + timedelta(seconds=2.0 * count)
        chosen = domains[:ACTIVE_DOMAINS]
        return [padded(e) for e in synthetic.events(count, chosen, seed=seed, start=start)]


@dataclass
class Phase:
    """A paced phase against one arm (the scorer, or the commit floor): the load,
    the latency of every alert from its input record's timestamp to a
    read_committed consumer, and the CPU of the arm, the load generator and the
    broker from the start of the load to the drained input."""

    process: subprocess.Popen[bytes]
    group: str
    tps: list[TopicPartition]
    hot_topic: str
    metrics_port: int | None = None  # the scorer's: task commit counts and times

    async def run(self, paced: Paced, rate: float, name: str) -> dict[str, Any]:
        watch = AlertWatch(self.hot_topic, name)
        watch.wait_ready()
        broker = local_broker_pid()
        pid = self.process.pid
        cpu_before, own_before, broker_before, switches_before, wall = (
            cpu_seconds(pid),
            time.process_time(),
            broker_cpu_seconds(broker),
            context_switches(pid),
            time.monotonic(),
        )
        port = self.metrics_port
        commits_before = histogram_totals(port, "scorer_commit_seconds") if port else (0, 0)
        sent_at = await produce_paced(paced, rate)
        await wait_drained(self.process, self.group, self.tps)
        wall = time.monotonic() - wall
        arm_cpu = cpu_seconds(pid) - cpu_before
        switches = switch_rates(switches_before, context_switches(pid), wall)
        broker_after = broker_cpu_seconds(broker)
        cpu = {  # share of one core, from the start of the load to the drained input
            "worker": round(arm_cpu / wall, 2),
            "load_generator": round((time.process_time() - own_before) / wall, 2),
            "broker": None,  # when it runs on another machine
        }
        if broker_before is not None and broker_after is not None:
            cpu["broker"] = round((broker_after - broker_before) / wall, 2)
        measured: dict[str, Any] = {}
        if port:
            commits = histogram_totals(port, "scorer_commit_seconds")
            count = commits[1] - commits_before[1]
            mean = (commits[0] - commits_before[0]) / count if count else 0
            measured = {"task_commits": int(count), "task_commit_mean_ms": round(mean * 1000, 1)}
        await asyncio.sleep(1.0)  # the last commit's alerts reach the watcher
        latencies = watch.latencies_ms(sent_at)
        return {
            **percentiles(latencies),
            "events_per_s": round(rate),
            "cpu": cpu,
            "cpu_us_per_event": round(arm_cpu / len(paced) * 1e6, 1) if paced else None,
            # Voluntary: the arm's event loop waited; involuntary: another task took its
            # core while it could run (the broker, the load generator: the same 2 cores).
            "switches_per_s": switches,
            **measured,
        }


# -- the run ------------------------------------------------------------------------------


async def run() -> dict[str, Any]:
    companies_path, domains, events_path = make_data()
    stale = await delete_leftovers()
    if stale:
        log(f"deleted {stale:,} topics of earlier runs stopped before their clean-up")
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
        publish_tables(env, companies_path)
        log(f"producing {EVENTS:,} events")
        t = time.monotonic()
        produced = await produce_file(prefix, events_path)
        log(f"  {produced:,} in {time.monotonic() - t:.1f} s")
        inputs = [f"{prefix}visitor-events", f"{prefix}lead-events"]
        tps = [TopicPartition(name, p) for name in inputs for p in range(PARTITIONS)]
        total = await end_total(tps)
        result: dict[str, Any] = {"arms": {}}

        if not QUICK:
            ceiling = [sys.executable, str(ROOT / "bench/arms/ceiling.py"), BOOTSTRAP]
            naive = [sys.executable, str(ROOT / "bench/arms/naive_faust.py"), "worker"]
            # Each arm: its groups (a drain each), its command for a group, its environment.
            # The ceiling drains in 4-5 s, and one drain ranged 195k-228k events/s across
            # a day's runs: its figure is the median of CEILING_PASSES drains.
            arms = {
                "ceiling": (
                    [f"{prefix}ceiling-{number}" for number in range(CEILING_PASSES)],
                    lambda group: [*ceiling, group, f"{prefix}ceiling-out", *inputs],
                    env,
                ),
                "floor": (  # the group is in its environment
                    [f"{prefix}naive"],
                    lambda group: [*naive, "--web-port", str(free_port()), "--loglevel", "warn"],
                    {**env, "BENCH_BROKER": BROKER, "BENCH_PREFIX": prefix,
                     "BENCH_GROUP": f"{prefix}naive", "BENCH_DATA": str(TMP / "naive-data")},
                ),
            }  # fmt: skip
            for name, (groups, command, arm_env) in arms.items():
                passes = []
                for number, group in enumerate(groups, 1):
                    of = f" (pass {number} of {len(groups)})" if len(groups) > 1 else ""
                    log(f"arm: {name}{of}")
                    process = start(command(group), arm_env, TMP / f"{name}.log")
                    passes.append(await measure_drain(process, group, tps, total))
                    stop(process)
                    log(f"  {name}: {passes[-1].events_per_s:,.0f} events/s")
                # A drain too short to measure (a small BENCH_EVENTS) has no rate: left out.
                measured = [d for d in passes if not math.isnan(d.events_per_s)] or passes
                drain = sorted(measured, key=lambda d: d.events_per_s)[len(measured) // 2]
                result["arms"][name] = arm_result(drain)
                if len(passes) > 1:
                    result["arms"][name]["passes"] = [round(d.events_per_s) for d in measured]
                    log(f"  {name}, the median pass: {drain.events_per_s:,.0f} events/s")
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
        clock = EventClock(datetime(2026, 11, 1, tzinfo=UTC) + timedelta(seconds=2.0 * EVENTS))
        rate = float(os.environ.get("BENCH_PACED_RATE", 0)) or drain.events_per_s  # for tuning
        drain_us = drain.cpu / drain.events_per_s * 1e6 if drain.events_per_s else float("nan")
        result["cpu_us_per_event"] = {"drain": round(drain_us, 1)}
        if not QUICK:
            # The commit floor draining the same events, its busy-wait the scorer's drain CPU
            # per event: with its CPU per event at half load (below), what the Kafka side of
            # this commit design adds at half load for a scorer with no cost of its own.
            log(f"commit floor, draining: {drain_us:.1f} µs per event")
            floor_drain, _ = await drain_floor(
                f"{prefix}floordrain-", "overlap", drain_us, events_path
            )
            floor_us = floor_drain.cpu / floor_drain.events_per_s * 1e6
            result["cpu_us_per_event"]["commit_floor"] = {"drain": round(floor_us, 1)}
            log(f"  {floor_drain.events_per_s:,.0f} events/s, {floor_us:.1f} µs per event")
        result["latency_ms"] = {}
        scorer_arm = Phase(process, f"{prefix}scorer", tps, f"{prefix}hot-accounts", port)
        for name, events_per_s, seed in (
            ("50pct", rate * 0.5, 101),
            ("80pct", rate * 0.8, 102),
            ("fixed_2000", 2000.0, 103),
        ):
            events = clock.events(int(events_per_s * PACED_SECONDS), domains, seed)
            if name == "50pct":
                # The commit floor first, at the same rate, on the same warm broker: the
                # worker's own commit cycle with a busy-wait of its drain CPU per event.
                floor_prefix = f"{prefix}floor-"
                log(f"commit floor: {events_per_s:,.0f}/s, {drain_us:.1f} µs per event")
                async with started_floor(floor_prefix, "overlap", drain_us) as floor:
                    arm: Any = floor.process
                    floor_phase = Phase(arm, f"{floor_prefix}floor", floor_inputs(floor_prefix),
                                        f"{floor_prefix}hot-accounts")  # fmt: skip
                    floor_paced = prepare_paced(floor_prefix, events)
                    measured = await floor_phase.run(floor_paced, events_per_s, "50pct_floor")
                result["latency_ms"]["50pct_commit_floor"] = {**measured, "work_us": drain_us}
                log(f"  {measured}")
            log(f"paced load ({name}): {events_per_s:,.0f}/s for {PACED_SECONDS:.0f} s")
            measured = await scorer_arm.run(prepare_paced(prefix, events), events_per_s, name)
            result["latency_ms"][name] = measured
            log(f"  {measured}")
        result["cpu_us_per_event"]["half_load"] = result["latency_ms"]["50pct"]["cpu_us_per_event"]
        if "commit_floor" in result["cpu_us_per_event"]:
            result["cpu_us_per_event"]["commit_floor"]["half_load"] = result["latency_ms"][
                "50pct_commit_floor"
            ]["cpu_us_per_event"]
        # What this machine charges for bursts alone: the scoring loop, no Kafka, flat out
        # and held to the worker's share of a core at half load (bench/arms/duty_cycle.py).
        duty = min(1.0, result["latency_ms"]["50pct"]["cpu"]["worker"])
        log(f"duty cycle: the scoring loop flat out and at {duty:.2f} of a core")
        bursts = await duty_cycle(companies_path, events_path, duty)
        result["cpu_us_per_event"]["machine_bursts"] = bursts
        log(f"  {result['cpu_us_per_event']['machine_bursts']}")
        # What the other parties of a half-load phase charge any work on these 2 cores.
        half_rate = rate * 0.5
        log(f"contention: the scoring loop flat out, alone and beside {half_rate:,.0f} events/s")
        events = clock.events(int(half_rate * PACED_SECONDS), domains, 104)
        result["cpu_us_per_event"]["machine_contention"] = await contention(
            prefix, companies_path, events_path, events, half_rate
        )
        log(f"  {result['cpu_us_per_event']['machine_contention']}")
        # The floor's figures, under the key the issue asks for, beside the scorer's.
        result["latency_ms"]["50pct"]["commit_floor"] = {
            k: result["latency_ms"]["50pct_commit_floor"][k] for k in ("p50", "p99")
        }

        if QUICK:
            stop(process)
            return result

        # 100,000 accounts of state: one event for every company.
        log("state: one event for each of the 100,000 companies")
        clock.last += timedelta(days=3)
        last = clock.last
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
            r"restored (\d+) account records .*? in ([\d.]+) s; "
            r"(\d+) accounts decoded into memory in ([\d.]+) s",
            cold_log.read_text(),
        )
        # Restored = read from the changelog and decoded into memory, ready to score.
        result["cold_restore"] = {
            "records": sum(int(n) for n, _, _, _ in restored),
            "accounts": sum(int(a) for _, _, a, _ in restored),
            "seconds": round(sum(float(t) + float(d) for _, t, _, d in restored), 2),
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


async def duty_cycle(companies: Path, events: Path, duty: float) -> dict[str, Any]:
    """bench/arms/duty_cycle.py: CPU per event of the scoring loop flat out and in
    bursts held to `duty` of a core (1: flat out only), on this machine, now. A
    subprocess awaited, so that a load can run beside it (`contention`)."""
    loop = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "bench/arms/duty_cycle.py"), str(companies), str(events),
        f"{duty:.2f}", *map(str, ICPS), stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await loop.communicate()
    if loop.returncode:
        raise RuntimeError(f"duty_cycle.py exited with {loop.returncode}")
    measured: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return measured


async def contention(
    prefix: str, companies: Path, events: Path, paced: list[bytes], rate: float
) -> dict[str, Any]:
    """The scoring loop flat out (bench/arms/duty_cycle.py at duty 1: no Kafka, no
    pauses), alone, then while the load generator produces `rate` events/s to the
    broker (a) into topics nobody reads and (b) to the commit floor with no work of
    its own (the Kafka side of the worker's cycle, exactly-once). CPU µs per event,
    and the ratios to alone: what sharing the 2 cores at that rate charges work that
    does not change. (b) runs the floor's client beside the loop, where the worker
    runs it in turn with its scoring: (a) and (b) bracket the worker's case."""

    async def loop_beside(load: Any) -> float:
        produce = asyncio.ensure_future(load)
        measured = await duty_cycle(companies, events, 1.0)
        if produce.done():
            log("  the loop outlasted the load: its figure is partly alone")
        await produce
        us: float = measured["flat_us_per_event"]
        return us

    alone = (await duty_cycle(companies, events, 1.0))["flat_us_per_event"]
    idle = f"{prefix}idle-"
    await create_topics([idle + name for name in FLOOR_TOPICS[:2]])
    try:
        beside_producer = await loop_beside(produce_paced(prepare_paced(idle, paced), rate))
    finally:
        await delete_run_topics(idle)
    busy = f"{prefix}busy-"
    async with started_floor(busy, "overlap", 0.0):
        beside_floor = await loop_beside(produce_paced(prepare_paced(busy, paced), rate))
    return {
        "events_per_s": round(rate),
        "alone_us_per_event": alone,
        "beside_producer_us_per_event": beside_producer,
        "beside_floor_us_per_event": beside_floor,
        "ratio_producer": round(beside_producer / alone, 3),
        "ratio_floor": round(beside_floor / alone, 3),
    }


def arm_result(drain: Drain) -> dict[str, Any]:
    return {
        "events_per_s": round(drain.events_per_s),
        "first_commit_s": round(drain.first_progress_s, 1),
        "processed": drain.processed,
        "seconds": round(drain.seconds, 1),
        "cpu_cores": round(drain.cpu, 2),
        "switches_per_s": drain.switches,
    }


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _switches(drain: dict[str, Any], half: dict[str, Any]) -> list[str]:
    """The scorer's event loop: how often it waited, and how often it was put off its
    core while it could run, draining and at half load (a run from before 2026-12-06
    has no such figures)."""
    if "switches_per_s" not in drain or "switches_per_s" not in half:
        return []
    d, h = drain["switches_per_s"], half["switches_per_s"]
    return [
        f"scorer's event loop, context switches per second: draining {d['voluntary']:,} "
        f"waits, {d['involuntary']:,} preemptions; at 50 % load {h['voluntary']:,} waits, "
        f"{h['involuntary']:,} preemptions"
    ]


def report(result: dict[str, Any]) -> str:
    arms = result["arms"]
    ceiling, floor, scorer = (arms[a]["events_per_s"] for a in ("ceiling", "floor", "scorer"))
    latency = result["latency_ms"]
    half, commit_floor = latency["50pct"], latency["50pct_commit_floor"]
    fixed = latency["fixed_2000"]
    cpu = result["cpu_us_per_event"]
    bursts = cpu["machine_bursts"]
    java = result["java_consumer_perf"]
    goals = {
        "scorer >= 0.5 x ceiling": (scorer / ceiling, scorer / ceiling >= 0.5),
        "scorer >= 10 x floor": (scorer / floor, scorer / floor >= 10),
        "alert p50 at 50 % load <= 1.5 x the commit floor's": (
            half["p50"] / commit_floor["p50"],
            half["p50"] <= 1.5 * commit_floor["p50"],
        ),
        "alert p99 at 50 % load <= 2 x the commit floor's": (
            half["p99"] / commit_floor["p99"],
            half["p99"] <= 2 * commit_floor["p99"],
        ),
        "alert p99 <= 250 ms at 2,000 events/s": (fixed["p99"], fixed["p99"] <= 250),
        "CPU per event at half load <= 1.3 x draining": (
            cpu["half_load"] / cpu["drain"],
            cpu["half_load"] <= 1.3 * cpu["drain"],
        ),
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
    goal_lines = record_goals(result, goals)
    lines = [
        f"{'arm':<10}{'events/s':>12}{'first commit s':>16}",
        *(
            f"{a:<10}{arms[a]['events_per_s']:>12,}{arms[a]['first_commit_s']:>16}"
            for a in ("ceiling", "floor", "scorer")
        ),
        f"{'java':<10}{java['events_per_s']:>12,}   (Kafka's consumer perf tool, consume only, "
        f"{java['mb_per_s']} MB/s)",
        "",
        f"{'load':<20}{'events/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'alerts':>8}"
        f"{'CPU µs/event':>14}",
        *(
            f"{k:<20}{v['events_per_s']:>10,}{v['p50']:>9}{v['p95']:>9}{v['p99']:>9}{v['n']:>8}"
            f"{v['cpu_us_per_event']:>14}"
            for k, v in latency.items()
        ),
        f"scorer / commit floor at 50 %: p50 {half['p50'] / commit_floor['p50']:.2f}x, "
        f"p99 {half['p99'] / commit_floor['p99']:.2f}x; the floor spends "
        f"{commit_floor['work_us']:.1f} µs per event (the scorer's CPU per event while draining)",
        f"scorer CPU per event: {cpu['drain']} µs draining, {cpu['half_load']} µs at 50 % load "
        f"({cpu['half_load'] / cpu['drain']:.2f}x)",
        *_floor_bound(cpu),
        *_switches(arms["scorer"], half),
        f"the machine alone (bench/arms/duty_cycle.py, no Kafka): the scoring loop costs "
        f"{bursts['bursts_us_per_event']} µs per event in bursts held to {bursts['duty']} of a "
        f"core, {bursts['flat_us_per_event']} µs flat out ({bursts['ratio']:.2f}x)",
        *_contention(cpu),
        *_paced_extra(cpu, half["events_per_s"]),
        "",
        f"scorer: first event {result['first_event_s']} s after start, peak RSS "
        f"{result['rss_mb']} MB, {result['state_accounts']:,} accounts of state,",
        f"  ready {result['restart_ready_s']} s after a restart (warm RocksDB), "
        f"{result['cold_restore_ready_s']} s on an empty volume (restore of "
        f"{result['cold_restore']['records']:,} records: {result['cold_restore']['seconds']} s); "
        f"SIGTERM to exit {result['shutdown_s']} s",
        "",
        *goal_lines,
    ]
    return "\n".join(lines)


def _floor_bound(cpu: dict[str, Any]) -> list[str]:
    """What the commit floor's CPU per event, draining and at half load, says of any
    scorer on this commit design: the floor is a scorer with no cost of its own, so
    the extra Kafka-side CPU per event it spends at half load, over the scorer's
    drain CPU per event, is the least the scorer's ratio can exceed 1 by (assuming
    the worker's clients, with the floor's settings and commit cycle, add no less)."""
    floor = cpu.get("commit_floor")
    if not floor:
        return []
    extra = floor["half_load"] - floor["drain"]
    return [
        f"commit floor CPU per event: {floor['drain']} µs draining, {floor['half_load']} µs at "
        f"50 % load: {extra:+.1f} µs, so any scorer costing {cpu['drain']} µs per event while "
        f"draining is at >= {(cpu['drain'] + extra) / cpu['drain']:.2f}x on this design"
    ]


def _contention(cpu: dict[str, Any]) -> list[str]:
    """The same loop alone and beside the half-load rate's other parties (a run from
    before 2026-12-06 08:00 has no such figures)."""
    shared = cpu.get("machine_contention")
    if not shared:
        return []
    return [
        f"the 2 cores shared (no Kafka in the loop): the scoring loop flat out costs "
        f"{shared['alone_us_per_event']} µs per event alone, "
        f"{shared['beside_producer_us_per_event']} µs beside {shared['events_per_s']:,} "
        f"events/s produced ({shared['ratio_producer']:.2f}x), "
        f"{shared['beside_floor_us_per_event']} µs beside them produced and consumed by the "
        f"commit floor ({shared['ratio_floor']:.2f}x)"
    ]


def _paced_extra(cpu: dict[str, Any], rate: float) -> list[str]:
    """The CPU ratio in cores at the half-load rate: what the scorer spends beyond its
    drain CPU per event, what the 1.3x goal allows, and what the commit floor's Kafka
    side and the scoring loop's slowdown beside the floor's traffic already take of
    it (bench/experiments/producer_beside: ratio = 1 + extra / half-load work). The
    slowdown is applied to the scorer's own work only: its drain CPU per event less
    the floor's Kafka side while draining (the floor's CPU less its busy-wait, which
    is the scorer's drain CPU per event)."""
    floor, shared = cpu.get("commit_floor"), cpu.get("machine_contention")
    if not floor or not shared:
        return []
    cores = rate / 1e6  # µs per event -> cores
    spent = (cpu["half_load"] - cpu["drain"]) * cores
    allowed = 0.3 * cpu["drain"] * cores
    kafka = (floor["half_load"] - floor["drain"]) * cores
    own = max(0.0, 2 * cpu["drain"] - floor["drain"])
    slowdown = (shared["ratio_floor"] - 1) * own * cores
    return [
        f"at 50 % load the scorer spends {spent:.3f} of a core beyond its drain CPU per event; "
        f"the 1.3x goal allows {allowed:.3f}, of which the commit floor's Kafka side takes "
        f"{kafka:.3f} and the scoring loop's slowdown beside the floor's traffic, on the "
        f"scorer's own {own:.1f} µs per event, {slowdown:.3f}"
    ]


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
