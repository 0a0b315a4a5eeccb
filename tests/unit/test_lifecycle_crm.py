"""Reading CRM exports: configurable columns, normalised domains, `line N: why` errors."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from scorer.lifecycle.crm import (
    LOST,
    OPEN,
    WON,
    Columns,
    CRMExportError,
    load_opportunities,
    read_opportunities,
)


def test_reads_csv_with_custom_columns_and_crm_spellings() -> None:
    """Renamed columns, `Closed Won` and `www.` domains are read as won/lost and bare domains."""
    text = (
        "Website,Stage,Value,Created,Closed\n"
        "WWW.Acme.example,Closed Won,1000,2026-01-02,2026-02-03T10:00:00Z\n"
        "beta.example.,closed_lost,,2026-01-05,\n"
        'gamma.example,Open,"2,500",2026-03-01,\n'
    )
    columns = Columns("Website", "Stage", "Value", "Created", "Closed")
    rows = list(read_opportunities(io.BytesIO(text.encode()), True, columns))
    opportunities = [item for _, item in rows]
    assert [o.domain for o in opportunities] == ["acme.example", "beta.example", "gamma.example"]  # type: ignore[union-attr]
    assert [o.outcome for o in opportunities] == [WON, LOST, OPEN]  # type: ignore[union-attr]
    assert opportunities[2].amount == 2500.0  # type: ignore[union-attr]


def test_bad_lines_name_their_line_and_column(tmp_path: Path) -> None:
    """A bad outcome, date or missing domain is refused as `line N: column: why`."""
    path = tmp_path / "export.csv"
    path.write_text(
        "domain,outcome,amount,created_at,closed_at\n"
        "a.example,won,,,\n"
        "b.example,maybe,,,\n"
        ",won,,,\n"
        "c.example,lost,,yesterday,\n"
    )
    with pytest.raises(CRMExportError) as caught:
        load_opportunities(path)
    assert caught.value.problems == [
        "line 3: outcome: expected won, lost or open (or Closed Won / Closed Lost)",
        "line 4: domain: required domain",
        "line 5: created_at: expected a date or an RFC 3339 timestamp",
    ]


def test_jsonl_export_with_default_outcome(tmp_path: Path) -> None:
    """A customers-only JSONL export without an outcome is read as won."""
    path = tmp_path / "customers.jsonl"
    path.write_text('{"domain": "a.example"}\n\n{"domain": "b.example", "amount": 5}\n')
    found, problems = load_opportunities(path, default_outcome=WON)
    assert [(o.domain, o.outcome, o.amount) for o in found] == [
        ("a.example", WON, None),
        ("b.example", WON, 5.0),
    ]
    assert problems == []
