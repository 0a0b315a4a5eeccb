"""The compiled scoring core (scorer/native.py): built, switchable, and scoring alike.

`make test` runs the unit tests twice: as installed (compiled, which the
first test insists on) and again with SCORER_PURE_PYTHON=1, so every rule
and property test passes on both. The last test compares the two directly,
document by document, on a run with replays, late, expired and bad events.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import orjson

from scorer import native, synthetic

ROOT = Path(__file__).parents[2]
SAMPLES = ROOT / "scorer" / "samples"
SCORER = shutil.which("scorer", path=str(Path(sys.executable).parent)) or "scorer"


def test_the_core_runs_compiled_unless_told_not_to() -> None:
    compiled = native.compiled_modules()
    if native.pure_requested():
        assert compiled == [], "SCORER_PURE_PYTHON=1 must import every module from its source"
        assert native.describe().startswith("pure Python")
    elif native.compiler_available():
        assert compiled == list(native.MODULES), (
            f"only {compiled} of {list(native.MODULES)} are compiled although this machine "
            "has a C compiler: `.venv/bin/pip install -v -e .` shows why"
        )
        assert native.stale_modules() == [], "the source changed since the build: `make setup`"
        assert native.describe() == "compiled (Cython)"
    else:  # no compiler: the install went on in pure Python, and says so
        assert compiled == []
        assert native.describe().startswith("pure Python (not compiled")


def test_a_partial_build_is_never_imported(tmp_path: Path) -> None:
    """The compiled modules read each other's objects at fixed C offsets: with
    one of them missing, the package runs the source, and says why."""
    if not native.built_modules():
        assert not native.compiler_available()  # nothing compiled to take apart
        return
    copy = tmp_path / "scorer"
    shutil.copytree(native.ROOT, copy, ignore=shutil.ignore_patterns("__pycache__", "*.c"))
    engine = next(copy.joinpath("scoring").glob("engine.*.so"))
    engine.unlink()
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); from scorer import native, offline; "
        "print(native.describe()); print(offline.__file__)"
    )
    env = {k: v for k, v in os.environ.items() if k != native.PURE_ENV}
    done = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    described, offline_file = done.stdout.splitlines()
    missing = len(native.MODULES) - 1
    assert (
        described
        == f"pure Python (only {missing} of {len(native.MODULES)} modules compiled: reinstall)"
    )
    assert offline_file == str(copy / "offline.py")


def _input(folder: Path) -> tuple[Path, Path]:
    records = list(synthetic.companies(400, seed=3))
    companies = folder / "companies.jsonl"
    companies.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    docs = list(synthetic.events(30_000, [r["domain"] for r in records[:200]], seed=5))
    rng = random.Random(8)
    lines = [orjson.dumps(d) for d in docs]
    # Replays, events far older than the dedup window, other time forms, bad lines.
    for _ in range(2_000):
        lines.insert(rng.randrange(len(lines)), rng.choice(lines))
    old = dict(docs[0], event_id="ancient", occurred_at="2020-01-01T00:00:00+02:00")
    lines.insert(20_000, orjson.dumps(old))
    lines.insert(100, b'{"event_id": "x", "type": "page_view"}')
    lines.insert(200, b"not json")
    lines.insert(300, orjson.dumps(dict(docs[1], occurred_at=1700000000)))
    events = folder / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    return companies, events


def _score(companies: Path, events: Path, pure: bool) -> tuple[list[dict], str]:
    env = {**os.environ, native.PURE_ENV: "1" if pure else "0"}
    icps = [a for p in sorted(SAMPLES.glob("*.yaml")) for a in ("--icp", str(p))]
    command = [SCORER, "score", *icps, "--firmographics", str(companies), "--emit", "scores"]
    done = subprocess.run(
        [*command, str(events)], env=env, capture_output=True, timeout=300, check=True
    )
    docs = [orjson.loads(line) for line in done.stdout.splitlines()]
    for doc in docs:
        del doc["scored_at"]  # the wall clock at scoring
    # Bad lines, then the summary with its timings taken out.
    return docs, re.sub(r" in [\d.]+ s \(.*?\)", "", done.stderr.decode())


def test_compiled_and_pure_python_give_the_same_documents(tmp_path: Path) -> None:
    companies, events = _input(tmp_path)
    compiled, compiled_summary = _score(companies, events, pure=False)
    pure, pure_summary = _score(companies, events, pure=True)
    assert len(compiled) > 50_000  # a score per event and ICP
    assert sum(doc["hot"] for doc in compiled) > 100
    assert compiled == pure
    assert compiled_summary == pure_summary
    print(compiled_summary)
