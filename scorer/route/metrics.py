"""Prometheus metrics of the router, made against an injectable registry.

Labels are destination names from routes.yaml and fixed outcome words; no
label carries an account.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from scorer.service.metrics import build_info

DELIVERY_OUTCOMES = ("delivered", "dlq", "skipped")
DLQ_REASONS = ("rejected", "max_attempts", "max_age", "error")
ALERT_OUTCOMES = ("routed", "unrouted", "invalid", "erased")
# A webhook answers in tens of milliseconds; a rate-limited Slack channel or a
# destination that is down turns that into minutes.
ROUTE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class RouteMetrics:
    def __init__(self, registry: CollectorRegistry, destinations: Iterable[str]) -> None:
        names = list(destinations)
        self.deliveries = Counter(
            "scorer_route_deliveries",
            "Alert deliveries by destination and outcome (skipped: recorded as delivered before)",
            ["destination", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "scorer_route_latency_seconds",
            "Alert record timestamp to delivered, by destination",
            ["destination"],
            buckets=ROUTE_BUCKETS,
            registry=registry,
        )
        self.retries = Counter(
            "scorer_route_retries",
            "Delivery attempts that failed and were tried again",
            ["destination"],
            registry=registry,
        )
        self.queue_depth = Gauge(
            "scorer_route_queue_depth",
            "Alerts waiting for or in delivery, by destination",
            ["destination"],
            registry=registry,
        )
        self.dlq = Counter(
            "scorer_route_dlq",
            "Deliveries given up and written to the route DLQ, by destination and reason",
            ["destination", "reason"],
            registry=registry,
        )
        self.alerts = Counter(
            "scorer_route_alerts",
            "Alerts read from hot-accounts, by outcome",
            ["outcome"],
            registry=registry,
        )
        self.lag = Gauge(
            "scorer_route_consumer_lag",
            "Alerts on hot-accounts not yet read by this router",
            registry=registry,
        )
        build_info(registry, "scorer_route_build_info", "Router version")
        # Children bound once (and so exported at 0): the per-alert and per-delivery
        # paths pay a dict lookup, not a labels() call.
        self.delivery = {
            (name, outcome): self.deliveries.labels(destination=name, outcome=outcome)
            for name in names
            for outcome in DELIVERY_OUTCOMES
        }
        self.delivered_after = {name: self.latency.labels(destination=name) for name in names}
        self.alert = {outcome: self.alerts.labels(outcome=outcome) for outcome in ALERT_OUTCOMES}
        for name in names:
            for reason in DLQ_REASONS:
                self.dlq.labels(destination=name, reason=reason)
            self.retries.labels(destination=name)

    def depth(self, name: str, measure: Callable[[], float]) -> None:
        self.queue_depth.labels(destination=name).set_function(measure)
