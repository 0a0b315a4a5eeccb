"""`scorer score`'s loop over lines: blank lines skipped, bad lines counted and named."""

from __future__ import annotations

import io

import orjson

from scorer.offline import score_lines
from scorer.scoring import SCORED, Engine
from scorer.scoring.engine import INVALID
from tests.conftest import make_icp

ACME = {"domain": "acme.example", "industry": "software", "employees": 200, "country": "US"}
VISIT = {
    "type": "page_view",
    "occurred_at": "2026-11-20T10:00:00Z",
    "company_domain": "acme.example",
}


def test_blank_lines_are_skipped_and_bad_lines_counted_by_number() -> None:
    """Empty and whitespace-only lines are no events (not bad ones); a bad line is
    counted as invalid and named by its line number; the rest are scored."""
    lines = [
        orjson.dumps({**VISIT, "event_id": "e-1"}),
        b"",
        b"  \t\r\n",
        b"\n",
        b"{not json\n",
        orjson.dumps({**VISIT, "event_id": "e-2"}) + b"\n",
        b" \x0b\n",  # a vertical tab is whitespace to Python, not to JSON: skipped as blank
    ]
    errors = io.StringIO()
    totals = score_lines(
        lines, Engine([make_icp()]), {"acme.example": ACME}, io.BytesIO(), errors=errors
    )
    assert totals.lines == 7
    assert totals.outcomes == {SCORED: 2, INVALID: 1}
    assert errors.getvalue() == "line 5: invalid_json: not valid UTF-8 JSON\n"
