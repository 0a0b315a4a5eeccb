"""The ICP lifecycle: derive an ICP from CRM outcomes, backtest it, review it (pure + reports).

Nothing here talks to Kafka: the inputs are CRM exports, firmographic records
and an event history on disk, and the replay runs through the same `Engine`
as `scorer score`.
"""

from scorer.lifecycle.crm import Columns, Opportunity, read_opportunities

__all__ = ["Columns", "Opportunity", "read_opportunities"]
