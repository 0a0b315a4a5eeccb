"""An experiment, not product code: `scorer worker` with counters of where its CPU goes.

    BENCH_SCORER_WRAP="python bench/arms/worker_counters.py" make bench

Every 5 s the worker log (bench/results/tmp/scorer.log) gets one line: records
per second, the process's CPU per record (all threads) and the main thread's
alone (the rest is RocksDB's own threads), split into `Processor.process`
(decode, score, queue outputs), `Task.prepare_commit` (changed accounts
serialised) and the rest (the Kafka clients, commits, the event loop); the
garbage collector's share of those (it runs inside whatever allocated); the
calls to `Processor.process` (slices of at most manager.SLICE records), the
polls of the loop (each hands one fetched batch, perhaps empty, to the task
manager) and the commit rounds per second. CPU times are the main thread's
(`time.thread_time`) around synchronous calls, so they are exact for those
calls whatever else runs.
"""

import gc
import sys
import threading
import time
from typing import Any

from scorer.cli import main
from scorer.stream import manager, processor, tasks, worker

stats: dict[str, float] = dict.fromkeys(
    ("slices", "records", "process_cpu", "prepare_cpu", "batches", "commit_rounds", "gc_cpu"), 0.0
)
_gc_started = [0.0]


def on_gc(phase: str, info: dict[str, Any]) -> None:
    """The collector's own CPU (it runs on the main thread, inside whatever allocated)."""
    if phase == "start":
        _gc_started[0] = time.thread_time()
    else:
        stats["gc_cpu"] += time.thread_time() - _gc_started[0]


_process = processor.Processor.process
_prepare = tasks.Task.prepare_commit
_handle_batch = manager.TaskManager.process
_start = manager.TaskManager._start


class CountingProcessor(processor.Processor):
    """The worker's processor, its `process` timed (a subclass: the compiled core's
    `Processor` is an extension type, whose methods cannot be replaced)."""

    def process(self, task: Any, records: list[Any]) -> None:
        started = time.thread_time()
        _process(self, task, records)
        stats["process_cpu"] += time.thread_time() - started
        stats["slices"] += 1
        stats["records"] += len(records)


def prepare_commit(self: Any) -> Any:
    started = time.thread_time()
    snapshot = _prepare(self)
    stats["prepare_cpu"] += time.thread_time() - started
    return snapshot


async def handle_batch(self: Any, batch: Any, generation: int) -> bool:
    stats["batches"] += 1
    return await _handle_batch(self, batch, generation)


def start(self: Any, task_list: list[Any]) -> bool:
    started = _start(self, task_list)
    stats["commit_rounds"] += started
    return started


def report(every: float = 5.0) -> None:
    main_clock = time.pthread_getcpuclockid(threading.main_thread().ident or 0)
    last, last_cpu, last_at = dict(stats), time.process_time(), time.monotonic()
    last_main = time.clock_gettime(main_clock)
    while True:
        time.sleep(every)
        now, cpu, at = dict(stats), time.process_time(), time.monotonic()
        main_cpu = time.clock_gettime(main_clock)
        d = {k: now[k] - last[k] for k in now}
        seconds, used, n = at - last_at, cpu - last_cpu, d["records"]
        if n:
            rest = used - d["process_cpu"] - d["prepare_cpu"]
            print(
                f"[counters] {n / seconds:,.0f} records/s, {used / seconds:.2f} cores, "
                f"{used / n * 1e6:.1f} us/record "
                f"(main thread {(main_cpu - last_main) / n * 1e6:.1f}): "
                f"process {d['process_cpu'] / n * 1e6:.1f}, "
                f"prepare_commit {d['prepare_cpu'] / n * 1e6:.2f}, rest {rest / n * 1e6:.1f}; "
                f"garbage collector (inside the others) {d['gc_cpu'] / n * 1e6:.2f}; "
                f"{d['batches'] / seconds:.0f} polls/s "
                f"({n / max(d['batches'], 1):.0f} records each), "
                f"{d['slices'] / seconds:.0f} slices/s, "
                f"{d['commit_rounds'] / seconds:.1f} commit rounds/s",
                file=sys.stderr,
                flush=True,
            )
        last, last_cpu, last_at, last_main = now, cpu, at, main_cpu


worker.Processor = CountingProcessor  # type: ignore[misc]
tasks.Task.prepare_commit = prepare_commit  # type: ignore[method-assign]
manager.TaskManager.process = handle_batch  # type: ignore[method-assign]
manager.TaskManager._start = start  # type: ignore[method-assign]
gc.callbacks.append(on_gc)
threading.Thread(target=report, daemon=True).start()
sys.argv = sys.argv[1:]  # [scorer, worker, ...]
sys.exit(main())
