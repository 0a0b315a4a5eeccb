"""Prometheus metrics of the collector, made against an injectable registry.

Labels are source names (from SCORER_COLLECT_WRITE_KEYS, `hubspot`, or
`unknown` for a request no key admits), call types and fixed reason words;
no label carries a visitor, an account or an email.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from scorer.service.metrics import build_info

UNKNOWN_SOURCE = "unknown"
HUBSPOT_SOURCE = "hubspot"
REQUEST_OUTCOMES = ("accepted", "rejected", "unavailable")
STITCH_OUTCOMES = ("forwarded", "kept", "stitched", "expired", "evicted")
# A request waits for the broker's acknowledgement (acks=all): milliseconds
# when it is well, up to SCORER_COLLECT_ACK_TIMEOUT when it is not.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class CollectMetrics:
    def __init__(self, registry: CollectorRegistry, sources: Iterable[str]) -> None:
        names = [*sources, HUBSPOT_SOURCE]
        self.requests = Counter(
            "scorer_collect_requests",
            "HTTP requests to the intake endpoints, by source and outcome (unavailable: "
            "answered 503, the broker did not acknowledge)",
            ["source", "outcome"],
            registry=registry,
        )
        self.calls = Counter(
            "scorer_collect_calls",
            "Calls accepted (acknowledged by the broker), by source and type (page, track, "
            "identify, group, screen, alias, contact)",
            ["source", "type"],
            registry=registry,
        )
        self.rejected = Counter(
            "scorer_collect_rejected",
            "Requests answered 400 or 401, by source and reason",
            ["source", "reason"],
            registry=registry,
        )
        self.ignored = Counter(
            "scorer_collect_ignored",
            "Accepted calls that make no event, by reason (unmapped_event, no_email, "
            "free_mail, no_company, screen, alias)",
            ["reason"],
            registry=registry,
        )
        self.produce_latency = Histogram(
            "scorer_collect_produce_seconds",
            "A request's records sent until the broker acknowledged them all",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.request_latency = Histogram(
            "scorer_collect_request_seconds",
            "An intake request, received to answered",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.last_call = Gauge(
            "scorer_collect_last_call_timestamp_seconds",
            "When a source's last call was accepted (the process start until its first)",
            ["source"],
            registry=registry,
        )
        self.stitch = Counter(
            "scorer_collect_stitch_events",
            "Visitor events through the stitch stage, by outcome: forwarded (visitor "
            "already linked), kept (not yet), stitched (kept, then credited), expired "
            "(kept past SCORER_COLLECT_KEEP_MAX_AGE), evicted (past "
            "SCORER_COLLECT_KEEP_MAX_COUNT)",
            ["outcome"],
            registry=registry,
        )
        self.links = Counter(
            "scorer_collect_links",
            "Identities linked to a company by identify or group",
            registry=registry,
        )
        self.kept = Gauge(
            "scorer_collect_unresolved_kept",
            "Events of visitors not yet linked, kept by this process's stitch stage",
            registry=registry,
        )
        self.identities = Gauge(
            "scorer_collect_identities",
            "Visitor identities held by this process's stitch stage",
            registry=registry,
        )
        self.ready = Gauge("scorer_collect_ready", "1 when /readyz answers 200", registry=registry)
        build_info(registry, "scorer_collect_build_info", "Collector version")
        started = time.time()
        for name in names:
            self.last_call.labels(source=name).set(started)
            for outcome in REQUEST_OUTCOMES:
                self.requests.labels(source=name, outcome=outcome)
        for outcome in STITCH_OUTCOMES:
            self.stitch.labels(outcome=outcome)
        self.requests.labels(source=UNKNOWN_SOURCE, outcome="rejected")
        self.rejected.labels(source=UNKNOWN_SOURCE, reason="unauthorized")

    def gauges(self, kept: Callable[[], float], identities: Callable[[], float]) -> None:
        self.kept.set_function(kept)
        self.identities.set_function(identities)
