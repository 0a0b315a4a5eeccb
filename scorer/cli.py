"""The `scorer` command."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiokafka.errors import KafkaError

from scorer import __version__, gcpolicy, native
from scorer.config import Settings
from scorer.enrichment.firmographics import is_csv, read_companies
from scorer.errors import BrokerError, ConfigError, InvalidFileError, InvalidICPError
from scorer.icp.loader import load_icp
from scorer.inputs import (
    InputFileError,
    duration_arg,
    load_companies,
    load_erasures,
    open_input,
)
from scorer.kafka.acls import add_acls_command
from scorer.kafka.refusals import REFUSED, explain
from scorer.lifecycle.commands import LifecycleInputError, add_lifecycle_commands
from scorer.logs import broker_problem, configure_logging
from scorer.offline import EMIT_ALERTS, EMIT_SCORES, Progress, StrictStop, Totals, score_lines
from scorer.scoring.engine import Engine
from scorer.scoring.erasure import ReplayErasures
from scorer.scoring.intake import AccountStates


class UsageError(Exception):
    """A bad argument: printed, exit status 2."""


def cmd_score(args: argparse.Namespace) -> int:
    settings = Settings()
    if args.dedup_window is None:
        args.dedup_window = settings.dedup_window
    if args.account_ttl is None:
        args.account_ttl = max(settings.account_ttl, args.dedup_window)
    if args.account_ttl < args.dedup_window:
        raise UsageError("--account-ttl must not be shorter than the dedup window")
    engine = Engine(dedup_window=args.dedup_window, account_ttl=args.account_ttl)
    accounts = AccountStates()
    erasures = None
    if args.erasures:
        requests = load_erasures(args.erasures, settings.salt)
        erasures = ReplayErasures(requests, accounts.states, settings.salt)
    for path in args.icp:
        icp = load_icp(path)
        if not engine.set_icp(icp):
            active = next(i for i in engine.icps if i.id == icp.id)
            sys.stderr.write(
                f"{path}: ignored: ICP {icp.id} v{icp.version} does not replace v{active.version}\n"
            )
    started = time.monotonic()
    gcpolicy.loading()
    companies = load_companies(args.firmographics, args.strict) if args.firmographics else {}
    loaded = time.monotonic()
    gcpolicy.settle()  # the company records live for the whole run
    progress = Progress(sys.stderr, sys.stderr.isatty() and not args.quiet)
    out = sys.stdout.buffer
    totals = Totals()
    with open_input(args.events) as events:
        try:
            score_lines(
                events,
                engine,
                companies,
                out,
                emit=args.emit,
                strict=args.strict,
                progress=progress,
                totals=totals,
                accounts=accounts,
                erasures=erasures,
            )
            if erasures is not None:
                erasures.finish()
        finally:
            progress.done(totals)
            out.flush()
    finished = time.monotonic()
    if not args.quiet:
        counts = ", ".join(f"{n:,} {k}" for k, n in sorted(totals.outcomes.items()))
        scoring = finished - loaded
        sys.stderr.write(
            f"{totals.lines:,} lines in {finished - started:.1f} s "
            f"(firmographics loaded in {loaded - started:.1f} s; scoring {scoring:.2f} s, "
            f"{totals.lines / max(scoring, 1e-9):,.0f} lines/s): {counts}; "
            f"{totals.alerts:,} alerts, {totals.suppressed:,} suppressed"
            + (f", {totals.shadow_alerts:,} shadow" if totals.shadow_alerts else "")
            + "; "
            f"{len(companies):,} companies, {len(engine.icps)} ICPs\n"
        )
    return 0


def cmd_icp_validate(args: argparse.Namespace) -> int:
    status = 0
    for path in args.files:
        try:
            icp = load_icp(path)
        except InvalidICPError as exc:
            status = 1
            for problem in exc.problems:
                print(f"{path}: {problem}", file=sys.stderr)
            continue
        print(f"{path}: ok ({icp.id} v{icp.version}, {len(icp.fit)} fit criteria)")
    return status


def cmd_schemas(args: argparse.Namespace) -> int:
    from scorer.schema_files import stale_schemas, write_schemas

    folder = Path(args.out)
    if args.check:
        stale = stale_schemas(folder)
        for name in stale:
            print(f"{folder / name}: out of date; run `scorer schemas`", file=sys.stderr)
        return 1 if stale else 0
    for path in write_schemas(folder):
        print(path)
    return 0


def cmd_icp_publish(args: argparse.Namespace) -> int:
    import asyncio

    from scorer.kafka.publish import publish_icp

    document = load_icp(args.file)
    asyncio.run(publish_icp(Settings(), document))
    print(f"{args.file}: published {document.id} v{document.version}")
    return 0


def cmd_icp_promote(args: argparse.Namespace) -> int:
    import asyncio

    from scorer.kafka.publish import current_icps, promote_icp

    settings = Settings()
    icps = asyncio.run(current_icps(settings))
    candidate = icps.get(args.id)
    if candidate is None:
        raise UsageError(f"no ICP {args.id!r} on {settings.topic(settings.icp_topic)}")
    if candidate.mode == "active" and args.replace is None:
        raise UsageError(f"{args.id} v{candidate.version} is already active")
    replaced = icps.get(args.replace) if args.replace else None
    promoted = asyncio.run(promote_icp(settings, candidate, replaced, args.replace))
    was = f"{candidate.id} v{candidate.version} ({candidate.mode})"
    now = f"{promoted.id} v{promoted.version} (active)"
    if replaced is not None:
        now += f", replacing {replaced.id} v{replaced.version}"
    print(f"promoted {was} -> {now}")
    return 0


def cmd_firmographics_load(args: argparse.Namespace) -> int:
    import asyncio
    import os

    from scorer.kafka.publish import LoadProgress, load_firmographics

    deletes = list(args.delete or [])
    if args.file is None and not deletes:
        raise UsageError("firmographics load needs a FILE, --delete DOMAIN, or both")
    with contextlib.ExitStack() as stack:
        records: Any = ()
        progress = position = None
        if args.file is not None:
            stream = stack.enter_context(open_input(args.file))
            records = read_companies(stream, is_csv(args.file))
            size = os.fstat(stream.fileno()).st_size if args.file != "-" else None
            progress = LoadProgress(sys.stderr, size)
            position = stream.tell if args.file != "-" else None
        sent, deleted, bad = asyncio.run(
            load_firmographics(Settings(), records, deletes, progress=progress, position=position)
        )
    print(f"{sent:,} records loaded, {deleted:,} deleted, {bad:,} bad lines skipped")
    return 1 if bad and args.strict else 0


def cmd_erase(args: argparse.Namespace) -> int:
    import asyncio
    import uuid

    from scorer.kafka.erasures import erasure_status, publish_request
    from scorer.scoring.erasure import ACCOUNT, LEAD, new_request

    settings = Settings()
    if args.status is not None:
        if args.suppress:
            raise UsageError("--suppress goes with --lead or --account, not --status")
        status = asyncio.run(erasure_status(settings, args.status))
        if status.request is None:
            raise UsageError(f"no erasure request {args.status!r} on {settings.topic('erasures')}")
        done = sum(status.applied.values())
        request = status.request
        print(
            f"request {request.id} ({request.kind}{', suppressed' if request.suppress else ''}): "
            f"applied by {done} of {status.tasks} tasks of worker app {settings.app_id}"
        )
        for task, applied in sorted(status.applied.items()):
            print(f"  task {task}: {'applied' if applied else 'not yet'}")
        return 0 if status.done else 1
    salt = settings.salt
    if args.suppress and salt is None:
        raise UsageError("--suppress needs SCORER_ERASURE_SALT (the same for every service)")
    kind, value = (LEAD, args.lead) if args.lead is not None else (ACCOUNT, args.account)
    try:
        request = new_request(
            args.id or uuid.uuid4().hex, kind, value, time.time(), salt if args.suppress else None
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    offset = asyncio.run(publish_request(settings, request))
    print(
        f"erasure request {request.id} ({kind}{', suppressed' if args.suppress else ''}) "
        f"published at offset {offset}; `scorer erase --status {request.id}` shows its progress"
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from scorer.stream.worker import run_worker

    return run_worker(Settings())


def cmd_route(args: argparse.Namespace) -> int:
    from scorer.route.rules import InvalidRoutesError, load_routes

    path = args.file if args.route_command == "validate" else args.routes
    if path is None:
        raise UsageError("scorer route needs --routes FILE (see scorer/samples/routes/)")
    try:
        routes = load_routes(path)
    except InvalidRoutesError as exc:
        return _invalid_file(path, exc, validating=args.route_command == "validate")
    if args.route_command == "validate":
        print(
            f"{path}: ok ({len(routes.destinations)} destinations, {len(routes.rules)} rules, "
            f"default: {', '.join(routes.default) or 'none'})"
        )
        return 0
    from scorer.route.serve import run_router

    return run_router(Settings(), routes)


def _invalid_file(path: object, exc: InvalidFileError, validating: bool) -> int:
    """Every problem of a user's file on its own line; 1 for `validate`, else 2
    (a service that cannot start on its configuration)."""
    for problem in exc.problems:
        print(f"{path}: {problem}", file=sys.stderr)
    return 1 if validating else 2


def cmd_collect(args: argparse.Namespace) -> int:
    from scorer.collect.mapping import InvalidMappingError, load_mapping

    path = args.file if args.collect_command == "validate" else args.mapping
    try:
        mapping = load_mapping(path)
    except InvalidMappingError as exc:
        return _invalid_file(path, exc, validating=args.collect_command == "validate")
    if args.collect_command == "validate":
        hook = "on" if mapping.hubspot else "off"
        print(
            f"{path}: ok ({len(mapping.track.events)} track events mapped, "
            f"unmapped: {mapping.track.unmapped}, HubSpot hook: {hook})"
        )
        return 0
    from scorer.collect.service import run_collector

    return run_collector(Settings(), mapping)


def cmd_demo(args: argparse.Namespace) -> int:
    from scorer.demo import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scorer", description="Real-time ICP scoring engine on Kafka."
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"scorer {__version__} (scoring core: {native.describe()})",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    score = commands.add_parser("score", help="score a JSON-lines event file offline")
    score.add_argument("events", nargs="?", default="-", help="JSON-lines events, or - for stdin")
    score.add_argument("--icp", action="append", required=True, help="ICP file (repeatable)")
    score.add_argument("--firmographics", help="company records: JSON lines or .csv")
    score.add_argument("--emit", choices=(EMIT_ALERTS, EMIT_SCORES), default=EMIT_ALERTS)
    score.add_argument("--strict", action="store_true", help="stop at the first bad line (exit 1)")
    score.add_argument(
        "--dedup-window",
        type=duration_arg,
        default=None,
        help="event-time window of remembered event ids (default: SCORER_DEDUP_WINDOW or 7d)",
    )
    score.add_argument(
        "--account-ttl",
        type=duration_arg,
        default=None,
        help="an account idle this long in event time starts fresh "
        "(default: SCORER_ACCOUNT_TTL or 90d)",
    )
    score.add_argument(
        "--erasures",
        metavar="FILE",
        help="erasure requests (JSON lines, as `scorer erase` writes them to the erasures "
        "topic), applied in event-time order",
    )
    score.add_argument("--quiet", action="store_true", help="no progress or summary on stderr")
    score.set_defaults(run=cmd_score)

    icp = commands.add_parser("icp", help="ICP documents").add_subparsers(
        dest="icp_command", required=True, metavar="ACTION"
    )
    validate = icp.add_parser("validate", help="check ICP files; exit 1 on any problem")
    validate.add_argument("files", nargs="+")
    validate.set_defaults(run=cmd_icp_validate)

    publish = icp.add_parser("publish", help="validate an ICP and publish it to icp-profiles")
    publish.add_argument("file")
    publish.set_defaults(run=cmd_icp_publish)
    promote = icp.add_parser(
        "promote", help="publish a shadow ICP (from icp-profiles) as active, next version"
    )
    promote.add_argument("id", help="the shadow ICP's id")
    promote.add_argument(
        "--replace", metavar="ID", help="publish it under this active ICP's id (next version)"
    )
    promote.set_defaults(run=cmd_icp_promote)
    add_lifecycle_commands(icp)

    firmographics = commands.add_parser("firmographics", help="company records").add_subparsers(
        dest="firmographics_command", required=True, metavar="ACTION"
    )
    load = firmographics.add_parser(
        "load", help="publish company records (JSONL or .csv) to the firmographics topic"
    )
    load.add_argument(
        "file", nargs="?", help="JSON lines or .csv; a line {domain, deleted: true} deletes"
    )
    load.add_argument("--delete", action="append", metavar="DOMAIN", help="write a tombstone")
    load.add_argument("--strict", action="store_true", help="exit 1 if any line was bad")
    load.set_defaults(run=cmd_firmographics_load)

    schemas = commands.add_parser("schemas", help="write the documents' JSON Schemas")
    schemas.add_argument("--out", default="schemas", help="folder (default: schemas)")
    schemas.add_argument("--check", action="store_true", help="exit 1 if the files are stale")
    schemas.set_defaults(run=cmd_schemas)

    add_acls_command(commands)

    erase = commands.add_parser(
        "erase", help="erase a lead or an account from the scorer's state (README 'Erasure')"
    )
    target = erase.add_mutually_exclusive_group(required=True)
    target.add_argument("--lead", metavar="LEAD_ID", help="a lead's lead_id")
    target.add_argument("--account", metavar="DOMAIN", help="an account's company domain")
    target.add_argument(
        "--status", metavar="ID", help="which worker tasks have applied request ID (1: not all)"
    )
    erase.add_argument(
        "--suppress",
        action="store_true",
        help="also drop every later event of it; keeps only a salted hash (SCORER_ERASURE_SALT)",
    )
    erase.add_argument("--id", help="the request's id (default: a random one)")
    erase.set_defaults(run=cmd_erase)

    worker = commands.add_parser("worker", help="run a streaming worker (SCORER_* settings)")
    worker.set_defaults(run=cmd_worker)

    route = commands.add_parser(
        "route", help="deliver hot accounts to Slack, CRMs, webhooks and the /feed page"
    )
    route.add_argument("--routes", help="routes.yaml: destinations and rules")
    route.set_defaults(run=cmd_route, route_command=None)
    route_actions = route.add_subparsers(dest="route_command", metavar="ACTION")
    route_validate = route_actions.add_parser("validate", help="check a routes file; exit 1 if bad")
    route_validate.add_argument("file")

    collect = commands.add_parser(
        "collect", help="take Segment-spec calls and HubSpot webhooks; stitch visitors"
    )
    collect.add_argument("--mapping", help="mapping file (default: the built-in mapping)")
    collect.set_defaults(run=cmd_collect, collect_command=None)
    collect_actions = collect.add_subparsers(dest="collect_command", metavar="ACTION")
    collect_validate = collect_actions.add_parser(
        "validate", help="check a mapping file; exit 1 if bad"
    )
    collect_validate.add_argument("file")

    demo = commands.add_parser("demo", help="show hot accounts arriving, on one machine")
    demo.add_argument("--seconds", type=float, default=None, help="stop after this long")
    demo.set_defaults(run=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    outage = configure_logging("WARNING", "text")
    try:
        status: int = args.run(args)
    except REFUSED as exc:
        print(f"scorer: {explain(exc, 'publisher', Settings())}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"scorer: {exc}", file=sys.stderr)
        return 2
    except (KafkaError, BrokerError) as exc:
        print(
            f"scorer: the broker at {Settings().broker} could not be used: "
            f"{broker_problem(outage, exc)}",
            file=sys.stderr,
        )
        return 1
    except InvalidICPError as exc:
        for problem in exc.problems:
            print(f"{exc.source}: {problem}" if exc.source else problem, file=sys.stderr)
        return 1
    except StrictStop:
        return 1
    except LifecycleInputError as exc:
        print(exc, file=sys.stderr)
        return 1
    except (UsageError, InputFileError) as exc:
        print(f"scorer: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `scorer score ... | head`: the reader left; that is not an error.
        sys.stderr.close()
        return 0
    return status


if __name__ == "__main__":
    sys.exit(main())
