"""Prometheus metrics of a worker, made against an injectable registry.

Children of the per-event families are bound once (`event`, `lookup`), so the
hot path pays one dict lookup and one `inc()`; consumer lag is computed when
Prometheus scrapes, not per event. No label carries an account.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from scorer.scoring.engine import DUPLICATE, EXPIRED, INVALID, SCORED, UNRESOLVED
from scorer.scoring.erasure import ERASED, SUPPRESSED
from scorer.service.metrics import build_info

STREAMS = ("visitor", "lead")
# Every reason the worker dead-letters with (scorer.errors.InvalidInputError
# reasons, plus the worker's own), exported at 0 from the start so that rates
# and alert rules see a series before the first bad record.
DLQ_REASONS = (
    "invalid_json",
    "undecodable",
    "oversize",
    "schema",
    "timestamp",
    "invalid_icp",
    "internal_error",
)
OUTCOMES = (SCORED, UNRESOLVED, DUPLICATE, INVALID, EXPIRED, ERASED, SUPPRESSED)
# Milliseconds to a minute: scoring is sub-millisecond, end to end includes
# Kafka round trips and, after a restart, a backlog.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


class LagCollector(Collector):
    """`scorer_consumer_lag{topic,partition}` at scrape time, from a callable
    returning ((topic, partition), records behind) pairs."""

    def __init__(self, lag: Callable[[], Iterable[tuple[tuple[str, int], int]]]) -> None:
        self.lag = lag

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "scorer_consumer_lag",
            "Records behind the end of each assigned input partition",
            labels=["topic", "partition"],
        )
        for (topic, partition), behind in self.lag():
            family.add_metric([topic, str(partition)], behind)
        yield family

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Without this, registering calls collect() once, before the app exists.
        yield GaugeMetricFamily("scorer_consumer_lag", "", labels=["topic", "partition"])


class EventHistogram(Collector):
    """A histogram for one observation per event, exported at scrape time.

    prometheus-client's Histogram takes a lock and walks its buckets per
    observation (about 5 µs here); this keeps plain counts (a bisect and a
    list update) on the worker's single event loop, which also serves the
    scrapes, and yields the standard histogram family when scraped.
    """

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = list(buckets)
        self.counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def collect(self) -> Iterator[HistogramMetricFamily]:
        cumulative, running = [], 0
        for bound, count in zip([*map(str, self.bounds), "+Inf"], self.counts, strict=True):
            running += count
            cumulative.append((bound, running))
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], cumulative, self.sum)
        yield family

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.events_total = Counter(
            "scorer_events_total",
            "Input events by stream and outcome",
            ["stream", "outcome"],
            registry=r,
        )
        self.ingest_to_score = EventHistogram(
            "scorer_ingest_to_score_seconds",
            "Input record timestamp to the event scored",
            LATENCY_BUCKETS,
        )
        r.register(self.ingest_to_score)
        self.end_to_end = Histogram(
            "scorer_end_to_end_seconds",
            "Input record timestamp to its hot-account record acknowledged by Kafka",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.alerts_total = Counter(
            "scorer_alerts_total", "Hot-account alerts published", ["icp", "tier"], registry=r
        )
        self.shadow_alerts_total = Counter(
            "scorer_shadow_alerts",
            "Would-be alerts of shadow ICPs (published to account-scores, never alerted)",
            ["icp", "tier"],
            registry=r,
        )
        self.suppressed_total = Counter(
            "scorer_alerts_suppressed_total",
            "Hot scores that did not alert",
            ["icp", "reason"],
            registry=r,
        )
        self.dlq_total = Counter(
            "scorer_dlq_total", "Records sent to the dead-letter topic", ["reason"], registry=r
        )
        self.lookups_total = Counter(
            "scorer_firmographic_lookups_total",
            "Firmographic lookups by result (hit, miss)",
            ["result"],
            registry=r,
        )
        self.commit_seconds = Histogram(
            "scorer_commit_seconds",
            "One task's commit: outputs, changelog and offsets (one transaction)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.commit_failures_total = Counter(
            "scorer_commit_failures_total",
            "Commits that failed and were rolled back (the work is redone)",
            registry=r,
        )
        self.fetch_errors_total = Counter(
            "scorer_fetch_errors_total",
            "Fetches the worker could not read (corrupt or undecodable record batches)",
            ["error"],
            registry=r,
        )
        self.restored_total = Counter(
            "scorer_restored_records_total",
            "Account changelog records restored into local stores",
            registry=r,
        )
        self.enforced_total = Counter(
            "scorer_enforced_processing_total",
            "Times a task applied its other inputs' records without an input it had waited "
            "SCORER_MAX_TASK_IDLE for (records then apply out of timestamp order)",
            registry=r,
        )
        self.accounts_expired_total = Counter(
            "scorer_accounts_expired_total",
            "Accounts idle past SCORER_ACCOUNT_TTL whose state left the store",
            registry=r,
        )
        self.erasures_applied_total = Counter(
            "scorer_erasures_applied_total",
            "Erasure requests applied to a task's state, by kind (a request counts once per task)",
            ["kind"],
            registry=r,
        )
        self.erased_accounts_total = Counter(
            "scorer_erased_accounts_total",
            "Accounts whose state an erasure removed or changed",
            registry=r,
        )
        self.build_info = build_info(r, "scorer_build_info", "Always 1; the version is a label")
        self.ready = Gauge("scorer_ready", "1 when /readyz answers 200", registry=r)
        self.accounts = Gauge(
            "scorer_accounts_in_memory",
            "Accounts decoded in memory in the stores of the assigned tasks (all of their "
            "accounts unless SCORER_ACCOUNTS_IN_MEMORY is exceeded)",
            registry=r,
        )
        self.event = {
            (stream, outcome): self.events_total.labels(stream, outcome)
            for stream in STREAMS
            for outcome in OUTCOMES
        }
        self.lookup = {result: self.lookups_total.labels(result) for result in ("hit", "miss")}
        self._children: dict[tuple[Counter, tuple[str, ...]], Counter] = {}
        for reason in DLQ_REASONS:
            self.dlq_total.labels(reason)

    def icp_active(self, icp: str, tiers: Iterable[str], shadow: bool = False) -> None:
        """Export an ICP's alert (or shadow alert) and suppression series at 0."""
        for tier in tiers:
            (self.shadow_alerts_total if shadow else self.alerts_total).labels(icp, tier)
        self.suppressed_total.labels(icp, "cooldown")

    def watch(
        self,
        lag: Callable[[], Iterable[tuple[tuple[str, int], int]]],
        ready: Callable[[], bool],
        accounts: Callable[[], int] = lambda: 0,
    ) -> None:
        """Scrape-time gauges from the running app."""
        self.registry.register(LagCollector(lag))
        self.ready.set_function(lambda: 1.0 if ready() else 0.0)
        self.accounts.set_function(lambda: float(accounts()))

    def alert(self, icp: str, tier: str) -> None:
        self._child(self.alerts_total, icp, tier).inc()

    def shadow_alert(self, icp: str, tier: str) -> None:
        self._child(self.shadow_alerts_total, icp, tier).inc()

    def suppressed(self, icp: str, reason: str) -> None:
        self._child(self.suppressed_total, icp, reason).inc()

    def _child(self, counter: Counter, *labels: str) -> Counter:
        """`counter.labels(*labels)`, memoised: `labels` checks and locks on
        every call, and a hot ICP alerts or is suppressed many times a second."""
        key = (counter, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = counter.labels(*labels)
        return child

    def dlq(self, reason: str) -> None:
        self.dlq_total.labels(reason).inc()
