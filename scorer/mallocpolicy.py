"""One malloc policy for the worker: what large buffers leave free goes back to the system.

The worker's large allocations are short-lived: fetch responses (up to 2 MB a
partition), record batches, compression buffers. glibc serves a request above
its mmap threshold (128 KiB at first) with a mapping of its own, returned to
the system on free, but it raises that threshold to the size of each such
block freed (up to 32 MiB): after the first large fetch response every later
one comes from the heap, and the heap keeps the pages they leave free. In the
80 % phase of a quick `make bench` run that free-but-kept memory reached 91 MB
of the worker's 494 MB RSS (glibc's mallinfo2, printed by
bench/arms/worker_counters.py).

Fixing the mmap threshold with mallopt also fixes the trim threshold, at its
128 KiB default: freed, the heap's top then shrank and grew again dozens of
times a second (390 `brk` calls in 6 s of a drain against 5 with glibc's
defaults) and the drain cost 7-8 % more CPU an event. The trim threshold is
raised with it (TRIM_THRESHOLD): the heap's top is handed back by the trim
every TRIM_SECONDS instead of at every free. The figures that chose these
settings are in docs/performance-log.md (2026-12-06 21:03, 21:25 and 23:07).

- `fix_thresholds`: the mmap threshold fixed at 1 MiB, the trim threshold
  at 64 MiB, which also turns their adjustment off (mallopt(3));
- `trim`: malloc_trim(3), the free pages inside the heaps handed back; the
  worker calls it every TRIM_SECONDS, on a thread;
- `usage`: glibc's mallinfo2(3), what the policy is judged by (the benchmark's
  counters and the tests read it).

Nothing is changed where the C library is not glibc, or with
SCORER_MALLOC_POLICY=0 (to compare, or to rule the policy out); the thresholds
are left alone where the operator has set either (MALLOC_MMAP_THRESHOLD_,
MALLOC_TRIM_THRESHOLD_ or GLIBC_TUNABLES).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os

log = logging.getLogger("scorer.memory")
M_TRIM_THRESHOLD = -1  # mallopt(3)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1024 * 1024
TRIM_THRESHOLD = 64 * 1024 * 1024
SWITCH = "SCORER_MALLOC_POLICY"  # "0": glibc's defaults, no trim
TRIM_SECONDS = 5.0
OPERATORS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")  # set: left alone


def enabled() -> bool:
    return os.environ.get(SWITCH, "1") != "0"


def fix_thresholds() -> bool:
    """Fix glibc's mmap threshold at MMAP_THRESHOLD and its trim threshold at
    TRIM_THRESHOLD; True if they were set here."""
    if not enabled() or any(name in os.environ for name in OPERATORS):
        return False
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.mmap_threshold" in tunables or "glibc.malloc.trim_threshold" in tunables:
        return False
    libc = _glibc()
    if libc is None:
        return False
    for option, value in ((M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_MMAP_THRESHOLD, MMAP_THRESHOLD)):
        if libc.mallopt(option, value) != 1:  # 1 on success
            log.warning("mallopt(%d, %d) was refused", option, value)
            return False
    return True


class MallInfo2(ctypes.Structure):
    """glibc's struct mallinfo2 (2.33 and later): bytes in use (uordblks), free but
    kept by the heaps (fordblks) and in blocks mapped of their own (hblkhd)."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def usage() -> MallInfo2 | None:
    """What glibc's malloc holds now (None on another C library)."""
    libc = _glibc()
    if libc is None:
        return None
    libc.mallinfo2.restype = MallInfo2
    info: MallInfo2 = libc.mallinfo2()
    return info


def trim() -> bool:
    """Hand the free pages of malloc's heaps back to the system (malloc_trim(3));
    True if any were."""
    libc = _glibc()
    return libc is not None and libc.malloc_trim(0) == 1


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # noqa: B018 (only glibc has it)
    except (OSError, AttributeError):
        return None
    return libc
