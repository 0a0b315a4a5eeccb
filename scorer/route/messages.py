"""What each destination is sent, built from an alert document (pure).

Slack gets Block Kit within its documented limits (header text 150
characters, section text 3,000, at most 50 blocks); CRMs get field values;
webhooks get the alert bytes as they are, signed. No message carries an
email: alerts never hold one, and the trigger shows the event type, page path
or the lead's persona and title.
"""

from __future__ import annotations

import hashlib
import hmac
import string
from collections.abc import Mapping
from typing import Any

HEADER_LIMIT = 150
SECTION_LIMIT = 3000
TOP_REASONS = 5


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The webhook signature header's value: HMAC-SHA256 over ``<timestamp>.<body>``."""
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "v1=" + digest.hexdigest()


def account_label(alert: Mapping[str, Any]) -> str:
    account = alert.get("account", {})
    domain = str(account.get("domain", "?"))
    name = account.get("name")
    return f"{name} ({domain})" if name else domain


def trigger_text(alert: Mapping[str, Any]) -> str:
    """The event that made the account hot: type and page path, or persona and title."""
    trigger = alert.get("trigger", {})
    text = str(trigger.get("type", "event"))
    if trigger.get("path"):
        text += f" {trigger['path']}"
    lead = alert.get("lead")
    if lead:
        who = " · ".join(str(lead[k]) for k in ("persona", "title") if lead.get(k))
        if who:
            text += f" by {who}"
    return text


def reason_lines(alert: Mapping[str, Any], limit: int = TOP_REASONS) -> list[str]:
    """The matched criteria, heaviest first."""
    reasons = [r for r in alert.get("reasons", []) if r.get("matched")]
    reasons.sort(key=lambda r: -float(r.get("weight", 0)))
    lines = []
    for reason in reasons[:limit]:
        value = reason.get("value")
        shown = ", ".join(map(str, value)) if isinstance(value, list) else value
        weight = reason.get("weight")
        weight = f"{weight:g}" if isinstance(weight, int | float) else weight
        lines.append(f"{reason.get('field')} = {shown} (weight {weight})")
    return lines


def score_line(alert: Mapping[str, Any]) -> str:
    score = alert.get("score", {})
    return f"total {score.get('total')} · fit {score.get('fit')} · intent {score.get('intent')}"


def account_link(template: str | None, domain: str, company: Mapping[str, Any] | None) -> str:
    """The template filled from the company record; "" when a field it names is unknown."""
    if not template:
        return ""
    values: dict[str, Any] = {"domain": domain, **(company or {})}
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name]
        if any(values.get(name) in (None, "") for name in fields):
            return ""
        return template.format(**values)
    except (KeyError, IndexError, ValueError):
        return ""


def slack_blocks(alert: Mapping[str, Any], link: str = "") -> tuple[str, list[dict[str, Any]]]:
    """(fallback text, blocks) for chat.postMessage or an incoming webhook."""
    tier = alert.get("tier") or "-"
    icp = alert.get("icp", {})
    title = _clip(f"Hot account: {account_label(alert)} · tier {tier}", HEADER_LIMIT)
    summary = f"*{icp.get('id')}* v{icp.get('version')} · {score_line(alert)}"
    reasons = "\n".join(f"• {line}" for line in reason_lines(alert)) or "• no matched criteria"
    context = f"Trigger: {trigger_text(alert)} · {alert.get('trigger', {}).get('occurred_at', '')}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _clip(summary, SECTION_LIMIT)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _clip(reasons, SECTION_LIMIT)}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(context, 2000)}]},
    ]
    if link:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open in CRM"},
                        "url": link,
                    }
                ],
            }
        )
    return title, blocks


def task_text(alert: Mapping[str, Any]) -> tuple[str, str]:
    """(subject, body) of the CRM task for the account's owner."""
    subject = _clip(f"Hot account: {account_label(alert)} (tier {alert.get('tier')})", 255)
    body = "\n".join(
        [
            f"ICP {alert.get('icp', {}).get('id')}: {score_line(alert)}",
            f"Trigger: {trigger_text(alert)}",
            "Why:",
            *(f"- {line}" for line in reason_lines(alert)),
            f"Alert {alert.get('alert_id')}",
        ]
    )
    return subject, body
