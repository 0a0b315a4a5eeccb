"""Scoring rules: fit, intent decay, tiers, the alert decision (pure)."""

from scorer.scoring.engine import DUPLICATE, EXPIRED, SCORED, UNRESOLVED, Engine, Score
from scorer.scoring.output import ACCOUNT_SCORE, HOT_ACCOUNT, alert_id, build_document
from scorer.scoring.state import AccountState, IcpState

__all__ = [
    "ACCOUNT_SCORE",
    "DUPLICATE",
    "EXPIRED",
    "HOT_ACCOUNT",
    "SCORED",
    "UNRESOLVED",
    "AccountState",
    "Engine",
    "IcpState",
    "Score",
    "alert_id",
    "build_document",
]
