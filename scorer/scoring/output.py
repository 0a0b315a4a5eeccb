"""Output documents (hot_account / account_score) built from a `Score`.

Plain dicts serialised with orjson: the shape is `scorer.models.HotAccountEvent`
and `AccountScore`, and a test validates built documents against them.
"""

from __future__ import annotations

import hashlib
from typing import Any

from scorer.scoring.engine import Score
from scorer.timefmt import format_epoch

HOT_ACCOUNT = "hot_account"
ACCOUNT_SCORE = "account_score"


def alert_id(icp_id: str, account: str, event_id: str) -> str:
    """Deterministic id of the score an event caused for an account and ICP."""
    key = f"{icp_id}\x1f{account}\x1f{event_id}".encode()
    return hashlib.blake2b(key, digest_size=16).hexdigest()


def reasons(score: Score) -> list[dict[str, Any]]:
    """Every fit criterion with its value, source and the fit points it earned."""
    total_weight = score.icp.total_weight
    return [
        {
            "field": r.criterion.field,
            "operator": r.criterion.operator,
            "matched": r.matched,
            "weight": r.criterion.weight,
            "points": round(100.0 * r.criterion.weight / total_weight, 2) if r.matched else 0.0,
            "must_have": r.criterion.must_have,
            "value": r.value,
            "source": r.source,
            "confidence": r.confidence,
        }
        for r in score.explain()
    ]


def build_document(score: Score, kind: str, scored_at: float) -> dict[str, Any]:
    """The hot_account or account_score document for a score."""
    event = score.event
    company = score.company
    name = company.get("name") if company is not None else None
    doc: dict[str, Any] = {
        "type": kind,
        "alert_id": alert_id(score.icp.id, score.account, event.event_id),
        "account": {"domain": score.account, "name": name if isinstance(name, str) else None},
        "icp": {"id": score.icp.id, "version": score.icp.version},
        "score": {
            "total": round(score.total, 2),
            "fit": round(score.fit, 2),
            "intent": round(score.intent, 2),
            "data_quality": round(score.quality, 2),
        },
        "tier": score.tier,
        "hot": score.hot,
        "disqualified": score.disqualified,
        "excluded": score.excluded,
        "reasons": reasons(score),
        "trigger": {
            "event_id": event.event_id,
            "type": event.type,
            "occurred_at": event.occurred_at,
            "points": round(score.points, 2),
        },
        "scored_at": format_epoch(scored_at),
    }
    if score.icp.shadow:
        doc["shadow"] = True
    if event.path is not None:
        doc["trigger"]["path"] = event.path
    if event.lead_id is not None:
        doc["lead"] = {"lead_id": event.lead_id, "title": event.title, "persona": score.persona}
    return doc
