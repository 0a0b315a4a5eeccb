"""Log output: human text by default, one JSON object per line with
`SCORER_LOG_FORMAT=json` (for log shippers). Log calls in the scorer never
carry payload text; the JSON form adds nothing but structure.

A broker outage is logged as state changes (lost, still retrying every
`NOTE_EVERY_SECONDS`, back after T s), not as one line per reconnect attempt
from the Kafka client.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any

import orjson


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "message"}` plus `exc` when there is a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


NOTE_EVERY_SECONDS = 30.0
# A success within this long of the client's last connection error does not
# mean the broker is back: in a cluster the other nodes answer while one is
# down, and "back" would flap with every commit.
QUIET_SECONDS = 2.0
# What aiokafka logs, per attempt, while a broker cannot be reached (the
# fetcher's NodeNotReadyError: ten lines a second per partition a dead node led).
_CONNECTION_TROUBLE = (
    "Unable connect to",
    "Unable to connect",
    "Connect call failed",
    "Unable to request metadata",
    "Unable to update metadata",
    "KafkaConnectionError",
    "NodeNotReadyError",
)


class BrokerOutage(logging.Filter):
    """Folds the Kafka client's per-attempt connection errors into state changes."""

    def __init__(self) -> None:
        super().__init__()
        self.down_since: float | None = None
        self.last_note = 0.0
        self.suppressed = 0
        self.last_error: str | None = None  # the client's last word on why
        self.last_error_at = 0.0
        self.log = logging.getLogger("scorer.broker")

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("aiokafka") or record.levelno < logging.WARNING:
            return True
        message = record.getMessage()
        if not any(text in message for text in _CONNECTION_TROUBLE):
            return True
        self.last_error = message
        now = self.last_error_at = time.monotonic()
        if self.down_since is None:
            self.down_since = self.last_note = now
            self.suppressed = 0
            record.name, record.levelno, record.levelname = "scorer.broker", 30, "WARNING"
            record.msg = "broker connection lost (%s); retrying, a line every %.0f s until back"
            record.args = (message[:160], NOTE_EVERY_SECONDS)
            return True
        self.suppressed += 1
        if now - self.last_note >= NOTE_EVERY_SECONDS:
            self.last_note = now
            record.name, record.levelno, record.levelname = "scorer.broker", 30, "WARNING"
            record.msg = "broker still unreachable after %.0f s (%d client errors folded)"
            record.args = (now - self.down_since, self.suppressed)
            return True
        return False

    def healthy(self) -> None:
        """The broker answered: log how long it was gone (once the client has
        been quiet for QUIET_SECONDS)."""
        if self.down_since is not None and time.monotonic() - self.last_error_at >= QUIET_SECONDS:
            self.log.warning(
                "broker back after %.1f s (%d client errors folded)",
                time.monotonic() - self.down_since,
                self.suppressed,
            )
            self.down_since = None


def broker_problem(outage: BrokerOutage, error: BaseException) -> str:
    """One line on why the broker could not be used, from what the client said
    (authentication failures included); never a credential."""
    said = outage.last_error or str(error)
    if "Authentication failed" in said or "SaslAuthentication" in said:
        return f"authentication failed: {said.split(': ', 1)[-1]}"
    return said


def configure_logging(level: str, fmt: str) -> BrokerOutage:
    """Root logging to stderr, text or JSON; returns the outage filter."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    outage = BrokerOutage()
    handler.addFilter(outage)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    return outage
