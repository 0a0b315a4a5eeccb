"""A diagnostic for `make bench-collect` (BENCH_COLLECT_GC=trace), not the product:
installed in the collector's process before it starts, it prints to stderr
(the collector's log) every garbage collection over 5 ms and every event-loop
callback over 15 ms, which is where a request's tail latency goes when the
process is not short of CPU. `summary` reads them back from the log."""

from __future__ import annotations

import asyncio.events
import gc
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

GC_MS = 5.0
SLOW_MS = 15.0
LINE = re.compile(r"^TRACE (gc gen(\d)|slow) ([\d.]+) ms")


def install() -> None:
    started: list[float] = [0.0]
    censused: list[bool] = []

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        ms = (time.perf_counter() - started[0]) * 1000
        if ms > GC_MS:
            print(
                f"TRACE gc gen{info['generation']} {ms:.1f} ms collected {info['collected']} "
                f"@{time.strftime('%H:%M:%S')}",
                file=sys.stderr,
                flush=True,
            )
        if ms > 40 and not censused:  # what a long collection walked
            censused.append(True)
            census = Counter(type(o).__name__ for o in gc.get_objects())
            print(f"CENSUS {len(gc.get_objects())} {census.most_common(12)}", file=sys.stderr)

    gc.callbacks.append(on_gc)
    run = asyncio.events.Handle._run

    def timed(self: asyncio.events.Handle) -> None:
        begun = time.perf_counter()
        run(self)
        ms = (time.perf_counter() - begun) * 1000
        if ms > SLOW_MS:
            print(
                f"TRACE slow {ms:.1f} ms {describe(self._callback)} @{time.strftime('%H:%M:%S')}",
                file=sys.stderr,
                flush=True,
            )  # type: ignore[attr-defined]

    asyncio.events.Handle._run = timed  # type: ignore[method-assign]


def describe(callback: Any) -> str:
    """A callback, or for a task's step its coroutine and where it is suspended now."""
    task = getattr(callback, "__self__", None)
    coro = task.get_coro() if isinstance(task, asyncio.Task) else None
    if coro is None:
        return re.sub(r" at 0x[0-9a-f]+", "", repr(callback))[:160]
    where = []
    while coro is not None and getattr(coro, "cr_frame", None) is not None:
        frame = coro.cr_frame
        where.append(f"{frame.f_code.co_qualname}:{frame.f_lineno}")
        coro = coro.cr_await
    return " > ".join(where)[:300] or repr(task.get_coro())[:160]


def summary(log: Path) -> dict[str, Any]:
    """Collections over 5 ms by generation and callbacks over 15 ms: count, total, max."""
    found: dict[str, list[float]] = {}
    for line in log.read_text(errors="replace").splitlines():
        match = LINE.match(line)
        if match:
            kind = f"gc_gen{match.group(2)}" if match.group(2) else "slow_callbacks"
            found.setdefault(kind, []).append(float(match.group(3)))
    return {
        kind: {"count": len(ms), "total_ms": round(sum(ms), 1), "max_ms": max(ms)}
        for kind, ms in sorted(found.items())
    }
