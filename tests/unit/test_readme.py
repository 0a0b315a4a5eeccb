"""The README stays true: its configuration table matches the settings, its sections exist."""

from __future__ import annotations

import re
from pathlib import Path

from scorer import mallocpolicy, native
from scorer.config import Settings

README = (Path(__file__).parents[2] / "README.md").read_text()


def test_configuration_table_lists_exactly_the_settings() -> None:
    """Every SCORER_* variable in the README is a setting, and every setting is in the
    README; besides them only the test suite's broker and two process-level
    switches read outside the settings: the pure-Python core (read at import, by
    scorer/native.py) and the worker's malloc policy (scorer/mallocpolicy.py)."""
    documented = set(re.findall(r"`(SCORER_[A-Z_]+)`", README.split("## Configuration")[1]))
    assert native.PURE_ENV in documented
    assert mallocpolicy.SWITCH in documented
    documented -= {"SCORER_TEST_BROKER", native.PURE_ENV, mallocpolicy.SWITCH}
    settings = {f"SCORER_{name.upper()}" for name in Settings.model_fields}
    assert documented == settings


def test_readme_keeps_its_sections() -> None:
    """The sections a newcomer and an SRE look for are all there."""
    for heading in (
        "## Quick start",
        "## The ICP format",
        "## Output",
        "## Configuration",
        "## Architecture",
        "## Performance",
        "## Development",
    ):
        assert heading in README
    assert "make demo" in README and "make test" in README
