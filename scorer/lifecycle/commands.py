"""The `scorer icp sample | derive | backtest | review` commands: files in, reports out.

The I/O edge of the lifecycle: it reads CRM exports, firmographics and event
histories, calls the pure modules and writes YAML, JSON, markdown and HTML.
Problems with an input are printed as `FILE: line N: why` (exit 1).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from scorer.config import Settings
from scorer.icp.loader import load_icp
from scorer.inputs import duration_arg, load_companies, load_erasures, open_input
from scorer.lifecycle.crm import LOST, WON, Columns, CRMExportError, Opportunity, load_opportunities
from scorer.lifecycle.derive import DeriveOptions, derive
from scorer.lifecycle.render import derivation_markdown, render_icp, template_parts
from scorer.lifecycle.signals import Signal, derive_signals
from scorer.timefmt import parse_record_time

Company = dict[str, Any]


class LifecycleInputError(Exception):
    """An input file could not be used; the message is printed as is."""


def _columns(args: argparse.Namespace) -> Columns:
    return Columns(
        args.domain_col, args.outcome_col, args.amount_col, args.created_col, args.closed_col
    )


def _opportunities(path: str, args: argparse.Namespace, default: str | None) -> list[Opportunity]:
    try:
        found, _ = load_opportunities(path, _columns(args), default)
    except CRMExportError as exc:
        shown = exc.problems[:20]
        more = (
            f"\n{exc.source}: ... {len(exc.problems) - 20} more" if len(exc.problems) > 20 else ""
        )
        raise LifecycleInputError("\n".join(f"{exc.source}: {p}" for p in shown) + more) from None
    return found


def _as_of(opportunities: list[Opportunity]) -> float | None:
    stamps = [o.closed_at or o.created_at for o in opportunities]
    known = [s for s in stamps if s is not None]
    return max(known) if known else None


def _progress(label: str) -> Any:
    started = time.monotonic()
    enabled = sys.stderr.isatty()

    def tick(lines: int, alerts: int) -> None:
        if enabled:
            rate = lines / max(time.monotonic() - started, 1e-9)
            sys.stderr.write(f"\r{label}: {lines:,} events  {rate:,.0f}/s  {alerts:,} alerts")
            sys.stderr.flush()

    return tick


def cmd_sample(args: argparse.Namespace) -> int:
    from scorer.lifecycle.sample import write_sample

    for path in write_sample(args.out, args.accounts, args.seed):
        print(path)
    return 0


def cmd_derive(args: argparse.Namespace) -> int:
    companies = load_companies(args.firmographics)
    outcomes = _opportunities(args.customers, args, WON)
    lost_file = _opportunities(args.lost, args, LOST) if args.lost else []
    won = {o.domain for o in outcomes if o.outcome == WON}
    lost = {o.domain for o in [*outcomes, *lost_file] if o.outcome == LOST}
    options = DeriveOptions(min_support=args.min_support, min_lift=args.min_lift)
    derivation = derive(companies, won, lost or None, options, _as_of([*outcomes, *lost_file]))
    template = template_parts(Path(args.template).read_text()) if args.template else None
    signals: list[Signal] = []
    if args.events:
        with open_input(args.events) as events:
            signals = derive_signals(
                events,
                [*outcomes, *lost_file],
                companies,
                won,
                options,
                lookback=args.lookback,
            )
    text = render_icp(derivation, args.id, args.version, args.name, template, signals=signals)
    report = derivation_markdown(derivation)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
        sys.stdout.write(report)
    if args.report:
        Path(args.report).write_text(report)
    if not derivation.proposals:
        sys.stderr.write("no criterion met the keep rule; see the report\n")
        return 1
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    from scorer.lifecycle.backtest import backtest
    from scorer.lifecycle.report import backtest_html, backtest_text

    icps = []
    for index, path in enumerate(args.icp):
        document = load_icp(path)
        icps.append((f"{'AB'[index] if index < 2 else index + 1}: {Path(path).stem}", document))
    companies = load_companies(args.firmographics)
    opportunities = _opportunities(args.outcomes, args, None)
    salt = Settings().salt
    with open_input(args.events):  # backtest() opens it in each process: fail here, clearly
        pass
    result = backtest(
        args.events,
        icps,
        companies,
        opportunities,
        args.horizon,
        progress=_progress("replay"),
        jobs=args.jobs,
        erasures=load_erasures(args.erasures, salt) if args.erasures else (),
        salt=salt,
    )
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    sys.stdout.write(backtest_text(result))
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    if args.html:
        Path(args.html).write_text(backtest_html(result))
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    from scorer.lifecycle.backtest import alerts_since
    from scorer.lifecycle.review import review, review_html, review_text

    active = load_icp(args.icp)
    companies = load_companies(args.firmographics)
    outcomes = _opportunities(args.customers, args, WON)
    lost_file = _opportunities(args.lost, args, LOST) if args.lost else []
    baseline = _opportunities(args.baseline, args, WON) if args.baseline else []
    options = DeriveOptions(min_support=args.min_support, min_lift=args.min_lift)
    result = review(
        active,
        Path(args.icp).read_text(),
        companies,
        [o.domain for o in outcomes if o.outcome == WON],
        [o.domain for o in [*outcomes, *lost_file] if o.outcome == LOST],
        [o.domain for o in baseline if o.outcome == WON] or None,
        options,
        _as_of([*outcomes, *lost_file]),
    )
    if args.events:
        if not (args.outcomes and args.since):
            raise LifecycleInputError("review --events needs --outcomes and --since DATE")
        since = parse_record_time(args.since)
        if since is None:
            raise LifecycleInputError(f"--since: not a date or RFC 3339 time: {args.since!r}")
        with open_input(args.events) as events:
            result.since = alerts_since(
                events, active, companies, _opportunities(args.outcomes, args, None), since
            )
    sys.stdout.write(review_text(result))
    if args.html:
        Path(args.html).write_text(review_html(result))
    if args.output:
        Path(args.output).write_text(result.proposed_text)
    return 0


def _crm_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("CRM export columns")
    group.add_argument("--domain-col", default="domain", metavar="NAME")
    group.add_argument("--outcome-col", default="outcome", metavar="NAME")
    group.add_argument("--amount-col", default="amount", metavar="NAME")
    group.add_argument("--created-col", default="created_at", metavar="NAME")
    group.add_argument("--closed-col", default="closed_at", metavar="NAME")


def _thresholds(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--min-support", type=int, default=30, help="accounts (default 30)")
    parser.add_argument("--min-lift", type=float, default=1.25, help="(default 1.25)")


def add_lifecycle_commands(icp: Any) -> None:
    """Add sample, derive, backtest and review to the `icp` subcommand group."""
    sample = icp.add_parser("sample", help="write synthetic CRM exports drawn from a planted ICP")
    sample.add_argument("-o", "--out", required=True, metavar="DIR")
    sample.add_argument("--accounts", type=int, default=10_000)
    sample.add_argument("--seed", type=int, default=42)
    sample.set_defaults(run=cmd_sample)

    derive_cmd = icp.add_parser("derive", help="propose an ICP from won (and lost) accounts")
    derive_cmd.add_argument("--customers", required=True, help="won accounts (CSV or JSONL)")
    derive_cmd.add_argument("--lost", help="lost accounts; else won vs every company")
    derive_cmd.add_argument("--firmographics", required=True, help="company records")
    derive_cmd.add_argument("-o", "--output", default="-", help="ICP YAML (default stdout)")
    derive_cmd.add_argument("--report", help="also write the markdown evidence report here")
    derive_cmd.add_argument("--template", help="ICP whose intent, tiers and hot rule to keep")
    derive_cmd.add_argument(
        "--events", help="event history (JSON lines): derive intent signals and their points"
    )
    derive_cmd.add_argument(
        "--lookback",
        type=duration_arg,
        default=30 * 86400.0,
        help="engagement counted before a deal was created (default 30d)",
    )
    derive_cmd.add_argument("--id", default="derived")
    derive_cmd.add_argument("--version", type=int, default=1)
    derive_cmd.add_argument("--name", default="Derived from CRM outcomes")
    _thresholds(derive_cmd)
    _crm_options(derive_cmd)
    derive_cmd.set_defaults(run=cmd_derive)

    test = icp.add_parser("backtest", help="replay history through ICPs, judge their alerts")
    test.add_argument("--icp", action="append", required=True, help="ICP file (A, then B)")
    test.add_argument("--events", required=True, help="JSON-lines event history")
    test.add_argument("--firmographics", required=True)
    test.add_argument("--outcomes", required=True, help="opportunities export with outcomes")
    test.add_argument("--horizon", type=duration_arg, default=90 * 86400.0, help="default 90d")
    test.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="processes to replay with, split by account (default: one per CPU)",
    )
    test.add_argument(
        "--erasures", metavar="FILE", help="erasure requests, applied in event-time order"
    )
    test.add_argument("--json", help="write the numbers as JSON here")
    test.add_argument("--html", help="write the HTML report here")
    _crm_options(test)
    test.set_defaults(run=cmd_backtest)

    check = icp.add_parser("review", help="drift, criteria lift and a proposed next version")
    check.add_argument("--icp", required=True, help="the active ICP")
    check.add_argument("--customers", required=True, help="recent won accounts")
    check.add_argument("--lost", help="recent lost accounts")
    check.add_argument("--baseline", help="earlier won accounts (default: every company)")
    check.add_argument("--firmographics", required=True)
    check.add_argument("--events", help="event history: alert precision since --since")
    check.add_argument("--outcomes", help="opportunities export (with --events)")
    check.add_argument("--since", help="the active version's start, a date (with --events)")
    check.add_argument("--html", help="write the HTML report here")
    check.add_argument("-o", "--output", help="write the proposed ICP YAML here")
    _thresholds(check)
    _crm_options(check)
    check.set_defaults(run=cmd_review)
