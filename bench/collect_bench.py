"""Collector benchmark (`make bench-collect`): `scorer collect` against a raw
aiohttp endpoint that produces without validation, in one run.

  ceiling    bench/arms/collect_ceiling.py: POST /v1/batch, each call produced
             as-is with the collector's producer options, 200 once acknowledged;
  collector  `scorer collect` as shipped (auth, validation, mapping, the
             identities topic, and its stitch stage in the same process).

Traffic: synthetic events as a website's Segment calls
(`synthetic.segment_calls`: anonymous pages and tracks, group calls that link
visitors to companies, identifies for leads), 100 calls a `POST /v1/batch`,
bodies encoded before any timing, Basic auth with the write key; an event
every 50 us of event time (GAP), so event time runs as it would at 20,000/s.
The load generator is an aiohttp client in this process with
BENCH_COLLECT_CONNECTIONS (32) connections; its own CPU is reported, so a
client-bound run would show.

Per arm: (a) drain: BENCH_COLLECT_EVENTS calls (300,000) as fast as they go;
accepted events/s = calls in 200-answered batches / wall time; for the
collector also end to end: those calls over the time until its stitch stage
(which runs behind the intake) has committed them all, and its CPU a call over
that time; (b) paced: at half the collector's end-to-end rate (the ceiling at
the same rate) for
BENCH_COLLECT_PACED_SECONDS (30), each request timed from its scheduled send
to its answer (a request that waits for a connection counts the wait).
End to end: once the stitch stage has committed all its input, the records on
visitor-events against the page/track calls whose visitor a group call linked.
Peak RSS (VmHWM) and CPU of both servers. BENCH_COLLECT_PYSPY=1 records a
py-spy profile of the collector during its drain (bench/results/tmp/);
BENCH_COLLECT_GC=freeze or =a,b,c runs the collector with a GC setting (see GC).

Writes bench/results/<date>-collect.json and prints a table; progress on stderr.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import TopicPartition

from bench.arms.loop_trace import summary
from bench.common import ROOT, TMP, log, metric_values, record_goals, save_result
from bench.paced import (
    committed_total,
    cpu_seconds,
    create_topics,
    end_total,
    local_broker_pid,
    percentiles,
    rss_mb,
)
from bench.stream_bench import free_port, start, stop, wait_ready
from scorer import synthetic
from scorer.config import Settings
from scorer.kafka.topics import Topics

BROKER = os.environ.get("SCORER_BROKER", "kafka://127.0.0.1:9092")
EVENTS = int(os.environ.get("BENCH_COLLECT_EVENTS", 300_000))
PACED_SECONDS = float(os.environ.get("BENCH_COLLECT_PACED_SECONDS", 30))
CONNECTIONS = int(os.environ.get("BENCH_COLLECT_CONNECTIONS", 32))
PYSPY = os.environ.get("BENCH_COLLECT_PYSPY", "") == "1"
BATCH = 100
DOMAINS = 50_000
WRITE_KEY = "wk_bench_collect"
HEADERS = {
    "Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode(),
    "Content-Type": "application/json",
}
GOAL_RATE = 20_000
GOAL_P99_MS = 50.0
# Event time advances as wall time does at the goal rate. The synthetic default
# (2 s between events) runs days of event time through a 15 s drain, and the
# stitch stage's sweep then forgets (and tombstones) tens of thousands of idle
# visitors at once, a stall no real site's traffic produces.
GAP = 1 / GOAL_RATE
SLOW_MS = 50.0
# Experiments, not the product (the profile points at the collector's GC):
# BENCH_COLLECT_GC=freeze runs it with gc.freeze() every second (what is alive
# leaves the collected generations); BENCH_COLLECT_GC=50000,50,100 with
# gc.set_threshold(50000, 50, 100); BENCH_COLLECT_GC=trace records collections
# over 5 ms and event-loop callbacks over 15 ms (bench/arms/loop_trace.py) and
# adds their summary to the result. Results go to <date>-collect-gc-<...>.json.
GC = os.environ.get("BENCH_COLLECT_GC", "")
FREEZER = """
def freezer():
    while True:
        time.sleep(1)
        gc.freeze()
threading.Thread(target=freezer, daemon=True).start()
"""
COLLECT = [sys.executable, "-m", "scorer.cli", "collect"]
if GC:
    if GC == "freeze":
        setup = FREEZER
    elif GC == "trace":
        setup = "from bench.arms.loop_trace import install\ninstall()\n"
    else:
        setup = f"gc.set_threshold({GC})\n"
    code = "import gc, sys, threading, time\n" + setup + "from scorer.cli import main\n"
    COLLECT = [sys.executable, "-c", code + "sys.exit(main(['collect']))"]
BIN = Path(sys.executable).parent


@dataclass
class Traffic:
    """Batches of Segment calls, pre-encoded, and who got linked (for the end-to-end count)."""

    calls: Iterator[dict[str, Any]]
    visits: Counter[str] = field(default_factory=Counter)  # anonymousId -> page/track calls
    linked: set[str] = field(default_factory=set)  # anonymousIds a group call linked

    def bodies(self, count: int) -> list[tuple[bytes, int]]:
        """`count` calls as (body, calls in it), tallied."""
        out = []
        while count > 0:
            batch = list(itertools.islice(self.calls, min(BATCH, count)))
            for call in batch:
                if call["type"] in ("page", "track"):
                    self.visits[call["anonymousId"]] += 1
                elif call["type"] == "group":
                    self.linked.add(call["anonymousId"])
            out.append((orjson.dumps({"batch": batch}), len(batch)))
            count -= len(batch)
        return out

    def linked_visits(self) -> int:
        return sum(n for visitor, n in self.visits.items() if visitor in self.linked)


@dataclass
class Drain:
    accepted: int = 0
    refused: int = 0
    seconds: float = 0.0
    client_cpu_s: float = 0.0


async def drain(url: str, bodies: list[tuple[bytes, int]]) -> Drain:
    """Every body POSTed by CONNECTIONS workers as fast as they are answered."""
    result = Drain()
    queue = iter(bodies)
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector, headers=HEADERS) as session:

        async def worker() -> None:
            for body, calls in queue:
                async with session.post(url, data=body) as reply:
                    await reply.read()
                    if reply.status == 200:
                        result.accepted += calls
                    else:
                        result.refused += calls

        async def progress() -> None:
            while True:
                await asyncio.sleep(10)
                elapsed = time.monotonic() - started
                log(f"  {result.accepted:,} calls accepted, {result.accepted / elapsed:,.0f}/s")

        cpu0, started = cpu_seconds(os.getpid()), time.monotonic()
        reporter = asyncio.create_task(progress())
        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
        result.seconds = time.monotonic() - started
        result.client_cpu_s = cpu_seconds(os.getpid()) - cpu0
        reporter.cancel()
    return result


async def paced(url: str, bodies: list[tuple[bytes, int]], rate: float) -> dict[str, Any]:
    """Bodies sent at `rate` calls/s, each timed from its scheduled send to its answer."""
    latencies: list[float] = []
    slow: dict[str, list[float]] = {}  # wall-clock second sent -> latencies over 50 ms
    statuses: Counter[int] = Counter()
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector, headers=HEADERS) as session:

        async def one(body: bytes, due: float) -> None:
            async with session.post(url, data=body) as reply:
                await reply.read()
                statuses[reply.status] += 1
            latency = (time.monotonic() - due) * 1000
            latencies.append(latency)
            if latency > SLOW_MS:
                second = time.strftime("%H:%M:%S", time.localtime(time.time() - latency / 1000))
                slow.setdefault(second, []).append(latency)

        tasks = []
        started = sent = time.monotonic()
        last_log = started
        for body, calls in bodies:
            ahead = sent - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
            tasks.append(asyncio.create_task(one(body, sent)))
            sent += calls / rate
            if time.monotonic() - last_log > 10:
                log(f"  {len(latencies):,} requests answered")
                last_log = time.monotonic()
        await asyncio.gather(*tasks)
    return {
        "calls_per_s": round(rate, 1),
        "seconds": round(time.monotonic() - started, 1),
        "statuses": {str(k): v for k, v in statuses.items()},
        "latency_ms": {**percentiles(latencies), "max": round(max(latencies), 1)},
        # When the slow requests were sent: one stall, or spread out.
        "over_50_ms_by_second": {
            second: [len(ms), round(max(ms), 1)] for second, ms in sorted(slow.items())
        },
    }


async def wait_stitched(group: str, topic: str, process: subprocess.Popen[bytes]) -> float:
    """Seconds until the stitch stage has committed every record of its input."""
    tps = [TopicPartition(topic, p) for p in range(Settings().topic_partitions)]
    started = time.monotonic()
    end = await end_total(tps)
    while await committed_total(group, tps) < end:
        if process.poll() is not None or time.monotonic() - started > 300:
            raise RuntimeError("the stitch stage did not catch up with its input")
        await asyncio.sleep(0.5)
    return time.monotonic() - started


class Server:
    """An arm's process: started, ready, its CPU and memory."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], port: int) -> None:
        self.name, self.port = name, port
        self.process = start(command, env, TMP / f"collect-{name}.log")
        wait_ready(port, self.process, timeout=120)
        self.url = f"http://127.0.0.1:{port}/v1/batch"

    def cpu(self) -> float:
        return cpu_seconds(self.process.pid)

    def peak_rss_mb(self) -> float:
        return round(rss_mb(self.process.pid)[1], 1)


async def drain_arm(server: Server, bodies: list[tuple[bytes, int]]) -> dict[str, Any]:
    log(f"{server.name}: drain, {sum(n for _, n in bodies):,} calls, {CONNECTIONS} connections")
    broker = local_broker_pid()
    cpu0, broker0 = server.cpu(), cpu_seconds(broker) if broker else 0.0
    profile = None
    if PYSPY and server.name == "collector":
        path = TMP / "collect-profile.txt"
        # --nonblocking: stopping the process to sample piles samples up at
        # syscalls here (a getpid in every asyncio future showed as 15 %).
        profile = subprocess.Popen(
            [shutil.which("py-spy") or str(BIN / "py-spy"), "record", "--nonblocking",
             "--format", "raw",
             "--pid", str(server.process.pid), "--rate", "200", "--output", str(path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    done = await drain(server.url, bodies)
    if profile is not None:
        profile.send_signal(2)  # SIGINT: py-spy writes what it has
        profile.wait(timeout=60)
    result = {
        "calls": done.accepted + done.refused,
        "accepted": done.accepted,
        "refused": done.refused,
        "seconds": round(done.seconds, 2),
        "events_per_s": round(done.accepted / done.seconds, 1),
        "server_cores": round((server.cpu() - cpu0) / done.seconds, 2),
        "client_cores": round(done.client_cpu_s / done.seconds, 2),
        "broker_cores": round((cpu_seconds(broker) - broker0) / done.seconds, 2)
        if broker
        else None,
        "rss_mb_after": round(rss_mb(server.process.pid)[0], 1),
    }
    log(
        f"  {result['events_per_s']:,} calls/s accepted; {result['server_cores']} cores "
        f"({server.name}), {result['client_cores']} (client), {result['broker_cores']} (broker)"
    )
    return result


async def run() -> dict[str, Any]:
    prefix = f"collect{int(time.time())}-"
    collect_id = f"{prefix}collector"
    settings = Settings(topic_prefix=prefix, collect_id=collect_id)
    topics = Topics.from_settings(settings)
    visitor_topic = settings.topic(settings.visitor_topic)
    partitions = settings.topic_partitions

    log("generating the traffic")
    domains = synthetic.company_domains(DOMAINS)
    traffic = Traffic(synthetic.segment_calls(synthetic.events(10**9, domains, mean_gap_s=GAP)))
    drain_bodies = traffic.bodies(EVENTS)
    result: dict[str, Any] = {
        "calls": EVENTS,
        "batch": BATCH,
        "connections": CONNECTIONS,
        "partitions": partitions,
        "paced_seconds": PACED_SECONDS,
        "collector_gc": GC or "default",
        "body_kb": round(sum(len(b) for b, _ in drain_bodies) / len(drain_bodies) / 1024, 1),
    }

    ceiling_topic = f"{prefix}ceiling-calls"
    await create_topics([ceiling_topic])
    env = {**os.environ, "SCORER_BROKER": BROKER, "SCORER_LOG_LEVEL": "WARNING"}
    port = free_port()
    ceiling = Server(
        "ceiling", [sys.executable, "-m", "bench.arms.collect_ceiling", str(port), ceiling_topic],
        env, port,
    )  # fmt: skip
    try:
        result["ceiling"] = await drain_arm(ceiling, drain_bodies)

        port = free_port()
        collector_env = {
            **env,
            "SCORER_TOPIC_PREFIX": prefix,
            "SCORER_COLLECT_ID": collect_id,
            "SCORER_COLLECT_WRITE_KEYS": f"bench={WRITE_KEY}",
            "SCORER_COLLECT_WEB_PORT": str(port),
            "SCORER_REPLICATION_FACTOR": os.environ.get("SCORER_REPLICATION_FACTOR", "1"),
        }
        collector = Server("collector", COLLECT, collector_env, port)
        try:
            cpu0 = collector.cpu()
            arm = result["collector"] = await drain_arm(collector, drain_bodies)
            caught_up = await wait_stitched(collect_id, topics.identities, collector.process)
            # End to end: until the stitch stage has taken every call the drain
            # accepted (it runs behind the intake, in the same process).
            arm["stitch_behind_s"] = round(caught_up, 1)
            arm["end_to_end_per_s"] = round(arm["accepted"] / (arm["seconds"] + caught_up), 1)
            arm["cpu_us_per_call"] = round((collector.cpu() - cpu0) / arm["accepted"] * 1e6, 1)
            log(
                f"  the stitch stage caught up {caught_up:.1f} s after the drain: "
                f"{arm['end_to_end_per_s']:,} calls/s end to end, "
                f"{arm['cpu_us_per_call']} us of CPU a call"
            )

            rate = arm["end_to_end_per_s"] / 2
            paced_bodies = traffic.bodies(int(rate * PACED_SECONDS))
            log(f"collector: paced at {rate:,.0f} calls/s for {PACED_SECONDS:.0f} s")
            result["collector"]["paced"] = await paced(collector.url, paced_bodies, rate)
            log(f"  {result['collector']['paced']['latency_ms']}")

            waited = await wait_stitched(collect_id, topics.identities, collector.process)
            visitor_tps = [TopicPartition(visitor_topic, p) for p in range(partitions)]
            stitched = await end_total(visitor_tps)
            metrics = metric_values(port)
            outcomes = {
                o: int(metrics.get(f"scorer_collect_stitch_events_total{{outcome={o}}}", 0))
                for o in ("forwarded", "kept", "stitched", "expired", "evicted")
            }
            result["end_to_end"] = {
                "linked_page_track_calls": traffic.linked_visits(),
                "page_track_calls": sum(traffic.visits.values()),
                "visitor_events": stitched,
                "stitch_outcomes": outcomes,
                "stitch_wait_s": round(waited, 1),
            }
            log(f"  end to end: {result['end_to_end']}")
            result["collector"]["peak_rss_mb"] = collector.peak_rss_mb()
        finally:
            result["collector_shutdown_s"] = round(stop(collector.process), 2)
            if GC == "trace":
                result["collector_trace"] = summary(TMP / "collect-collector.log")
                log(f"  trace: {result['collector_trace']}")

        log(f"ceiling: paced at the same {rate:,.0f} calls/s")
        result["ceiling"]["paced"] = await paced(ceiling.url, paced_bodies, rate)
        log(f"  {result['ceiling']['paced']['latency_ms']}")
        result["ceiling"]["peak_rss_mb"] = ceiling.peak_rss_mb()
    finally:
        stop(ceiling.process)
    return result


def report(result: dict[str, Any]) -> str:
    ceiling, collector, e2e = result["ceiling"], result["collector"], result["end_to_end"]
    rate = collector["end_to_end_per_s"]
    p99 = collector["paced"]["latency_ms"]["p99"]
    goals = {
        f"collector >= {GOAL_RATE:,} events/s end to end (acknowledged and stitched)": (
            rate,
            rate >= GOAL_RATE,
        ),
        f"p99 request latency <= {GOAL_P99_MS:.0f} ms at half that rate": (
            p99,
            p99 <= GOAL_P99_MS,
        ),
    }
    goal_lines = record_goals(result, goals)
    result["collector_vs_ceiling"] = round(rate / ceiling["events_per_s"], 2)
    ceiling["cpu_us_per_call"] = round(
        ceiling["server_cores"] * ceiling["seconds"] / ceiling["accepted"] * 1e6, 1
    )

    def row(name: str, arm: dict[str, Any]) -> str:
        lat = arm["paced"]["latency_ms"]
        return (
            f"{name:<10}{arm['events_per_s']:>11,.0f}{arm['server_cores']:>7.2f}"
            f"{arm['client_cores']:>8.2f}{arm['broker_cores'] or 0:>8.2f}"
            f"{arm.get('end_to_end_per_s', arm['events_per_s']):>10,.0f}"
            f"{arm['cpu_us_per_call']:>8}"
            f"{lat['p50']:>8}{lat['p99']:>8}{lat['max']:>8}{arm['peak_rss_mb']:>9}"
        )

    lines = [
        f"{result['calls']:,} Segment calls in batches of {result['batch']} "
        f"({result['body_kb']} KB a body), {result['connections']} connections; "
        f"paced at {collector['paced']['calls_per_s']:,.0f} calls/s for "
        f"{result['paced_seconds']:.0f} s; collector GC: {result['collector_gc']}",
        "",
        f"{'arm':<10}{'calls/s':>11}{'cores':>7}{'client':>8}{'broker':>8}"
        f"{'e2e/s':>10}{'us/call':>8}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'peak MB':>9}",
        row("ceiling", ceiling),
        row("collector", collector),
        "",
        "calls/s: accepted during the drain; e2e/s: the drain's calls over the time until",
        "the stitch stage had taken them all (the ceiling has no stitch stage); us/call:",
        "the server's CPU a call, end to end; paced at half the collector's e2e/s",
        "",
        f"collector (e2e) / ceiling: {result['collector_vs_ceiling']}",
        f"end to end: {e2e['visitor_events']:,} records on visitor-events for "
        f"{e2e['linked_page_track_calls']:,} page/track calls of linked visitors "
        f"(of {e2e['page_track_calls']:,}); stitch outcomes {e2e['stitch_outcomes']}",
        f"refused calls: ceiling {ceiling['refused']}, collector {collector['refused']}; "
        f"paced statuses: ceiling {ceiling['paced']['statuses']}, "
        f"collector {collector['paced']['statuses']}",
        *(
            [f"collector trace (over 5 / 15 ms): {result['collector_trace']}"]
            if "collector_trace" in result
            else []
        ),
        "",
        *goal_lines,
    ]
    return "\n".join(lines)


def main() -> int:
    TMP.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    kind = "collect" if not GC else "collect-gc-" + GC.replace(",", "-")
    path = save_result(asyncio.run(run()), kind, started, report)
    print(f"\n(written to {path.relative_to(ROOT)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
