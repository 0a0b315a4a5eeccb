"""Firmographic files: JSON lines and CSV, typed cells, nested and source columns."""

from __future__ import annotations

import io

import pytest

from scorer.enrichment.firmographics import read_companies
from scorer.errors import InvalidInputError

CSV = (
    "domain,name,employees,tech_stack,funding.last_round_at,sources.industry.confidence,industry\n"
    "WWW.Acme.example,Acme,250,hubspot; segment,2026-03-01,0.8,Software\n"
    "beta.example,Beta,,salesforce,,,\n"
    ",NoDomain,1,,,,\n"
    "gamma.example,Gamma,12.5,,,,1.5\n"
)


def test_csv_cells_are_typed_and_nested() -> None:
    """Lists split on ';', numbers parsed, empty cells unknown, dotted headers nest."""
    rows = list(read_companies(io.BytesIO(CSV.encode()), csv_format=True))
    (line1, acme), (_, beta), (line3, bad), (_, gamma) = rows
    assert line1 == 2 and line3 == 4
    assert acme == {
        "domain": "acme.example",
        "name": "Acme",
        "employees": 250,
        "tech_stack": ["hubspot", "segment"],
        "funding": {"last_round_at": "2026-03-01"},
        "sources": {"industry": {"confidence": 0.8}},
        "industry": "Software",
    }
    assert beta == {"domain": "beta.example", "name": "Beta", "tech_stack": "salesforce"}
    assert isinstance(bad, InvalidInputError) and "domain" in str(bad)
    assert gamma["employees"] == 12.5


def test_jsonl_records_and_bad_lines() -> None:
    """Valid records pass with a normalised domain; bad lines name their line and reason."""
    data = (
        b'{"domain": "Acme.example."}\n\nnot json\n{"name": "x"}\n'
        b'{"domain": "b.example", "sources": {"employees": {"confidence": 2}}}\n'
    )
    rows = list(read_companies(io.BytesIO(data), csv_format=False))
    assert rows[0] == (1, {"domain": "acme.example"})
    assert [(line, item.reason) for line, item in rows[1:]] == [
        (3, "invalid_json"),
        (4, "schema"),
        (5, "schema"),
    ]
    assert "sources.employees.confidence" in str(rows[3][1])


@pytest.mark.parametrize("header_only", [b"", b"domain,name\n"])
def test_empty_csv(header_only: bytes) -> None:
    """An empty file or a header without rows gives no records and no error."""
    assert list(read_companies(io.BytesIO(header_only), csv_format=True)) == []
