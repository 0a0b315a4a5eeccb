"""Latency floor of the worker's exactly-once commit cycle (see bench/arms/commit_floor.py).

For each (mode, work per event, rate) it starts bench/arms/commit_floor.py on fresh topics,
sends paced events with the stream bench's load generator for
EOS_SECONDS (20), and times the alert-shaped records with the bench's alert
watcher (input record timestamp -> visible to a read_committed consumer).

    bash deploy/local/with-kafka.sh .venv/bin/python -m bench.experiments.eos_latency.run \
        overlap:0:11500 overlap:40:11500 seq:0:11500 ... overlap:0:drain
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

from bench.common import ACTIVE_DOMAINS, companies_file, events_file, log, machine
from bench.paced import (
    AlertWatch,
    broker_cpu_seconds,
    cpu_seconds,
    local_broker_pid,
    percentiles,
    prepare_paced,
    produce_paced,
    started_floor,
)
from bench.stream_bench import drain_floor, padded
from scorer import synthetic

SECONDS = float(os.environ.get("EOS_SECONDS", "20"))
DRAIN_EVENTS = int(os.environ.get("EOS_DRAIN_EVENTS", "500000"))


def fresh_prefix() -> str:
    """A new topic prefix for one run of the floor (its topics made by started_floor)."""
    return f"eos{int(time.time() * 1000)}-"


async def drain(mode: str, work_us: float, domains: list[str]) -> dict[str, object]:
    """The commit cycle's drain rate: DRAIN_EVENTS already in the inputs."""
    path = events_file("stream-events", DRAIN_EVENTS, domains, padded)
    result, summary = await drain_floor(fresh_prefix(), mode, work_us, path, cap=600)
    return {
        "drain": mode,
        "work_us": work_us,
        "events_per_s": round(result.events_per_s),
        "cpu": round(result.cpu, 2),
        "commits": summary,
    }


async def one(mode: str, work_us: float, rate: float, domains: list[str]) -> dict[str, object]:
    prefix = fresh_prefix()
    count = int(rate * SECONDS)
    start = datetime(2026, 12, 1, tzinfo=UTC)
    events = [padded(e) for e in synthetic.events(count, domains, seed=7, start=start)]
    paced = prepare_paced(prefix, events)
    async with started_floor(prefix, mode, work_us) as floor:
        watch = AlertWatch(prefix + "hot-accounts")
        watch.wait_ready()
        pid, broker = floor.process.pid, local_broker_pid()
        cpu0, broker0, wall = cpu_seconds(pid), broker_cpu_seconds(broker), time.monotonic()
        sent_at = await produce_paced(paced, rate)
        await asyncio.sleep(2.0)
        wall = time.monotonic() - wall
        cpu = (cpu_seconds(pid) - cpu0) / wall
        broker1 = broker_cpu_seconds(broker)
        latencies = watch.latencies_ms(sent_at)
    broker_cpu = None
    if broker0 is not None and broker1 is not None:
        broker_cpu = round((broker1 - broker0) / wall, 2)
    return {
        "mode": mode,
        "work_us": work_us,
        "rate": rate,
        **percentiles(latencies),
        "floor_cpu": round(cpu, 2),
        "broker_cpu": broker_cpu,
        "commits": floor.summary,
    }


async def main(specs: list[str]) -> None:
    _, domains = companies_file()
    results = []
    for spec in specs:
        mode, work, rate = spec.split(":")
        if rate == "drain":
            log(f"{mode}, {work} µs/event, drain of {DRAIN_EVENTS:,} events")
            result = await drain(mode, float(work), domains)
        else:
            log(f"{mode}, {work} µs/event, {rate}/s")
            result = await one(mode, float(work), float(rate), domains[:ACTIVE_DOMAINS])
        print(result, flush=True)
        results.append(result)
    out = os.environ.get("EOS_OUT")
    if out:
        Path(out).write_bytes(
            orjson.dumps({"date": datetime.now(UTC).isoformat(timespec="seconds"),
                          "machine": machine(), "seconds": SECONDS, "runs": results},
                         option=orjson.OPT_INDENT_2)
        )  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
