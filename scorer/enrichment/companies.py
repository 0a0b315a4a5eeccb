"""The company table every service keeps: firmographic records by domain.

The worker (for scoring) and the router (for account-field rules) both read
the compacted firmographics topic whole into one of these. Records are kept
as their checked JSON bytes (about 0.5 KB each) and decoded only when read,
so 100,000 companies do not cost 100,000 decoded dicts. A record is checked
once, on the way in: a bad one raises `InvalidInputError` (its reason and
detail go to the dead-letter queue) and leaves the table as it was.
"""

from __future__ import annotations

from typing import Any

import orjson

from scorer.enrichment.domains import normalise_domain
from scorer.enrichment.firmographics import LazyCompany, check_record
from scorer.errors import InvalidInputError


class CompanyTable:
    """Company records by normalised domain, as checked JSON bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        # Never rebound: the worker's `Firmographics` reads this dict object per event.
        self.records: dict[bytes, bytes] = {}

    def __len__(self) -> int:
        return len(self.records)

    def apply(self, key: bytes | None, value: bytes | None) -> str:
        """One record of the firmographics topic: a checked upsert, or a delete
        (null value). Returns the domain it changed."""
        try:
            domain = normalise_domain(key.decode()) if key else ""
        except UnicodeDecodeError:
            domain = ""
        if not domain or key is None or domain.encode() != key:
            raise InvalidInputError("schema", "key must be the normalised company domain")
        if value is None:
            self.records.pop(key, None)
            return domain
        if len(value) > self.max_bytes:
            raise InvalidInputError("oversize", f"{len(value)} bytes")
        try:
            document = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise InvalidInputError("invalid_json", "not valid UTF-8 JSON") from None
        checked = check_record(document)
        if checked["domain"] != domain:
            raise InvalidInputError("schema", "domain differs from the key")
        # Keep the bytes as they came unless checking changed the record (the
        # domain written in another form): no re-encoding per company.
        same = checked["domain"] == document.get("domain")
        self.records[key] = value if same else orjson.dumps(checked)
        return domain

    def raw(self, key: bytes) -> bytes | None:
        """The record's bytes under a normalised domain key, or None."""
        return self.records.get(key)

    def lazy(self, key: bytes) -> LazyCompany | None:
        """The record, not yet decoded (decoded on first field read)."""
        raw = self.records.get(key)
        return None if raw is None else LazyCompany(raw)

    def get(self, domain: str) -> dict[str, Any] | None:
        """The decoded record of a domain in any written form, or None."""
        if not domain:
            return None
        raw = self.records.get(normalise_domain(domain).encode())
        if raw is None:
            return None
        found = orjson.loads(raw)  # checked on the way in
        return found if isinstance(found, dict) else None
