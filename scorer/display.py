"""Terminal rendering of hot-account documents, for the demo and for people."""

from __future__ import annotations

from typing import Any

_TIER_COLOURS = {"A": "\033[1;32m", "B": "\033[1;33m", "C": "\033[1;36m"}
_RESET = "\033[0m"


def top_reasons(doc: dict[str, Any], count: int = 3) -> list[str]:
    """The matched criteria that earned the most fit points, as short phrases."""
    matched = [r for r in doc["reasons"] if r["matched"]]
    matched.sort(key=lambda r: -r["points"])
    out = []
    for reason in matched[:count]:
        value = reason["value"]
        if isinstance(value, list):
            value = ", ".join(map(str, value[:3]))
        out.append(f"{reason['field']}={value} (+{reason['points']:g})")
    return out


def format_alert(doc: dict[str, Any], colour: bool = False) -> str:
    """One line per alert: tier, account, ICP, scores, trigger and top reasons."""
    tier = doc["tier"] or "-"
    tier_text = f"{_TIER_COLOURS.get(tier, '')}{tier}{_RESET}" if colour else tier
    score = doc["score"]
    account = doc["account"]
    name = f" ({account['name']})" if account.get("name") else ""
    trigger = doc["trigger"]
    lead = doc.get("lead")
    who = f" by {lead['persona']}" if lead and lead.get("persona") else ""
    return (
        f"[{tier_text}] {account['domain']}{name}  icp={doc['icp']['id']}  "
        f"total={score['total']:.1f} fit={score['fit']:.1f} intent={score['intent']:.1f}  "
        f"after {trigger['type']}{who}  because " + "; ".join(top_reasons(doc))
    )
