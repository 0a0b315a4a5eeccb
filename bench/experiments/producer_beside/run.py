"""Experiment: the worker's CPU per event with and without a producer beside it.

Not product code (README.md beside this file says what it asks and found).

    SCORER_BROKER=kafka://127.0.0.1:9092 python -m bench.experiments.producer_beside.run [N] [PLAN]

One `scorer worker` drains the bench's events (BENCH_EVENTS, 1,000,000), then takes N more
(default 1,200,000) per letter of PLAN (default ABAB), each batch the bench's
paced-phase kind of events (three days on in event time, a new seed each):

- A: the worker is stopped (SIGSTOP) while the batch is produced, then resumed
  (SIGCONT) and drains it with nothing else running;
- B: the batch is produced while the worker runs, as fast as the load
  generator can (it falls behind the pace it is given), so the worker drains
  it while the producer and the broker's produce path share the two cores;
- P: the batch is produced at PACED_RATE events/s (default 32,000, about the
  bench's half load) while the worker runs, as in `make bench`'s paced phases.

SUBJECT=ceiling puts the ceiling arm (bench/arms/ceiling.py: the leanest
passthrough, no state, no scoring) where the worker was, to see what the same
neighbours charge work that holds no state.

Same worker, same state, same kind of events: the ratio B/A is what sharing the
machine with a producer charges this worker per event. PERF=1 also records
`perf record -e cpu-clock` of the worker for 8 s of each phase (and of the
first drain) into bench/results/tmp/producer-beside-*.data. Prints a JSON line,
and writes it to bench/results/<date>-producer-beside.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import TopicPartition

from bench.common import RESULTS, ROOT, TMP, log
from bench.paced import (
    BOOTSTRAP,
    cpu_seconds,
    create_topics,
    prepare_paced,
    produce_paced,
    wait_drained,
)
from bench.stream_bench import (
    BIN,
    BROKER,
    EVENTS,
    PARTITIONS,
    EventClock,
    free_port,
    make_data,
    produce_file,
    publish_tables,
)
from bench.stream_bench import start as start_process
from bench.stream_bench import stop as stop_process
from scorer.config import Settings
from scorer.kafka.topics import Topics, ensure_topics

AS_FAST_AS_IT_CAN = 1e9  # events/s: produce_paced sends everything due at once
PACED_RATE = float(os.environ.get("PACED_RATE", "32000"))
SUBJECT = os.environ.get("SUBJECT", "worker")
PERF = os.environ.get("PERF") == "1"


def perf(pid: int, name: str) -> None:
    """8 s of `perf record` (cpu-clock) of the worker, in the background."""
    if PERF:
        out = TMP / f"producer-beside-{name}.data"
        subprocess.Popen(
            ["perf", "record", "-e", "cpu-clock", "-F", "999", "-p", str(pid), "-o", str(out),
             "--", "sleep", "8"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip


async def run(count: int, plan: str) -> dict[str, Any]:
    companies_path, domains, events_path = make_data()
    prefix = f"beside{int(time.time())}-"
    settings = Settings(broker=BROKER, topic_prefix=prefix, topic_partitions=PARTITIONS)
    await ensure_topics(settings, Topics.from_settings(settings))
    env = {**os.environ, "SCORER_BROKER": BROKER, "SCORER_TOPIC_PREFIX": prefix,
           "SCORER_TOPIC_PARTITIONS": str(PARTITIONS)}  # fmt: skip
    scorer = str(BIN / "scorer")
    publish_tables(env, companies_path)
    await produce_file(prefix, events_path)
    inputs = [f"{prefix}visitor-events", f"{prefix}lead-events"]
    tps = [TopicPartition(name, p) for name in inputs for p in range(PARTITIONS)]
    group = f"{prefix}scorer"
    data_dir = TMP / "producer-beside-data"
    shutil.rmtree(data_dir, ignore_errors=True)
    worker_env = {**env, "SCORER_APP_ID": group, "SCORER_DATA_DIR": str(data_dir),
                  "SCORER_WEB_PORT": str(free_port()), "SCORER_LOG_LEVEL": "INFO",
                  # A stopped worker must keep its partitions (no rebalance).
                  "SCORER_SESSION_TIMEOUT": "120"}  # fmt: skip
    wrap = os.environ.get("BENCH_SCORER_WRAP", "").split()
    if SUBJECT == "ceiling":
        await create_topics([f"{prefix}ceiling-out"])
        command = [sys.executable, str(ROOT / "bench/arms/ceiling.py"), BOOTSTRAP, group,
                   f"{prefix}ceiling-out", *inputs]  # fmt: skip
    else:
        command = [scorer, "worker"]
    process = start_process([*wrap, *command], worker_env, TMP / "producer-beside.log")
    phases: list[dict[str, Any]] = []
    try:
        started, cpu = time.monotonic(), cpu_seconds(process.pid)
        perf_first = asyncio.get_running_loop().call_later(6.0, perf, process.pid, "drain")
        await wait_drained(process, group, tps)
        perf_first.cancel()
        seconds, used = time.monotonic() - started, cpu_seconds(process.pid) - cpu
        first = {"events": EVENTS, "us_per_event": round(used / EVENTS * 1e6, 2),
                 "events_per_s": round(EVENTS / seconds)}  # fmt: skip
        log(f"first drain: {first}")
        clock = EventClock(datetime(2026, 11, 1, tzinfo=UTC) + timedelta(seconds=2.0e6))
        for index, kind in enumerate(plan):
            paced = prepare_paced(prefix, clock.events(count, domains, 201 + index))
            if kind == "A":
                process.send_signal(signal.SIGSTOP)
                await produce_paced(paced, AS_FAST_AS_IT_CAN)
                started, cpu = time.monotonic(), cpu_seconds(process.pid)
                process.send_signal(signal.SIGCONT)
                perf(process.pid, f"{kind}{index}")
            else:
                started, cpu = time.monotonic(), cpu_seconds(process.pid)
                perf(process.pid, f"{kind}{index}")
                await produce_paced(paced, AS_FAST_AS_IT_CAN if kind == "B" else PACED_RATE)
            await wait_drained(process, group, tps)
            seconds, used = time.monotonic() - started, cpu_seconds(process.pid) - cpu
            phase = {
                "phase": kind,
                "events": count,
                "us_per_event": round(used / count * 1e6, 2),
                "events_per_s": round(count / seconds),
                "cores": round(used / seconds, 2),
            }
            log(f"{phase}")
            phases.append(phase)
    finally:
        stop_process(process)
    # Each kind's mean CPU per event, and B's and P's against A's.
    means = {
        kind: statistics.fmean(p["us_per_event"] for p in phases if p["phase"] == kind)
        for kind in set(plan)
    }
    result: dict[str, Any] = {
        "subject": SUBJECT,
        "paced_rate": PACED_RATE if "P" in means else None,
        "worker_wrap": os.environ.get("BENCH_SCORER_WRAP", ""),
        "first_drain": first,
        "phases": phases,
    }
    for kind in ("B", "P"):
        if "A" in means and kind in means:
            result[f"ratio_{kind.lower()}_to_a"] = round(means[kind] / means["A"], 3)
    return result


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1_200_000
    plan = sys.argv[2] if len(sys.argv) > 2 else "ABAB"
    if set(plan) - {"A", "B", "P"}:
        sys.exit("PLAN is a string of A, B and P")
    result = asyncio.run(run(count, plan))
    line = json.dumps(result)
    print(line)
    name = "producer-beside" if SUBJECT == "worker" else f"producer-beside-{SUBJECT}"
    (RESULTS / f"{time.strftime('%Y-%m-%d-%H%M')}-{name}.json").write_text(line + "\n")


if __name__ == "__main__":
    main()
