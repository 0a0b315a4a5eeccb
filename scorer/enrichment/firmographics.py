"""Firmographic records from JSON-lines or CSV files.

A record is kept as the plain mapping it arrived as (with its domain
normalised): fields are looked up by dotted path at scoring time. CSV cells
are typed on the way in: empty = unknown, ``;``-separated = list, numbers and
true/false as such; dotted headers (``funding.last_round_at``) nest, and
``sources.<field>.<attr>`` headers fill the sources map.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Mapping
from typing import IO, Any

import orjson

from scorer.enrichment.domains import normalise_domain
from scorer.errors import InvalidInputError

_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$")
_SOURCE_ATTRS = ("source", "confidence", "updated_at")

Record = dict[str, Any]


def check_record(doc: Any) -> Record:
    """Validate a company record and normalise its domain (a new dict)."""
    if not isinstance(doc, dict):
        raise InvalidInputError("schema", "expected a JSON object")
    domain = doc.get("domain")
    if not isinstance(domain, str) or not normalise_domain(domain):
        raise InvalidInputError("schema", "domain: required non-empty string")
    sources = doc.get("sources")
    if sources is not None:
        if not isinstance(sources, dict):
            raise InvalidInputError("schema", "sources: expected an object")
        for field, origin in sources.items():
            if not isinstance(origin, dict):
                raise InvalidInputError("schema", f"sources.{field}: expected an object")
            confidence = origin.get("confidence")
            if confidence is not None and (
                isinstance(confidence, bool)
                or not isinstance(confidence, int | float)
                or not 0.0 <= confidence <= 1.0
            ):
                raise InvalidInputError("schema", f"sources.{field}.confidence: expected 0..1")
    record = dict(doc)
    record["domain"] = normalise_domain(domain)
    return record


def _cell(text: str) -> Any:
    text = text.strip()
    if not text:
        return None
    if ";" in text:
        return [item.strip() for item in text.split(";") if item.strip()]
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text)
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return text


def _put(record: Record, header: str, value: Any) -> None:
    parts = header.split(".")
    if parts[0] == "sources" and len(parts) >= 3 and parts[-1] in _SOURCE_ATTRS:
        field = ".".join(parts[1:-1])
        record.setdefault("sources", {}).setdefault(field, {})[parts[-1]] = value
        return
    target = record
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = value


def _csv_records(stream: IO[str]) -> Iterator[tuple[int, Record | InvalidInputError]]:
    reader = csv.reader(stream)
    header = next(reader, None)
    if header is None:
        return
    header = [h.strip() for h in header]
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            yield line, InvalidInputError("schema", f"{len(row)} columns, header has {len(header)}")
            continue
        record: Record = {}
        for name, cell in zip(header, row, strict=True):
            value = _cell(cell)
            if value is not None:
                _put(record, name, value)
        try:
            yield line, check_record(record)
        except InvalidInputError as exc:
            yield line, exc


def _jsonl_records(stream: IO[bytes]) -> Iterator[tuple[int, Record | InvalidInputError]]:
    for line, raw in enumerate(stream, start=1):
        if not raw.strip():
            continue
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            yield line, InvalidInputError("invalid_json", "not valid UTF-8 JSON")
            continue
        try:
            yield line, check_record(doc)
        except InvalidInputError as exc:
            yield line, exc


def read_companies(
    stream: IO[bytes], csv_format: bool
) -> Iterator[tuple[int, Record | InvalidInputError]]:
    """(line number, record or the reason it was rejected) for every record."""
    if csv_format:
        text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
        yield from _csv_records(text)
    else:
        yield from _jsonl_records(stream)


def is_csv(path: str) -> bool:
    return path.lower().endswith((".csv", ".csv.gz"))


class LazyCompany(Mapping[str, Any]):
    """A company record kept as bytes, decoded on first read.

    The engine reads a company only when its cached fit is stale, and an
    alert reads it for its reasons; most events need neither, so most never
    decode it."""

    __slots__ = ("_doc", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._doc: dict[str, Any] | None = None

    def doc(self) -> dict[str, Any]:
        doc = self._doc
        if doc is None:
            doc = self._doc = orjson.loads(self.raw)
        return doc

    def get(self, key: str, default: Any = None) -> Any:
        return self.doc().get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self.doc()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.doc())

    def __len__(self) -> int:
        return len(self.doc())
