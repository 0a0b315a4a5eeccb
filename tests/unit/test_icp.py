"""ICP documents: YAML and JSON loading, defaults, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import yaml

from scorer.errors import InvalidICPError
from scorer.icp import load_icp, loads_icp
from tests.conftest import BASE_ICP

SAMPLES = Path(__file__).parents[2] / "scorer" / "samples"


def problems_of(doc: object) -> list[str]:
    with pytest.raises(InvalidICPError) as caught:
        loads_icp(orjson.dumps(doc))
    return caught.value.problems


def test_yaml_and_json_load_to_the_same_document() -> None:
    """The same ICP written as YAML and as JSON gives equal documents."""
    assert loads_icp(yaml.safe_dump(BASE_ICP)) == loads_icp(orjson.dumps(BASE_ICP))


@pytest.mark.parametrize("path", sorted(SAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_bundled_samples_are_valid(path: Path) -> None:
    """Every bundled sample ICP validates."""
    assert load_icp(path).version >= 1


def test_defaults() -> None:
    """Only id, version and fit are required; the rest have documented defaults."""
    icp = loads_icp("id: x\nversion: 1\nfit: [{field: industry, eq: saas}]\n")
    assert icp.fit[0].weight == 1.0 and icp.fit[0].must_have is False
    assert (icp.weights.fit, icp.weights.intent) == (0.5, 0.5)
    assert icp.tiers == {"A": 80.0, "B": 65.0, "C": 50.0}
    assert (icp.hot.min_total, icp.hot.min_fit, icp.hot.cooldown) == (65.0, 0.0, 86400.0)
    assert icp.intent.half_life == 7 * 86400.0 and icp.intent.signals == []


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"fit": [{"field": "industry", "eq": "x", "weigth": 2}]}, "fit[0].weigth: unknown key"),
        (
            {"fit": [{"field": "employees", "between": [10, 5]}]},
            "fit[0]: between: expected [low, high]",
        ),
        ({"fit": [{"field": "employees"}]}, "fit[0]: needs exactly one operator"),
        ({"fit": [{"field": "a", "eq": 1, "gte": 2}]}, "found eq, gte"),
        ({"fit": [{"field": "a", "in": []}]}, "fit[0].in:"),
        ({"fit": [{"field": "a", "eq": 1, "weight": 0}]}, "fit[0].weight:"),
        ({"fit": []}, "fit:"),
        ({"id": "Bad Id"}, "id:"),
        ({"version": 0}, "version:"),
        ({"intent": {"half_life": "7 weeks"}}, "intent.half_life: expected a duration"),
        ({"intent": {"half_life": 7}}, "intent.half_life: expected a duration with a unit"),
        ({"fit": [{"field": "country", "in": ["US", False]}]}, "fit[0].in: true/false in a list"),
        ({"hot": {"cooldown": "soon"}}, "hot.cooldown: expected a duration"),
        ({"tiers": {"A": 120}}, "tiers.A: Input should be less than or equal to 100"),
        (
            {"weights": {"fit": 0, "intent": 0}},
            "weights: fit and intent weights cannot both be zero",
        ),
        ({"personas": [{"name": "x", "title_any": [], "points": 1}]}, "personas[0].title_any:"),
        (
            {"intent": {"signals": [{"type": "page_view", "points": -1}]}},
            "intent.signals[0].points:",
        ),
        ({"colour": "blue"}, "colour: unknown key"),
    ],
)
def test_invalid_icp_names_the_offending_key(patch: dict, expected: str) -> None:
    """Each invalid ICP is rejected with a message that starts at the offending key."""
    found = problems_of({**BASE_ICP, **patch})
    assert any(expected in problem for problem in found), found


def test_not_a_mapping_and_bad_syntax() -> None:
    """A list, or text that is neither YAML nor JSON, is rejected with a clear message."""
    with pytest.raises(InvalidICPError, match="expected a mapping"):
        loads_icp("- a\n- b\n")
    with pytest.raises(InvalidICPError, match=r"not valid YAML or JSON at line \d"):
        loads_icp("id: x\nfit: [unclosed\n")


def test_unreadable_file(tmp_path: Path) -> None:
    """A missing file is an InvalidICPError naming the file, not a traceback."""
    with pytest.raises(InvalidICPError, match="cannot read"):
        load_icp(tmp_path / "missing.yaml")


def test_published_form_revalidates_to_the_same_document() -> None:
    """`scorer icp publish` writes canonical JSON that loads back to an equal ICP."""
    from scorer.kafka.publish import icp_value

    for path in sorted(SAMPLES.glob("*.yaml")):
        document = load_icp(path)
        assert loads_icp(icp_value(document)) == document
