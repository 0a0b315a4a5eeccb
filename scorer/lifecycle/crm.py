"""CRM exports: won, lost and open opportunities from CSV or JSON lines.

Column names are configurable (every CRM spells them differently); domains
are normalised as everywhere else; outcomes are read leniently (`Closed Won`,
`closed_won`, `won`) but anything else is refused with `line N: why`, as is a
missing domain or an unreadable date. A customers-only export (no outcome
column) is read with a default outcome.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from scorer.enrichment.domains import normalise_domain
from scorer.errors import ScorerError
from scorer.timefmt import format_epoch, parse_record_time

WON = "won"
LOST = "lost"
OPEN = "open"
OUTCOMES = (WON, LOST, OPEN)
_OUTCOME_WORDS = {
    "won": WON,
    "closed won": WON,
    "closedwon": WON,
    "win": WON,
    "customer": WON,
    "lost": LOST,
    "closed lost": LOST,
    "closedlost": LOST,
    "loss": LOST,
    "open": OPEN,
    "pipeline": OPEN,
    "in progress": OPEN,
}


class CRMExportError(ScorerError):
    """A CRM export could not be used; `problems` are `line N: why` messages."""

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = problems
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(where + "; ".join(problems))


@dataclass(frozen=True, slots=True)
class Columns:
    """Which column (or JSON key) holds each field of an opportunity."""

    domain: str = "domain"
    outcome: str = "outcome"
    amount: str = "amount"
    created_at: str = "created_at"
    closed_at: str = "closed_at"


@dataclass(frozen=True, slots=True)
class Opportunity:
    """One opportunity; times are epoch seconds, None when the export has none."""

    domain: str
    outcome: str
    amount: float | None = None
    created_at: float | None = None
    closed_at: float | None = None


class _Bad(ValueError):
    """One row's problem (the message names the column, never its value)."""


def parse_outcome(text: Any) -> str:
    """`won`, `lost` or `open` from the spellings CRMs use."""
    if not isinstance(text, str):
        raise _Bad("expected text")
    word = text.strip().casefold().replace("_", " ").replace("-", " ")
    outcome = _OUTCOME_WORDS.get(" ".join(word.split()))
    if outcome is None:
        raise _Bad("expected won, lost or open (or Closed Won / Closed Lost)")
    return outcome


def _time(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    stamp = parse_record_time(value.strip() if isinstance(value, str) else value)
    if stamp is None:
        raise _Bad("expected a date or an RFC 3339 timestamp")
    return stamp


def _amount(value: Any) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise _Bad("expected a number")
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).replace(",", "").strip())
    except ValueError:
        raise _Bad("expected a number") from None


def opportunity_from_row(
    row: dict[str, Any], columns: Columns, default_outcome: str | None
) -> Opportunity:
    """One row as an `Opportunity`; raises `_Bad` naming the column."""
    domain = row.get(columns.domain)
    if not isinstance(domain, str) or not normalise_domain(domain):
        raise _Bad(f"{columns.domain}: required domain")
    fields: dict[str, Any] = {}
    for name, column, convert in (
        ("outcome", columns.outcome, parse_outcome),
        ("amount", columns.amount, _amount),
        ("created_at", columns.created_at, _time),
        ("closed_at", columns.closed_at, _time),
    ):
        value = row.get(column)
        if name == "outcome" and (value is None or value == ""):
            if default_outcome is None:
                raise _Bad(f"{column}: required (won, lost or open)")
            fields[name] = default_outcome
            continue
        try:
            fields[name] = convert(value)
        except _Bad as exc:
            raise _Bad(f"{column}: {exc}") from None
    return Opportunity(domain=normalise_domain(domain), **fields)


def _csv_rows(stream: IO[bytes]) -> Iterator[tuple[int, dict[str, Any] | str]]:
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
    try:
        reader = csv.reader(text)
        header = [h.strip() for h in next(reader, [])]
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                yield reader.line_num, f"{len(row)} columns, header has {len(header)}"
                continue
            yield reader.line_num, dict(zip(header, row, strict=True))
    finally:
        text.detach()  # the caller owns (and closes) the binary stream


def _jsonl_rows(stream: IO[bytes]) -> Iterator[tuple[int, dict[str, Any] | str]]:
    for number, raw in enumerate(stream, start=1):
        if not raw.strip():
            continue
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            yield number, "not valid UTF-8 JSON"
            continue
        yield number, doc if isinstance(doc, dict) else "expected a JSON object"


def read_opportunities(
    stream: IO[bytes],
    csv_format: bool,
    columns: Columns = Columns(),
    default_outcome: str | None = None,
) -> Iterator[tuple[int, Opportunity | str]]:
    """(line number, opportunity or why the line was refused) for every row."""
    try:
        rows = _csv_rows(stream) if csv_format else _jsonl_rows(stream)
        for number, row in rows:
            if isinstance(row, str):
                yield number, row
                continue
            try:
                yield number, opportunity_from_row(row, columns, default_outcome)
            except _Bad as exc:
                yield number, str(exc)
    except UnicodeDecodeError:
        yield 0, "not valid UTF-8"


def load_opportunities(
    path: str | Path,
    columns: Columns = Columns(),
    default_outcome: str | None = None,
    strict: bool = True,
) -> tuple[list[Opportunity], list[str]]:
    """Every opportunity of an export, and the `line N: why` problems met.

    `strict`: raise `CRMExportError` with every problem instead of skipping.
    """
    path = Path(path)
    try:
        stream = path.open("rb")
    except OSError as exc:
        raise CRMExportError([f"cannot read ({exc.strerror})"], str(path)) from None
    found: list[Opportunity] = []
    problems: list[str] = []
    with stream:
        is_csv = path.name.lower().endswith(".csv")
        for number, item in read_opportunities(stream, is_csv, columns, default_outcome):
            if isinstance(item, str):
                problems.append(f"line {number}: {item}")
            else:
                found.append(item)
    if problems and strict:
        raise CRMExportError(problems, str(path))
    return found, problems


def domains_with(opportunities: list[Opportunity], outcome: str) -> set[str]:
    """The accounts with at least one opportunity of an outcome."""
    return {o.domain for o in opportunities if o.outcome == outcome}


def write_opportunities_csv(opportunities: list[Opportunity], out: IO[str]) -> None:
    """The export format `read_opportunities` reads by default."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["domain", "outcome", "amount", "created_at", "closed_at"])
    for o in opportunities:
        writer.writerow(
            [
                o.domain,
                o.outcome,
                "" if o.amount is None else f"{o.amount:.0f}",
                "" if o.created_at is None else format_epoch(o.created_at),
                "" if o.closed_at is None else format_epoch(o.closed_at),
            ]
        )
