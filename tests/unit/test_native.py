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
from importlib.machinery import EXTENSION_SUFFIXES
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


def test_a_module_dropped_from_the_core_leaves_no_compiled_file_behind(tmp_path: Path) -> None:
    """An extension file of a module no longer in MODULES is found (and `make setup`
    removes it): Python would import it instead of the module's source."""
    suffix = EXTENSION_SUFFIXES[0]
    kept = tmp_path / f"{native.module_path(native.MODULES[0])}{suffix}"
    stray = tmp_path / "stream" / f"worker{suffix}"
    for path in (kept, stray, tmp_path / "stream" / "worker.py"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    assert native.stray_extensions(tmp_path) == [stray]


def _traffic(folder: Path, companies: int, events: int, seed: int) -> tuple[Path, list[dict]]:
    """A firmographics file of synthetic companies, and events on half of them."""
    records = list(synthetic.companies(companies, seed=seed))
    path = folder / "companies.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    domains = [r["domain"] for r in records[: companies // 2]]
    return path, list(synthetic.events(events, domains, seed=seed + 2))


def _input(folder: Path) -> tuple[Path, Path]:
    companies, docs = _traffic(folder, 400, 30_000, seed=3)
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
    """`scorer score` with replays, late, expired and bad events: the same documents
    and the same summary from both builds."""
    companies, events = _input(tmp_path)
    compiled, compiled_summary = _score(companies, events, pure=False)
    pure, pure_summary = _score(companies, events, pure=True)
    assert len(compiled) > 50_000  # a score per event and ICP
    assert sum(doc["hot"] for doc in compiled) > 100
    assert compiled == pure
    assert compiled_summary == pure_summary
    print(compiled_summary)


# Runs in a fresh interpreter (the build is chosen per process): every score, then
# every alert, of 100,000 lines in three parts, a new version of an ICP between them.
DRIVER = r"""
import io, sys
import orjson
from scorer import native
from scorer.icp import load_icp, parse_icp
from scorer.inputs import load_companies
from scorer.offline import EMIT_ALERTS, EMIT_SCORES, score_lines
from scorer.scoring import Engine
from scorer.scoring.intake import AccountStates
companies_path, events_path, *icp_paths = sys.argv[1:]
companies = load_companies(companies_path)
lines = open(events_path, "rb").read().splitlines()
out = sys.stdout.buffer
out.write(native.describe().encode() + b"\n")
for emit in (EMIT_SCORES, EMIT_ALERTS):
    engine = Engine([load_icp(p) for p in icp_paths])
    accounts = AccountStates()  # carried through the swaps
    third = len(lines) // 3
    for part in range(3):
        if part:  # an ICP swap: a higher version with other weights and thresholds
            doc = engine.icps[0].document.model_dump(mode="json", by_alias=True)
            doc["version"] += part
            doc["weights"] = {"fit": 0.5 + 0.1 * part, "intent": 0.5 - 0.1 * part}
            doc["hot"]["min_total"] = doc["hot"]["min_total"] - 5 * part
            doc["intent"]["half_life"] = f"{3 + part}d"
            doc["hot"]["cooldown"] = "12h"
            engine.set_icp(parse_icp(doc))
        chunk = lines[part * third : None if part == 2 else (part + 1) * third]
        score_lines(chunk, engine, companies, out, emit=emit, errors=io.StringIO(),
                    clock=lambda: 0.0, accounts=accounts)
"""


def test_both_builds_write_the_same_bytes_through_icp_swaps(tmp_path: Path) -> None:
    """100,000 lines (leads, replays, late and expired events, bad lines) scored by
    both builds, with a new version of an ICP twice on the way: every score and
    every alert document is byte for byte the same."""
    companies, docs = _traffic(tmp_path, 600, 97_000, seed=13)
    rng = random.Random(19)
    lines = [orjson.dumps(d) for d in docs]
    for _ in range(3_000):  # replays
        lines.insert(rng.randrange(len(lines)), rng.choice(lines))
    for _ in range(1_500):  # late: moved thousands of lines later than their time
        index = rng.randrange(len(lines) - 5_000)
        lines.insert(index + rng.randrange(1_000, 5_000), lines.pop(index))
    for i in range(300):  # expired, and bad lines of every kind
        lines.insert(
            rng.randrange(len(lines)),
            orjson.dumps(dict(docs[i], event_id=f"old-{i}", occurred_at="2020-01-01T00:00:00Z")),
        )
        lines.insert(
            rng.randrange(len(lines)),
            rng.choice(
                [b"not json", b"[1]", b'{"event_id": 1}', b"\xff\xfe", b'{"type": "page_view"}']
            ),
        )
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    assert len(lines) >= 100_000
    assert sum(b"lead_created" in line for line in lines) > 1_000

    def run(pure: bool) -> bytes:
        env = {**os.environ, native.PURE_ENV: "1" if pure else "0"}
        icps = [str(p) for p in sorted(SAMPLES.glob("*.yaml"))]
        command = [sys.executable, "-c", DRIVER, str(companies), str(events), *icps]
        done = subprocess.run(command, env=env, capture_output=True, timeout=600)
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        return done.stdout

    compiled, pure = run(pure=False), run(pure=True)
    compiled_build, _, compiled_docs = compiled.partition(b"\n")
    pure_build, _, pure_docs = pure.partition(b"\n")
    assert pure_build.startswith(b"pure Python")
    if native.compiled_and_current():
        assert compiled_build.startswith(b"compiled")
    assert compiled_docs.count(b"\n") > 150_000
    assert b'"type":"hot_account"' in compiled_docs
    swapped = b'"icp":{"id":"enterprise-fintech","version":%d}'
    assert all(swapped % version in compiled_docs for version in (1, 2, 4))  # both swaps took
    assert compiled_docs == pure_docs
