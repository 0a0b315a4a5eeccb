"""Synthetic CRM exports drawn from a planted "true" ICP, for docs, tests and benchmarks.

Companies come from `scorer.synthetic`; an account's chance of an
opportunity, and of winning it, grows with how many of the PLANTED criteria
it matches (each with its own odds factor, so a derivation can be checked
for the right fields, values and weight order). Accounts with an opportunity
show a burst of buying intent in the weeks before it opens; others show
one too without buying, the more often the worse they fit (false positives
that only fit can tell apart). A later quarter of wins (`recent-won.csv`)
is drawn from a drifted ICP, for `scorer icp review`. Deterministic per seed.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from scorer import synthetic
from scorer.lifecycle.crm import LOST, OPEN, WON, Opportunity, write_opportunities_csv
from scorer.timefmt import format_epoch

DAY = 86400.0
START = datetime(2026, 5, 1, tzinfo=UTC).timestamp()
END = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
_SAMPLES = Path(__file__).resolve().parents[1] / "samples"

# The planted ICP: (field, test, odds factor). Missing values never match.
PLANTED_INDUSTRIES = ("software", "saas")
PLANTED_EMPLOYEES = (200, 2000)
PLANTED_TECH = "snowflake"
PLANTED_COUNTRIES = ("US", "GB")
PLANTED_FACTORS = {"industry": 12.0, "tech_stack": 4.0, "employees": 4.0, "country": 3.0}
# The drifted ICP of the next quarter: Germany joins, databricks counts like snowflake.
DRIFT_COUNTRIES = ("US", "GB", "DE")
DRIFT_TECH = ("snowflake", "databricks")
BASE_WIN_ODDS = 0.02


def planted_matches(record: Mapping[str, Any], drifted: bool = False) -> dict[str, bool]:
    """Which planted criteria a company matches (the drifted variant for the recent quarter)."""
    employees = record.get("employees")
    stack = record.get("tech_stack") or []
    tech = DRIFT_TECH if drifted else (PLANTED_TECH,)
    countries = DRIFT_COUNTRIES if drifted else PLANTED_COUNTRIES
    return {
        "industry": record.get("industry") in PLANTED_INDUSTRIES,
        "tech_stack": any(t in stack for t in tech),
        "employees": isinstance(employees, int)
        and PLANTED_EMPLOYEES[0] <= employees <= PLANTED_EMPLOYEES[1],
        "country": record.get("country") in countries,
    }


def win_probability(record: Mapping[str, Any], drifted: bool = False) -> float:
    """P(win | opportunity): base odds times each matched criterion's factor."""
    odds = BASE_WIN_ODDS
    for field, matched in planted_matches(record, drifted).items():
        if matched:
            odds *= PLANTED_FACTORS[field]
    return odds / (1.0 + odds)


@dataclass
class Sample:
    """Everything `write_sample` writes, in memory."""

    companies: list[dict[str, Any]]
    opportunities: list[Opportunity]
    events: list[dict[str, Any]]
    recent: list[Opportunity]


def _burst(rng: random.Random, domain: str, before: float) -> list[tuple[float, dict[str, Any]]]:
    """A buying-intent burst in the three weeks before `before`."""
    out = []
    for _ in range(rng.randint(3, 8)):
        at = before - rng.uniform(0.5, 21) * DAY
        roll = rng.random()
        if roll < 0.15:
            kind, page = "demo_request", "/demo"
        elif roll < 0.3:
            kind, page = "form_submit", "/contact"
        elif roll < 0.4:
            title = rng.choice(["VP Sales", "Head of Data", "Analyst", "CFO", "Engineer"])
            out.append((at, {"type": "lead_created", "title": title, "domain": domain}))
            continue
        else:
            kind, page = "page_view", rng.choice(["/pricing", "/pricing/enterprise", "/docs"])
        out.append((at, {"type": kind, "page": page, "domain": domain}))
    return out


def _background(rng: random.Random, domain: str) -> list[tuple[float, dict[str, Any]]]:
    pages = ["/", "/blog/icp-scoring", "/careers", "/about", "/docs", "/pricing"]
    visits = int(rng.expovariate(1 / 3.0))
    return [
        (
            rng.uniform(START, END),
            {"type": "page_view", "page": rng.choice(pages), "domain": domain},
        )
        for _ in range(visits)
    ]


def _documents(stamped: list[tuple[float, dict[str, Any]]]) -> list[dict[str, Any]]:
    stamped.sort(key=lambda item: (item[0], item[1]["domain"]))
    out = []
    for serial, (at, spec) in enumerate(stamped, start=1):
        doc: dict[str, Any] = {
            "event_id": f"h-{serial:08d}",
            "type": spec["type"],
            "occurred_at": format_epoch(at),
        }
        if spec["type"] == "lead_created":
            doc.update(lead_id=f"L-{serial}", email=f"lead{serial}@{spec['domain']}")
            doc["title"] = spec["title"]
        else:
            doc["company_domain"] = spec["domain"]
            doc["page_url"] = "https://scorer.example" + spec["page"]
        out.append(doc)
    return out


def generate(accounts: int = 10000, seed: int = 42) -> Sample:
    """A whole sample: companies, opportunities, event history, a drifted recent quarter."""
    rng = random.Random(seed)
    companies = list(synthetic.companies(accounts, seed))
    opportunities: list[Opportunity] = []
    stamped: list[tuple[float, dict[str, Any]]] = []
    for record in companies:
        domain = record["domain"]
        matched = sum(planted_matches(record).values())
        stamped.extend(_background(rng, domain))
        if rng.random() < 0.25 + 0.03 * matched:
            created = rng.uniform(START + 30 * DAY, END - 10 * DAY)
            closed = created + rng.uniform(20, 90) * DAY
            amount = float(rng.randint(5, 120) * 1000)
            if closed > END:
                opportunities.append(Opportunity(domain, OPEN, amount, created, None))
            else:
                outcome = WON if rng.random() < win_probability(record) else LOST
                opportunities.append(Opportunity(domain, outcome, amount, created, closed))
            stamped.extend(_burst(rng, domain, created))
        elif rng.random() < 0.35 - 0.08 * matched:  # tyre-kickers: intent, poor fit, no deal
            stamped.extend(_burst(rng, domain, rng.uniform(START + 21 * DAY, END)))
    recent: list[Opportunity] = []
    for record in companies:
        if rng.random() < 0.25:
            created = rng.uniform(END, END + 60 * DAY)
            closed = created + rng.uniform(10, 30) * DAY
            outcome = WON if rng.random() < win_probability(record, drifted=True) else LOST
            recent.append(Opportunity(record["domain"], outcome, None, created, closed))
    return Sample(companies, opportunities, _documents(stamped), recent)


def write_sample(folder: str | Path, accounts: int = 10000, seed: int = 42) -> list[Path]:
    """Write the sample files into `folder`; the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sample = generate(accounts, seed)
    written = []

    def jsonl(name: str, documents: list[dict[str, Any]]) -> None:
        path = folder / name
        path.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in documents))
        written.append(path)

    def export(name: str, opportunities: list[Opportunity]) -> None:
        path = folder / name
        with path.open("w", encoding="utf-8", newline="") as out:
            write_opportunities_csv(opportunities, out)
        written.append(path)

    jsonl("companies.jsonl", sample.companies)
    jsonl("events.jsonl", sample.events)
    export("opportunities.csv", sample.opportunities)
    export("won.csv", [o for o in sample.opportunities if o.outcome == WON])
    export("lost.csv", [o for o in sample.opportunities if o.outcome == LOST])
    export("recent-won.csv", [o for o in sample.recent if o.outcome == WON])
    export("recent-lost.csv", [o for o in sample.recent if o.outcome == LOST])
    current = folder / "current-icp.yaml"
    current.write_text((_SAMPLES / "midmarket-saas.yaml").read_text())
    written.append(current)
    return written
