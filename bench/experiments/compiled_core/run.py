"""Build spike.pyx and race it against the product's scoring loop, one run.

    .venv/bin/pip install cython   # not a dependency of the project
    .venv/bin/python -m bench.experiments.compiled_core.run

Both arms score the engine bench's data (bench/results/tmp/, made by
`make bench-engine` or here) in a fresh interpreter pinned to one core, each
REPEATS times, alternating; the table gives medians of the scoring loop alone
(firmographics loaded before the clock starts, as in the `scorer-loop` arm).
The run fails if the two arms do not count the same alerts.
Results: bench/results/<date>-compiled-core-spike.json.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import ICPS, RESULTS, log, save_result
from bench.engine_bench import EVENTS, REPEATS, make_data, pinned

HERE = Path(__file__).resolve().parent
BUILD = RESULTS / "tmp" / "compiled-core"

ARM = """
import gc, io, sys, time
sys.path.insert(0, sys.argv[1])
from scorer.cli import load_companies
from scorer.icp import load_icp
from scorer.offline import score_lines
from scorer.scoring import Engine
from scorer import gcpolicy
arm, events, companies_path, *icps = sys.argv[2:]
companies = load_companies(companies_path, False)
engine = Engine([load_icp(p) for p in icps])
with open(events, "rb") as f:
    lines = f.readlines()
gcpolicy.settle()
start = time.process_time()
if arm == "spike":
    import spike
    run = spike.Spike(engine, companies)
    run.run(lines)
    alerts = run.alerts
else:
    alerts = score_lines(lines, engine, companies, io.BytesIO()).alerts
print(alerts, time.process_time() - start)
"""


def build() -> None:
    try:
        import Cython  # noqa: F401
    except ImportError:
        sys.exit("this experiment needs Cython: .venv/bin/pip install cython")
    BUILD.mkdir(parents=True, exist_ok=True)
    setup = (
        "from setuptools import setup\nfrom Cython.Build import cythonize\n"
        f"setup(ext_modules=cythonize([{str(HERE / 'spike.pyx')!r}], quiet=True, "
        f"build_dir={str(BUILD)!r}))\n"
    )
    built = subprocess.run(
        [sys.executable, "-c", setup, "build_ext", "--build-lib", str(BUILD), "-q"],
        cwd=BUILD,
        capture_output=True,
        text=True,
    )
    if built.returncode:
        sys.exit(f"building spike.pyx failed:\n{built.stdout}{built.stderr}")
    log("spike.pyx built")


def arm(name: str, events: Path, companies: Path) -> tuple[int, float]:
    out = subprocess.run(
        pinned([sys.executable, "-c", ARM, str(BUILD), name, str(events), str(companies),
                *map(str, ICPS)]),
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    alerts, seconds = out.stdout.split()
    return int(alerts), float(seconds)


def main() -> int:
    started = time.monotonic()
    build()
    companies, events = make_data()
    seconds: dict[str, list[float]] = {"product": [], "spike": []}
    alerts: dict[str, set[int]] = {"product": set(), "spike": set()}
    for round_ in range(1, REPEATS + 1):
        for name in seconds:
            count, took = arm(name, events, companies)
            seconds[name].append(took)
            alerts[name].add(count)
            log(f"round {round_}/{REPEATS}: {name} {EVENTS / took:,.0f} events/s, {count} alerts")
    if alerts["product"] != alerts["spike"] or len(alerts["product"]) != 1:
        log(f"alert counts differ: {alerts}")
        return 1
    rates = {name: EVENTS / statistics.median(s) for name, s in seconds.items()}
    result = {
        "events": EVENTS,
        "repeats": REPEATS,
        "alerts": alerts["product"].pop(),
        "events_per_s": {name: round(rate) for name, rate in rates.items()},
        "spike_vs_product": round(rates["spike"] / rates["product"], 2),
    }

    def report(document: dict[str, Any]) -> str:
        rows = "\n".join(f"{name:10} {rate:>10,.0f}" for name, rate in rates.items())
        ratio, alerts = document["spike_vs_product"], document["alerts"]
        head = f"{'arm':10} {'events/s':>10}"
        return f"{head}\n{rows}\nspike / product: {ratio}x, {alerts} alerts each"

    save_result(result, "compiled-core-spike", started, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
