"""docs/icp.md's worked example: the documented numbers are what the command prints."""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.cli.test_score_command import run

DOCS = Path(__file__).parents[2] / "docs"


def test_worked_example_numbers_match_the_guide() -> None:
    """Acme's totals, tiers and alerts in docs/icp.md come out of `scorer score` unchanged."""
    examples = DOCS / "examples"
    result = run(
        "score",
        "--quiet",
        "--emit",
        "scores",
        "--icp",
        examples / "icp.yaml",
        "--firmographics",
        examples / "companies.jsonl",
        examples / "events.jsonl",
    )
    assert result.returncode == 0, result.stderr
    acme = [
        (d["trigger"]["event_id"], d["score"]["total"], d["score"]["intent"], d["tier"])
        for d in map(orjson.loads, result.stdout.splitlines())
        if d["account"]["domain"] == "acme.example"
    ]
    assert acme == [
        ("e-1", 57.33, 10.0, "C"),
        ("e-2", 70.33, 42.5, "B"),
        ("e-3", 77.33, 60.0, "B"),
        ("e-4", 81.14, 69.51, "A"),
    ]
    guide = (DOCS / "icp.md").read_text()
    for total in ("57.33", "70.33", "77.33", "81.14", "69.51"):
        assert total in guide
