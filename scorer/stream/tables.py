"""The worker's two tables of compacted input: firmographics and ICPs.

Both are read whole by every worker (`scorer.kafka.follower.Follower`) and
applied here. Companies live in the shared `CompanyTable` as checked bytes;
each account's state keeps its company's fit (a few numbers) with the record's
bytes, so most events read nothing more, and a changed record (new bytes) has
its fit computed again.
"""

from __future__ import annotations

import logging
from typing import Any

from scorer.enrichment.companies import CompanyTable
from scorer.errors import InvalidICPError, InvalidInputError
from scorer.icp.loader import loads_icp
from scorer.kafka.follower import DeadLetter
from scorer.scoring.engine import Engine
from scorer.scoring.intake import CompanySource, epoch
from scorer.stream.metrics import Metrics

log = logging.getLogger("scorer.worker")
# Company changes remembered by domain (`Firmographics.unchanged`): past this many,
# accounts last read before the oldest look their record up again.
CHANGE_LOG = 8192


class Firmographics(CompanySource):
    """The company table, as the engine and the metrics see it. An account's
    company goes to the engine as the record's bytes, which are also the token
    of its kept fit: most events make no object for it (the engine decodes it
    when a fit is computed or a score built)."""

    def __init__(self, metrics: Metrics, max_bytes: int) -> None:
        self.metrics = metrics
        self.table = CompanyTable(max_bytes)
        self.records = self.table.records  # the table's own dict, read per event
        self.hits = self.misses = 0  # since the last flush_counts
        # Which records changed lately, so that an account whose fit is kept need
        # not look its record up (`unchanged`): `applied` counts the changes, and
        # `changed` holds each domain changed since change number `logged_from`,
        # with the number of its last change (cleared when CHANGE_LOG long).
        self.applied = self.logged_from = epoch()  # counts apart from other sources'
        self.changed: dict[str, int] = {}

    def company(self, domain: str) -> tuple[bytes | None, bytes | None]:
        """The account's company record as JSON bytes (None: every field unknown),
        and the same bytes as the token that keeps the engine's fit of it valid
        while the record is unchanged (`scorer.scoring.intake.CompanySource`)."""
        raw: bytes | None = self.records.get(domain.encode())
        if raw is None:
            self.misses += 1
            return None, None
        self.hits += 1
        return raw, raw

    def changes(self) -> int:
        return self.applied

    def unchanged(self, domain: str, since: int, record: bytes | None) -> bool:
        """`record`, read at change count `since`, is still the domain's record
        (`scorer.scoring.intake.CompanySource`); counted as a look-up if so."""
        if since != self.applied:  # the table has changed since: has this record?
            if since < self.logged_from or since > self.applied:
                return False  # not known: left the log, or another source's count
            last = self.changed.get(domain)
            if last is not None and last > since:
                return False
        if record is None:
            self.misses += 1
        else:
            self.hits += 1
        return True

    def flush_counts(self) -> None:
        """Lookups since the last call into the Prometheus counters."""
        if self.hits:
            self.metrics.lookup["hit"].inc(self.hits)
        if self.misses:
            self.metrics.lookup["miss"].inc(self.misses)
        self.hits = self.misses = 0

    def apply(self, record: Any, dead_letter: DeadLetter) -> None:
        """One firmographics record: a checked upsert, or a delete."""
        try:
            domain = self.table.apply(record.key, record.value)
        except InvalidInputError as exc:
            dead_letter(record, exc.reason, exc.detail)
            return
        if len(self.changed) >= CHANGE_LOG:
            self.changed = {}
            self.logged_from = self.applied  # every change after this one is logged
        self.applied += 1
        self.changed[domain] = self.applied


class Icps:
    """ICP documents from the icp-profiles topic into the engine."""

    def __init__(self, engine: Engine, metrics: Metrics) -> None:
        self.engine = engine
        self.metrics = metrics

    def apply(self, record: Any, dead_letter: DeadLetter) -> None:
        icp_id = record.key.decode(errors="replace") if record.key else ""
        if record.value is None:
            if self.engine.remove_icp(icp_id):
                log.info("ICP %s removed", icp_id)
            return
        try:
            document = loads_icp(record.value, source=f"icp-profiles key {icp_id}")
        except InvalidICPError as exc:
            log.error("invalid ICP ignored: %s", exc)
            dead_letter(record, "invalid_icp", "; ".join(exc.problems))
            return
        if document.id != icp_id:
            dead_letter(record, "schema", "key must be the ICP id")
            return
        if self.engine.set_icp(document):
            log.info("ICP %s v%d %s", document.id, document.version, document.mode)
            self.metrics.icp_active(document.id, document.tiers, document.mode == "shadow")
