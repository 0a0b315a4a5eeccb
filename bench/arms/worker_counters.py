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
manager) and the commit rounds per second; `Task.post_commit` (a landed
commit into the store, and its flush into RocksDB every 5 s) and the account
expiry sweeps, in µs per record of the window too; and the event loop's
largest lateness in the window (a 5 ms sleep's wake-up past its due time) and
how many wake-ups were over 50 ms late: stalls, which every alert waiting on
the loop pays; and the most records the tasks' input queues held after a batch
(`scorer.stream.ordering`); the task commits per second (a round commits only the
tasks with work), the changelog bytes and records written per record; the
requests sent to the broker per second, by type; the p50 and p99 (as histogram
bucket bounds) of the worker's own latency histograms in the window: input to
scored, input to alert committed, one task's commit; and, every 5 s, the
process's RSS beside what glibc's malloc holds (in use, free but kept, mapped:
mallinfo2) and CPython's allocated blocks. CPU times are the main thread's
(`time.thread_time`) around synchronous calls, so they are exact for those
calls whatever else runs. A second line splits the main thread's CPU by
event-loop callback (`Handle._run`, timed the same way): each task's outermost
coroutine (`Worker.run`'s `_run`: processing, polling and commit preparation;
aiokafka's sender and fetcher routines; the committer) and each plain callback
(a socket read), in µs per record, and what ran outside any callback (the
selector).

`BENCH_CHANGELOG=nosend` serialises changed accounts as usual but sends no
changelog records; `BENCH_CHANGELOG=none` does not serialise them either. Both
break the worker's state on purpose: they measure what the changelog costs.
"""

import asyncio
import asyncio.events
import dataclasses
import gc
import os
import sys
import threading
import time
from typing import Any

from aiokafka import conn

from scorer import mallocpolicy
from scorer.cli import main
from scorer.stream import manager, metrics, processor, tasks, worker

stats: dict[str, float] = dict.fromkeys(
    ("slices", "records", "process_cpu", "prepare_cpu", "batches", "commit_rounds", "gc_cpu",
     "post_cpu", "sweep_cpu", "changelog_bytes", "changelog_writes", "task_commits"),
    0.0,
)  # fmt: skip
# The event loop's lateness: how long past its due time a 5 ms sleep woke, the
# largest in each report's window and how many were over 50 ms (a stall: a
# synchronous step that held the loop, which delays every alert waiting on it).
lateness: list[float] = []
_gc_started = [0.0]
_watching: list[Any] = []
most_queued = [0]  # records in the tasks' input queues after a batch, the most in a window


def on_gc(phase: str, info: dict[str, Any]) -> None:
    """The collector's own CPU (it runs on the main thread, inside whatever allocated)."""
    if phase == "start":
        _gc_started[0] = time.thread_time()
    else:
        stats["gc_cpu"] += time.thread_time() - _gc_started[0]


# The main thread's CPU in each event-loop callback, by what ran: a task's coroutine
# (its outermost), or the callback's own name (a transport's read, a timer).
callbacks: dict[str, float] = {}
_handle_run = asyncio.events.Handle._run


def callback_name(callback: Any) -> str:
    task = getattr(callback, "__self__", None)
    if isinstance(task, asyncio.Task):
        coro = task.get_coro()
        return getattr(coro, "__qualname__", type(coro).__name__)
    return getattr(callback, "__qualname__", type(callback).__name__)


def timed_run(self: Any) -> None:
    started = time.thread_time()
    try:
        _handle_run(self)
    finally:
        name = callback_name(self._callback)
        callbacks[name] = callbacks.get(name, 0.0) + time.thread_time() - started


requests: dict[str, int] = {}  # requests sent to the broker, by type (cumulative)
_send = conn.AIOKafkaConnection.send


def send(self: Any, request: Any, expect_response: bool = True) -> Any:
    name = type(request).__name__.removesuffix("Request")
    requests[name] = requests.get(name, 0) + 1
    return _send(self, request, expect_response)


_metrics: list[Any] = []  # the worker's Metrics
_metrics_init = metrics.Metrics.__init__


def metrics_init(self: Any, *args: Any, **kwargs: Any) -> None:
    _metrics_init(self, *args, **kwargs)
    _metrics.append(self)


def counts(name: str) -> tuple[list[float], list[float]]:
    """A latency histogram's upper bounds and cumulative counts, as now."""
    if not _metrics:
        return [], []
    found = _metrics[0]
    histogram = getattr(found, name)
    if isinstance(histogram, metrics.EventHistogram):
        cumulative, total = [], 0
        for count in histogram.counts:
            total += count
            cumulative.append(float(total))
        return [*histogram.bounds, float("inf")], cumulative
    bounds, cumulative = [], []
    for family in histogram.collect():
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                bounds.append(float(sample.labels["le"]))
                cumulative.append(sample.value)
    return bounds, cumulative


def quantiles(now: tuple[list[float], list[float]], before: tuple[list[float], list[float]]) -> str:
    """p50 and p99 (the bucket's upper bound, ms) of what was observed between two reads."""
    bounds, after = now
    if not bounds:
        return "-"
    earlier = before[1] or [0.0] * len(after)
    window = [a - b for a, b in zip(after, earlier, strict=True)]
    if not window or window[-1] <= 0:
        return "-"
    picks = []
    for q in (0.5, 0.99):
        index = next(i for i, c in enumerate(window) if c >= q * window[-1])
        picks.append(f"{bounds[index] * 1000:.0f}")
    return f"<={picks[0]}/<={picks[1]} ms (n {window[-1]:.0f})"


def memory() -> str:
    """RSS, and what glibc's malloc holds: in use, free but kept, and mmapped."""
    info = mallocpolicy.usage()
    assert info is not None, "glibc's malloc only"
    with open("/proc/self/status") as status:
        rss = next(line.split()[1] for line in status if line.startswith("VmRSS"))
    mb = 1024 * 1024
    return (
        f"RSS {int(rss) // 1024} MB: malloc in use {info.uordblks // mb} MB, "
        f"free but kept {info.fordblks // mb} MB, mmapped {info.hblkhd // mb} MB, "
        f"pymalloc blocks {sys.getallocatedblocks():,}"
    )


HISTOGRAMS = ("ingest_to_score", "end_to_end", "commit_seconds")


_process = processor.Processor.process
_prepare = tasks.Task.prepare_commit
_post = tasks.Task.post_commit
_expire = tasks.Task.expire_idle
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


# An experiment's switch, never the product's: what the changelog costs.
# "nosend": the changed accounts serialised as usual, but not sent; "none": not
# serialised either (nothing reaches the changelog or the local store).
CHANGELOG = os.environ.get("BENCH_CHANGELOG", "full")


def prepare_commit(self: Any) -> Any:
    started = time.thread_time()
    if CHANGELOG == "none":
        self.store.dirty.clear()
    snapshot = _prepare(self)
    if CHANGELOG != "full":
        snapshot = dataclasses.replace(snapshot, writes={})
    stats["prepare_cpu"] += time.thread_time() - started
    stats["task_commits"] += 1
    stats["changelog_writes"] += len(snapshot.writes)
    stats["changelog_bytes"] += sum(len(v) for v in snapshot.writes.values() if v is not None)
    return snapshot


def post_commit(self: Any, *args: Any) -> Any:
    """Records a landed commit: its writes into the store, and every 5 s the store's
    flush into RocksDB (`AccountStore.committed`)."""
    started = time.thread_time()
    try:
        return _post(self, *args)
    finally:
        stats["post_cpu"] += time.thread_time() - started


def expire_idle(self: Any, *args: Any) -> Any:
    started = time.thread_time()
    try:
        return _expire(self, *args)
    finally:
        stats["sweep_cpu"] += time.thread_time() - started


async def watch_loop() -> None:
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + 0.005
        await asyncio.sleep(0.005)
        lateness.append(loop.time() - due)


async def handle_batch(self: Any, batch: Any, generation: int) -> bool:
    stats["batches"] += 1
    try:
        return await _handle_batch(self, batch, generation)
    finally:
        queued = sum(t.queue.buffered(tp) for t in self.tasks.values() for tp in t.inputs)
        most_queued[0] = max(most_queued[0], queued)


def start(self: Any, task_list: list[Any]) -> bool:
    if not _watching:
        _watching.append(asyncio.ensure_future(watch_loop()))
    started = _start(self, task_list)
    stats["commit_rounds"] += started
    return started


def report(every: float = 5.0) -> None:
    main_clock = time.pthread_getcpuclockid(threading.main_thread().ident or 0)
    last, last_cpu, last_at = dict(stats), time.process_time(), time.monotonic()
    last_requests = dict(requests)
    last_histograms = {name: counts(name) for name in HISTOGRAMS}
    last_main = time.clock_gettime(main_clock)
    last_callbacks = dict(callbacks)
    while True:
        time.sleep(every)
        now, cpu, at = dict(stats), time.process_time(), time.monotonic()
        main_cpu = time.clock_gettime(main_clock)
        d = {k: now[k] - last[k] for k in now}
        sent = dict(requests)
        rates = ", ".join(
            f"{name} {(count - last_requests.get(name, 0)) / (at - last_at):.0f}"
            for name, count in sorted(sent.items())
            if count > last_requests.get(name, 0)
        )
        last_requests = sent
        histograms = {name: counts(name) for name in HISTOGRAMS}
        split = "; ".join(
            f"{name} p50/p99 {quantiles(histograms[name], last_histograms[name])}"
            for name in HISTOGRAMS
        )
        last_histograms = histograms
        most_queued[0] = 0
        late = lateness[:]
        del lateness[: len(late)]
        seconds, used, n = at - last_at, cpu - last_cpu, d["records"]
        print(f"[counters] {memory()}", file=sys.stderr, flush=True)
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
                f"{d['commit_rounds'] / seconds:.1f} commit rounds/s "
                f"({d['task_commits'] / seconds:.0f} task commits/s); "
                f"post_commit {d['post_cpu'] / n * 1e6:.2f}, "
                f"sweeps {d['sweep_cpu'] / n * 1e6:.2f}; "
                f"changelog {d['changelog_bytes'] / n:.0f} B and "
                f"{d['changelog_writes'] / n:.2f} writes per record; "
                f"loop late at most {max(late, default=0) * 1000:.0f} ms, "
                f"{sum(x > 0.05 for x in late)} times over 50 ms; "
                f"at most {most_queued[0]:,} records queued; requests/s: {rates}; {split}",
                file=sys.stderr,
                flush=True,
            )
            spent = {k: v - last_callbacks.get(k, 0.0) for k, v in callbacks.items()}
            outside = (main_cpu - last_main) - sum(spent.values())
            top = sorted(spent.items(), key=lambda kv: -kv[1])[:9]
            print(
                "[counters] loop callbacks, us/record: "
                + ", ".join(f"{k} {v / n * 1e6:.2f}" for k, v in top)
                + f"; outside callbacks {outside / n * 1e6:.2f}",
                file=sys.stderr,
                flush=True,
            )
        last_callbacks = dict(callbacks)
        last, last_cpu, last_at, last_main = now, cpu, at, main_cpu


worker.Processor = CountingProcessor  # type: ignore[misc]
tasks.Task.prepare_commit = prepare_commit  # type: ignore[method-assign]
tasks.Task.post_commit = post_commit  # type: ignore[method-assign]
tasks.Task.expire_idle = expire_idle  # type: ignore[method-assign]
manager.TaskManager.process = handle_batch  # type: ignore[method-assign]
manager.TaskManager._start = start  # type: ignore[method-assign]
asyncio.events.Handle._run = timed_run  # type: ignore[method-assign]
conn.AIOKafkaConnection.send = send  # type: ignore[method-assign]
metrics.Metrics.__init__ = metrics_init  # type: ignore[method-assign]
gc.callbacks.append(on_gc)
threading.Thread(target=report, daemon=True).start()
sys.argv = sys.argv[1:]  # [scorer, worker, ...]
sys.exit(main())
