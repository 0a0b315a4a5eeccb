"""Shadow ICPs: scored like any other, never alerting; would-be alerts marked `shadow`."""

from __future__ import annotations

import io

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scorer.errors import InvalidICPError
from scorer.models import HotAccountEvent
from scorer.offline import EMIT_ALERTS, score_lines
from scorer.scoring import Engine
from tests.conftest import make_icp

ACME = {"domain": "acme.example", "industry": "software", "employees": 200, "country": "US"}


def test_mode_is_active_by_default_and_checked() -> None:
    """`mode` defaults to active; shadow is accepted; anything else names the key."""
    assert make_icp().mode == "active"
    assert make_icp(mode="shadow").mode == "shadow"
    with pytest.raises(InvalidICPError, match=r"mode: Input should be 'active' or 'shadow'"):
        make_icp(mode="draft")


def run(engine: Engine, lines: list[bytes]) -> list[dict[str, object]]:
    out = io.BytesIO()
    score_lines(lines, engine, {"acme.example": ACME}, out, EMIT_ALERTS, clock=lambda: 0.0)
    return [orjson.loads(line) for line in out.getvalue().splitlines()]


EVENT_TYPES = st.sampled_from(["page_view", "demo_request", "lead_created", "form_submit"])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(EVENT_TYPES, st.integers(0, 30 * 24)), min_size=1, max_size=30))
def test_a_shadow_icp_would_alert_exactly_when_it_would_as_active(
    events: list[tuple[str, int]],
) -> None:
    """Beside an active ICP, the shadow copy's would-be alerts are the active ICP's alerts
    (same decisions, cooldowns and tiers), marked shadow, and the active ones are unmarked."""
    lines = []
    for i, (kind, hours) in enumerate(events):
        doc = {
            "event_id": f"e-{i}",
            "type": kind,
            "occurred_at": f"2026-11-{1 + hours // 24:02d}T{hours % 24:02d}:00:00Z",
        }
        if kind == "lead_created":
            doc.update({"lead_id": f"L-{i}", "email": "pat@acme.example", "title": "VP Sales"})
        else:
            doc["company_domain"] = "acme.example"
        lines.append(orjson.dumps(doc))
    docs = run(Engine([make_icp(), make_icp(id="saas-next", mode="shadow")]), lines)
    active = [d for d in docs if d["icp"]["id"] == "saas"]  # type: ignore[index]
    shadow = [d for d in docs if d["icp"]["id"] == "saas-next"]  # type: ignore[index]
    assert all("shadow" not in d for d in active)
    assert all(d["shadow"] is True for d in shadow)

    def decisions(found: list[dict[str, object]]) -> list[tuple[object, ...]]:
        return [(d["trigger"]["event_id"], d["tier"], d["score"]) for d in found]  # type: ignore[index]

    assert decisions(shadow) == decisions(active)
    for doc in shadow:
        assert HotAccountEvent.model_validate(doc).shadow


def test_a_demo_request_makes_a_shadow_would_be_alert_not_an_alert() -> None:
    """A shadow ICP alone: the hot event gives one document, marked shadow."""
    line = orjson.dumps(
        {"event_id": "e-1", "type": "demo_request", "occurred_at": "2026-11-20T10:00:00Z",
         "company_domain": "acme.example"}
    )  # fmt: skip
    docs = run(Engine([make_icp(mode="shadow")]), [line])
    assert len(docs) == 1 and docs[0]["shadow"] is True and docs[0]["type"] == "hot_account"
