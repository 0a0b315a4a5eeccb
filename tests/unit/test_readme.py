"""The README stays true: its configuration table matches the settings, its sections exist."""

from __future__ import annotations

import re
from pathlib import Path

from scorer.config import Settings

README = (Path(__file__).parents[2] / "README.md").read_text()


def test_configuration_table_lists_exactly_the_settings() -> None:
    """Every SCORER_* variable in the README is a setting, and every setting is in the README."""
    documented = set(re.findall(r"`(SCORER_[A-Z_]+)`", README.split("## Configuration")[1]))
    documented = {d for d in documented if d != "SCORER_TEST_BROKER"}
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
