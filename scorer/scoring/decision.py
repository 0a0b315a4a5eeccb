"""The alert decision (rule 10): first alert, cooldown on the account clock, tier upgrade."""

from __future__ import annotations

from scorer.icp.compiled import CompiledICP


def should_alert(
    icp: CompiledICP,
    tier: str | None,
    clock: float,
    last_alert_at: float | None,
    last_alert_tier: str | None,
) -> bool:
    """Whether a hot score alerts rather than being suppressed."""
    if last_alert_at is None:
        return True
    if clock - last_alert_at >= icp.cooldown:
        return True
    return _rank(icp, tier) > _rank(icp, last_alert_tier)


def _rank(icp: CompiledICP, tier: str | None) -> float:
    if tier is None:
        return float("-inf")
    # A tier the current ICP version no longer has ranks lowest.
    return icp.tier_rank.get(tier, float("-inf"))
