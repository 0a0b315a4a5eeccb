"""Lifecycle benchmark: backtest 1M events with 2 ICPs (goal <= 30 s), derive over
100,000 accounts (goal <= 10 s). In-process, one run each; prints the figures.

Data: bench.common's synthetic companies and events (generated once into
bench/results/tmp/), the 2 sample ICPs, and deterministic outcomes: 8 % of
the active accounts get an opportunity, a third of them won.
"""

from __future__ import annotations

import os
import random
import time

import orjson

from bench.common import ICPS, companies_file, events_file, log
from scorer.icp.loader import load_icp
from scorer.lifecycle.backtest import DAY, backtest
from scorer.lifecycle.crm import LOST, WON, Opportunity
from scorer.lifecycle.derive import derive
from scorer.synthetic import EPOCH

EVENTS = int(os.environ.get("BENCH_LIFECYCLE_EVENTS", "1000000"))
BACKTEST_GOAL_S = 30.0
# `scorer icp backtest` replays with one process per CPU, split by account.
JOBS = int(os.environ.get("BENCH_LIFECYCLE_JOBS", os.cpu_count() or 1))
DERIVE_GOAL_S = 10.0


def main() -> None:
    companies_path, domains = companies_file()
    events_path = events_file("events", EVENTS, domains, orjson.dumps)
    companies = {}
    with companies_path.open("rb") as stream:
        for line in stream:
            record = orjson.loads(line)
            companies[record["domain"]] = record
    rng = random.Random(5)
    start = EPOCH.timestamp()
    opportunities = []
    for domain in domains:
        if rng.random() < 0.08:
            created = start + rng.uniform(0, 30) * DAY
            outcome = WON if rng.random() < 0.33 else LOST
            opportunities.append(Opportunity(domain, outcome, None, created, created + 30 * DAY))
    icps = [(path.stem, load_icp(path)) for path in ICPS]

    log(
        f"backtest: {EVENTS:,} events, {len(icps)} ICPs, {len(companies):,} companies, "
        f"{JOBS} processes"
    )
    started = time.perf_counter()
    result = backtest(events_path, icps, companies, opportunities, jobs=JOBS)
    backtest_s = time.perf_counter() - started
    alerts = sum(r["alerts"] for r in result["icps"])

    won = [o.domain for o in opportunities if o.outcome == WON]
    log(f"derive: {len(companies):,} accounts, {len(won):,} won against the rest")
    started = time.perf_counter()
    derivation = derive(companies, won)
    derive_s = time.perf_counter() - started

    def verdict(seconds: float, goal: float) -> str:
        return "goal met" if seconds <= goal else "GOAL MISSED"

    print(
        f"backtest  {EVENTS:>9,} events x {len(icps)} ICPs  {backtest_s:6.1f} s  "
        f"({EVENTS / backtest_s:,.0f} events/s, {alerts:,} alerts)  "
        f"goal <= {BACKTEST_GOAL_S:g} s: {verdict(backtest_s, BACKTEST_GOAL_S)}"
    )
    print(
        f"derive    {len(companies):>9,} accounts          {derive_s:6.1f} s  "
        f"({len(derivation.values):,} values, {len(derivation.proposals)} criteria)  "
        f"goal <= {DERIVE_GOAL_S:g} s: {verdict(derive_s, DERIVE_GOAL_S)}"
    )


if __name__ == "__main__":
    main()
