"""The worker's malloc policy (scorer.mallocpolicy), in a child process each: a
threshold set here would stay set for the rest of the test run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

# A child that frees a 4 MiB block (glibc raises its dynamic threshold past it),
# then allocates 1.5 MB and prints how much of it glibc's mallinfo2 counts as mapped,
# then frees it and prints whether malloc_trim handed pages back.
CHILD = textwrap.dedent(
    """
    import sys
    from scorer import mallocpolicy

    fixed = mallocpolicy.fix_thresholds() if sys.argv[1] == "fix" else False
    big = bytearray(4 * 1024 * 1024)
    del big
    before = mallocpolicy.usage().hblkhd
    block = bytearray(1_500_000)
    mapped = mallocpolicy.usage().hblkhd - before
    del block
    print(fixed, mapped)
    """
)


def run(code: str, *args: str, **env: str) -> list[str]:
    """What a child running `code` printed, split."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split()


def child(mode: str, **env: str) -> tuple[str, int]:
    fixed, mapped = run(CHILD, mode, **env)
    return fixed, int(mapped)


def test_a_large_block_is_mapped_after_a_larger_one_was_freed() -> None:
    fixed, mapped = child("fix")
    assert fixed == "True"
    assert mapped >= 1_500_000  # its own mapping: unmapped when freed


def test_glibcs_default_serves_it_from_the_heap_instead() -> None:
    """What the policy is for: without it, the freed 4 MiB block raised the
    threshold, and the 1.5 MB block comes from the heap (kept when freed)."""
    fixed, mapped = child("default")
    assert fixed == "False"
    assert mapped == 0


def test_an_operators_own_thresholds_are_left_alone() -> None:
    for env in (
        {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=1048576"},
        {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1048576"},
        {"MALLOC_MMAP_THRESHOLD_": "1048576"},
        {"MALLOC_TRIM_THRESHOLD_": "1048576"},
    ):
        fixed, _ = child("fix", **env)
        assert fixed == "False", env


def test_the_switch_turns_the_policy_off() -> None:
    fixed, mapped = child("fix", SCORER_MALLOC_POLICY="0")
    assert fixed == "False"
    assert mapped == 0  # glibc's default: from the heap


def test_the_heaps_top_is_not_handed_back_at_every_free() -> None:
    """With the mmap threshold fixed, glibc's trim threshold stays at 128 KiB unless
    it is set too: a 600 KB block freed at the heap's top shrinks the heap, and the
    next one grows it again (dozens of times a second in a drain). The policy sets
    it to 64 MiB: the heap keeps its top until the next trim."""
    code = textwrap.dedent(
        """
        import sys
        from scorer import mallocpolicy

        if sys.argv[1] == "fix":
            mallocpolicy.fix_thresholds()
        elif sys.argv[1] == "mmap-only":
            mallocpolicy._glibc().mallopt(mallocpolicy.M_MMAP_THRESHOLD, 1024 * 1024)
        block = bytearray(600_000)
        held = mallocpolicy.usage().arena
        del block
        print(held - mallocpolicy.usage().arena)
        """
    )

    assert int(*run(code, "mmap-only")) >= 500_000  # handed back at the free
    assert int(*run(code, "fix")) == 0  # kept for the next block


def test_trim_hands_a_freed_heap_block_back() -> None:
    """malloc_trim returns the pages of free heap chunks to the system: RSS falls."""
    code = textwrap.dedent(
        """
        from scorer import mallocpolicy

        def rss():
            with open("/proc/self/status") as status:
                return next(int(l.split()[1]) for l in status if l.startswith("VmRSS"))

        big = bytearray(4 * 1024 * 1024)
        del big  # the threshold rises past 4 MiB: what follows comes from the heap
        # written to, so resident (a fresh heap block from calloc may never be touched)
        blocks = [bytes(range(256)) * 7813 for _ in range(20)]  # 2 MB each
        keep = bytes(range(256)) * 800  # 200 KB above them: the heap's top cannot shrink
        del blocks
        before = rss()
        print(mallocpolicy.trim(), before - rss())
        """
    )
    trimmed, released_kb = run(code)
    assert trimmed == "True"
    assert int(released_kb) > 30_000  # most of the 40 MB freed
