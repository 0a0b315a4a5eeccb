"""What the services' /metrics show while the cluster's nodes fail and restart:
every second, each worker's and the router's exposition is scraped over HTTP,
and a fault's window is summed up from the samples inside it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.integration.streaming import samples, total

SCRAPE_SECONDS = 1.0


@dataclass
class Scrape:
    at: float
    service: str
    metrics: dict[str, list[tuple[dict[str, str], float]]]


@dataclass
class MetricsWatch:
    """Scrapes /metrics of named services (name -> port) until stopped."""

    ports: dict[str, int]
    scrapes: list[Scrape] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as client:
            while not self.stopping.is_set():
                for name, port in self.ports.items():
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                        async with client.get(f"http://127.0.0.1:{port}/metrics") as reply:
                            text = await reply.text()
                        self.scrapes.append(Scrape(time.monotonic(), name, samples(text)))
                await asyncio.sleep(SCRAPE_SECONDS)

    def summary(self, start: float, end: float) -> dict[str, Any]:
        """The window's story in numbers: commits rolled back, most records behind,
        seconds some worker was not ready, end-to-end and commit p99 of what finished
        in it, and the router's most alerts behind."""
        inside = [s for s in self.scrapes if start <= s.at < end]
        before = {s.service: s for s in self.scrapes if s.at < start}  # the last one each
        after = {s.service: s for s in inside}
        workers = [name for name in self.ports if name != "router"]
        not_ready = sum(
            SCRAPE_SECONDS
            for s in inside
            if s.service in workers and total(s.metrics, "scorer_ready") < 1
        )
        return {
            "commit failures": sum(
                delta(before, after, name, "scorer_commit_failures_total") for name in workers
            ),
            "max lag": max(
                (total(s.metrics, "scorer_consumer_lag") for s in inside if s.service in workers),
                default=0,
            ),
            "not ready s": not_ready,
            "e2e p99 s": quantile(before, after, workers, "scorer_end_to_end_seconds", 0.99),
            "commit p99 s": quantile(before, after, workers, "scorer_commit_seconds", 0.99),
            "router max lag": max(
                (
                    total(s.metrics, "scorer_route_consumer_lag")
                    for s in inside
                    if s.service == "router"
                ),
                default=0,
            ),
        }


def delta(before: dict[str, Scrape], after: dict[str, Scrape], service: str, name: str) -> float:
    if service not in after:
        return 0.0
    start = total(before[service].metrics, name) if service in before else 0.0
    return total(after[service].metrics, name) - start


def quantile(
    before: dict[str, Scrape], after: dict[str, Scrape], services: list[str], name: str, q: float
) -> float | None:
    """A histogram's q-quantile over the window (the upper bound of its bucket), summed
    over services: what Prometheus' histogram_quantile(increase(...)) would say."""
    buckets: dict[float, float] = {}
    for service in services:
        if service not in after:
            continue
        for labels, value in after[service].metrics.get(name + "_bucket", []):
            bound = float(labels["le"])
            buckets[bound] = buckets.get(bound, 0.0) + value
        if service in before:
            for labels, value in before[service].metrics.get(name + "_bucket", []):
                bound = float(labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) - value
    if not buckets or max(buckets.values()) <= 0:
        return None
    count = buckets[max(buckets)]
    for bound in sorted(buckets):
        if buckets[bound] >= q * count:
            return bound
    return None
