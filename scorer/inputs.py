"""What the commands read: input files opened with a clear error, durations
given on the command line, and firmographics files.

`scorer score`, `scorer firmographics load` and the lifecycle commands all
read their inputs through here, so a missing file or a bad company record
reads the same whichever command met it.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import IO, Any

from scorer.enrichment.firmographics import is_csv, read_companies
from scorer.errors import InvalidInputError
from scorer.offline import StrictStop
from scorer.scoring.erasure import ErasureRequest, read_requests
from scorer.timefmt import parse_duration

# Bad company records printed before the rest are only counted.
SHOWN_PROBLEMS = 20


class InputFileError(Exception):
    """An input file could not be opened; the message names it."""


def load_erasures(path: str, salt: bytes | None) -> list[ErasureRequest]:
    """The erasure requests of a JSON-lines file (`--erasures`: the erasures topic's
    values, or requests written by hand); suppressions need the salt to be matched."""
    with open_input(path) as lines:
        try:
            requests = read_requests(lines)
        except InvalidInputError as exc:
            raise InputFileError(f"{path}: not an erasure request: {exc}") from None
    if salt is None and any(request.suppress for request in requests):
        raise InputFileError(f"{path} holds suppressions: set SCORER_ERASURE_SALT to match them")
    return requests


@contextlib.contextmanager
def open_input(path: str) -> Iterator[IO[bytes]]:
    """The file at `path` opened for binary reading (`-`: standard input)."""
    if path == "-":
        yield sys.stdin.buffer
        return
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read ({exc.strerror})") from None
    with handle:
        yield handle


def duration_arg(text: str) -> float:
    """An argparse type: seconds in ``7d``, ``24h``, ``30m`` or ``90s``."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def load_companies(
    path: str, strict: bool = False, errors: IO[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Every valid record of a firmographics file (JSON lines or CSV), by
    normalised domain. Bad records are reported as `FILE: line N: why` (the
    first SHOWN_PROBLEMS, then a count) and skipped; with `strict` the first
    one raises StrictStop."""
    errors = errors if errors is not None else sys.stderr
    companies: dict[str, dict[str, Any]] = {}
    bad = 0
    with open_input(path) as stream:
        for line, item in read_companies(stream, is_csv(path)):
            if isinstance(item, InvalidInputError):
                bad += 1
                if bad <= SHOWN_PROBLEMS:
                    errors.write(f"{path}: line {line}: {item}\n")
                if strict:
                    raise StrictStop(f"{path}: line {line}: {item}")
                continue
            companies[item["domain"]] = item
    if bad > SHOWN_PROBLEMS:
        errors.write(f"{path}: {bad} bad lines skipped\n")
    return companies
