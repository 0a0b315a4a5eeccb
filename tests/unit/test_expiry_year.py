"""Account expiry over a scaled-down year: state stays within 1.2x the active accounts."""

from __future__ import annotations

import io
from pathlib import Path

from bench.year import DAY, Year, run_batch, worst_ratio, write_year
from scorer import synthetic
from scorer.icp.loader import load_icp
from scorer.scoring.engine import Engine

ROOT = Path(__file__).resolve().parents[2]
ICPS = [ROOT / "scorer" / "samples" / n for n in ("midmarket-saas.yaml", "enterprise-fintech.yaml")]
DOMAINS = 20_000
DAYS = 90
TTL = 20 * DAY
WINDOW = 2 * DAY


def scaled_year(tmp: Path) -> Year:
    """20,000 domains over 90 days; the TTL scaled down with it to 20 days."""
    return write_year(tmp / "year.jsonl", DOMAINS, TTL, days=DAYS)


def test_the_year_names_every_domain_and_most_once(tmp_path: Path) -> None:
    """Every domain is an account of the traffic; 98 % have one event, one has hundreds."""
    year = scaled_year(tmp_path)
    assert year.accounts == DOMAINS
    counts = [synthetic.activity(rank, DOMAINS // 50) for rank in range(1, DOMAINS + 1)]
    assert sum(c == 1 for c in counts) / DOMAINS >= 0.98
    assert counts[0] == DOMAINS // 50
    assert year.boundaries == sorted(year.boundaries) and year.boundaries[-1] == year.lines


def test_scorer_score_keeps_state_within_1_2x_of_the_accounts_active_in_the_ttl(
    tmp_path: Path,
) -> None:
    """score_lines, sampled daily: state >= active always, <= 1.2x after the first TTL."""
    year = scaled_year(tmp_path)
    companies = {r["domain"]: r for r in synthetic.companies(DOMAINS // 10)}
    engine = Engine([load_icp(p) for p in ICPS], dedup_window=WINDOW, account_ttl=TTL)
    run = run_batch(year, engine, companies, io.BytesIO())
    assert len(run.state) == DAYS
    assert all(s >= a for s, a in zip(run.state, year.active, strict=True))
    ratio, day = worst_ratio(run.state, year.active, TTL)
    assert ratio <= 1.2, f"{ratio:.3f} on day {day + 1}"
    # Expiry did work: far fewer accounts than were ever seen are in state at the end.
    assert run.state[-1] < 0.5 * DOMAINS
