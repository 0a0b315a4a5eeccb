"""The demo's website: synthetic visitors reported to `scorer collect` through
Segment's own Python SDK (`segment-analytics-python`, the `demo` extra), as a
site would report them.

Visitors stay anonymous for a few pages until a `group` call names their
company (`synthetic.segment_calls`), so the demo's accounts get their intent
through identity stitching; leads arrive as `identify` calls with a work email.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from scorer import synthetic
from scorer.errors import ConfigError


def require_sdk() -> Any:
    """Segment's client class, or a `ConfigError` saying how to install it."""
    try:
        from segment.analytics.client import Client
    except ImportError:
        raise ConfigError(
            "scorer demo sends its traffic with Segment's SDK, which is not installed: "
            "pip install 'icp-scorer[demo]' (make demo installs it)"
        ) from None
    return Client


def sdk_client(write_key: str, host: str) -> Any:
    """Segment's client, pointed at the collector: batches of up to 100 calls,
    gzip, retried on 503 and connection errors as the SDK always does."""
    client = require_sdk()
    return client(write_key, host=host, gzip=True, upload_interval=0.2, upload_size=100)


def send(client: Any, call: dict[str, Any]) -> None:
    """One call through the SDK's own method for its type."""
    ids = {
        "anonymous_id": call.get("anonymousId"),
        "user_id": call.get("userId"),
        "message_id": call["messageId"],
        "timestamp": datetime.fromisoformat(call["timestamp"]),
    }
    kind = call["type"]
    if kind == "page":
        client.page(properties=call["properties"], context=call["context"], **ids)
    elif kind == "track":
        client.track(event=call["event"], properties=call["properties"], **ids)
    elif kind == "identify":
        client.identify(traits=call["traits"], **ids)
    else:
        client.group(group_id=call["groupId"], traits=call["traits"], **ids)


async def website(
    write_key: str, host: str, domains: list[str], rate: float, seed: int | None = None
) -> None:
    """Send `rate` calls a second, with event time = now, until cancelled; then
    flush what the SDK still holds."""
    client = sdk_client(write_key, host)
    started = time.monotonic()
    events = synthetic.events(
        10**9,
        domains,
        seed=seed if seed is not None else int(time.time()),
        start=datetime.now(UTC),
        mean_gap_s=1.0 / rate,
    )
    try:
        for count, call in enumerate(synthetic.segment_calls(events), start=1):
            send(client, call)
            ahead = count / rate - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
    finally:
        await asyncio.to_thread(client.shutdown)


def collector_counts(metrics_text: str) -> dict[str, float]:
    """What the collector's /metrics says it took: calls by type, visits by
    stitch outcome (stitched: kept, then credited after a link; forwarded),
    and `unlinked`, the events of visitors still waiting for a link."""
    by_label = {"scorer_collect_calls": "type", "scorer_collect_stitch_events": "outcome"}
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "scorer_collect_unresolved_kept":
                counts["unlinked"] = sample.value
            elif family.name in by_label and sample.name.endswith("_total"):
                key = sample.labels[by_label[family.name]]
                counts[key] = counts.get(key, 0.0) + sample.value
    return counts
