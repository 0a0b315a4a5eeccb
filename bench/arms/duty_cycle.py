"""An experiment, not product code: what this machine charges for working in bursts.

The worker under half load works in bursts (a fetch's records, then a wait in
epoll) where draining it works without a pause. This arm runs the same
compiled scoring loop over the same events, with the same warm engine, two
ways, in one process and alternately: flat out, and in chunks of CHUNK events
followed by a sleep that holds the process to DUTY of a core (the worker's
measured share at half load). It prints the CPU time per event of each, as
medians over ROUNDS rounds, and their ratio: the part of the worker's
half-load / drain CPU ratio that comes with the bursts themselves on this
machine, whatever the worker does per event.

    python bench/arms/duty_cycle.py COMPANIES EVENTS DUTY [ICP ...]
Prints one JSON line. DUTY 1 runs the flat passes only (`make bench` times them
alone and while the half-load rate's other parties run: its contention figure).
"""

from __future__ import annotations

import io
import os
import statistics
import sys
import time
from itertools import islice
from pathlib import Path

import orjson

from scorer import gcpolicy
from scorer.icp.loader import load_icp
from scorer.inputs import load_companies
from scorer.offline import score_lines
from scorer.scoring.engine import Engine
from scorer.scoring.intake import AccountStates

EVENTS = 100_000  # per pass: about a second of scoring
CHUNK = int(os.environ.get("DUTY_CHUNK", "1000"))  # events per burst: a fetch at half load
ROUNDS = 5


def cpu_per_event(engine: Engine, companies: object, lines: list[bytes], duty: float) -> float:
    """CPU microseconds per event of one pass over `lines` from fresh account state,
    in bursts of CHUNK held to `duty` of a core (1.0: no pause)."""
    accounts = AccountStates()
    sink = io.BytesIO()
    started = time.process_time()
    for start in range(0, len(lines), CHUNK):
        burst = time.perf_counter()
        score_lines(lines[start : start + CHUNK], engine, companies, sink, accounts=accounts)  # type: ignore[arg-type]
        if duty < 1.0:
            busy = time.perf_counter() - burst
            time.sleep(busy * (1.0 - duty) / duty)
        sink.seek(0)
        sink.truncate()
    return (time.process_time() - started) / len(lines) * 1e6


def main(companies_path: str, events_path: str, duty: float, icps: list[str]) -> None:
    engine = Engine()
    for path in icps:
        engine.set_icp(load_icp(Path(path)))
    companies = load_companies(companies_path, False)
    with open(events_path, "rb") as events:
        lines = list(islice(events, EVENTS))
    gcpolicy.settle()
    cpu_per_event(engine, companies, lines, 1.0)  # warm: the memos filled, the code paged in
    flat, bursts = [], []
    for _ in range(ROUNDS):
        flat.append(cpu_per_event(engine, companies, lines, 1.0))
        if duty < 1.0:
            bursts.append(cpu_per_event(engine, companies, lines, duty))
    flat_us = statistics.median(flat)
    bursts_us = statistics.median(bursts) if bursts else flat_us
    print(
        orjson.dumps(
            {
                "duty": duty,
                "chunk": CHUNK,
                "events": len(lines),
                "rounds": ROUNDS,
                "flat_us_per_event": round(flat_us, 2),
                "bursts_us_per_event": round(bursts_us, 2),
                "ratio": round(bursts_us / flat_us, 3),
                "flat_all": [round(x, 2) for x in flat],
                "bursts_all": [round(x, 2) for x in bursts],
            }
        ).decode(),
        flush=True,
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4:])
