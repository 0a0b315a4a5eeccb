"""`scorer demo`: hot accounts arriving live, on one machine.

Scores synthetic traffic over a bundled sample of companies and the sample
ICPs with the real engine, at a modest pace, and prints each alert with its
tier and top reasons, until Ctrl-C or DEMO_SECONDS.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from importlib import resources

from scorer import synthetic
from scorer.display import format_alert
from scorer.events import event_from_document
from scorer.icp.loader import loads_icp
from scorer.scoring import HOT_ACCOUNT, AccountState, Engine, build_document

SAMPLE_COMPANIES = 3000
EVENTS_PER_SECOND = 400


def sample_icps() -> list[str]:
    folder = resources.files("scorer") / "samples"
    return [
        folder.joinpath(name).read_text()
        for name in ("midmarket-saas.yaml", "enterprise-fintech.yaml")
    ]


def run_demo(args: argparse.Namespace) -> int:
    seconds = (
        args.seconds if args.seconds is not None else float(os.environ.get("DEMO_SECONDS", "0"))
    )
    engine = Engine(loads_icp(text) for text in sample_icps())
    companies = {c["domain"]: c for c in synthetic.companies(SAMPLE_COMPANIES)}
    domains = list(companies)
    colour = sys.stdout.isatty()
    print(
        f"demo: {len(companies):,} companies, ICPs {', '.join(i.id for i in engine.icps)}; "
        f"{EVENTS_PER_SECOND} events/s; Ctrl-C to stop",
        flush=True,
    )
    states: dict[str, AccountState] = {}
    started = time.monotonic()
    count = alerts = 0
    try:
        for doc in synthetic.events(10**9, domains, seed=int(time.time())):
            count += 1
            event = event_from_document(doc)
            if event.account is not None:
                state = states.setdefault(event.account, AccountState())
                for score in engine.apply(state, event, companies.get(event.account))[1]:
                    if score.alert:
                        alerts += 1
                        print(format_alert(build_document(score, HOT_ACCOUNT, time.time()), colour))
            elapsed = time.monotonic() - started
            if seconds and elapsed >= seconds:
                break
            ahead = count / EVENTS_PER_SECOND - elapsed
            if ahead > 0:
                time.sleep(ahead)
    except KeyboardInterrupt:
        pass
    print(f"demo: {count:,} events, {alerts:,} alerts in {time.monotonic() - started:.0f} s")
    return 0
