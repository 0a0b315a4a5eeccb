"""Routing benchmark (`make bench-route`): hot accounts to a loopback webhook
that takes 50 ms to answer, in one run, three arms side by side.

  ceiling  raw aiohttp POSTs to the receiver, 256 at a time, no Kafka: what
           the receiver and this machine can take (bench/arms/route_ceiling.py);
  naive    what a user would write first: a consumer that POSTs each alert
           and awaits it, then commits (bench/arms/naive_router.py);
  router   `scorer route` as shipped, its webhook destination at
           `concurrency: 256`, delivery log and all.

Throughput: BENCH_ROUTE_ALERTS alerts (1,000,000) are on hot-accounts before
the router starts; its rate is the receiver's count between 5 % and 95 %,
and its RSS is sampled all the way (memory flat over the run). The naive arm
runs for BENCH_ROUTE_NAIVE_SECONDS (30). Latency: alerts produced at 100/s
for BENCH_ROUTE_PACED_SECONDS (60) with the router caught up, each timed
from the moment it was produced to the receiver's answer (which includes the
receiver's own 50 ms).

Writes bench/results/<date>-route.json and prints a table; progress on stderr.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from bench.common import ROOT, TMP, log, record_goals, save_result
from bench.stream_bench import free_port, percentiles, rss_mb, start, stop, wait_ready
from scorer import synthetic

BROKER = os.environ.get("SCORER_BROKER", "kafka://127.0.0.1:9092")
BOOTSTRAP = BROKER.split("://", 1)[-1]
ALERTS = int(os.environ.get("BENCH_ROUTE_ALERTS", 1_000_000))
NAIVE_SECONDS = float(os.environ.get("BENCH_ROUTE_NAIVE_SECONDS", 30))
PACED_SECONDS = float(os.environ.get("BENCH_ROUTE_PACED_SECONDS", 60))
LATENCY = 0.05
CONCURRENCY = 256
PARTITIONS = 4
BIN = Path(sys.executable).parent


def alert(i: int, domains: list[str]) -> bytes:
    """A hot-account alert of the usual shape (about 700 bytes)."""
    domain = domains[i % len(domains)]
    return orjson.dumps(
        {
            "type": "hot_account",
            "alert_id": f"{i:032x}",
            "account": {"domain": domain, "name": domain.split(".")[0].title()},
            "icp": {"id": "midmarket-saas", "version": 3},
            "score": {"total": 78.4, "fit": 88.89, "intent": 63.2, "data_quality": 0.9},
            "tier": "B",
            "hot": True,
            "disqualified": False,
            "excluded": False,
            "reasons": [
                {
                    "field": "industry",
                    "operator": "in",
                    "matched": True,
                    "weight": 3,
                    "points": 33.33,
                    "must_have": True,
                    "value": "software",
                    "source": "crm",
                    "confidence": 0.9,
                },
                {
                    "field": "employees",
                    "operator": "between",
                    "matched": True,
                    "weight": 2,
                    "points": 22.22,
                    "must_have": False,
                    "value": 240,
                    "source": "clearbit",
                    "confidence": 0.7,
                },
            ],
            "trigger": {
                "event_id": f"e-{i}",
                "type": "page_view",
                "occurred_at": "2026-11-30T10:00:00Z",
                "points": 10,
                "path": "/pricing",
            },
            "scored_at": "2026-11-30T10:00:00.012Z",
            "sent_ms": time.time() * 1000,
        }
    )


async def produce(topic: str, count: int, domains: list[str], rate: float | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=5, acks="all")
    await producer.start()
    try:
        started = time.monotonic()
        for i in range(count):
            await producer.send(
                topic, key=domains[i % len(domains)].encode(), value=alert(i, domains)
            )
            if rate is not None:
                ahead = (i + 1) / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            elif not i % 100_000 and i:
                log(f"  {i:,} alerts produced")
        await producer.flush()
    finally:
        await producer.stop()


def stats(port: int, what: str = "stats") -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/{what}", timeout=30) as reply:
        result: dict[str, Any] = json.load(reply)
        return result


def reset(port: int) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).close()


def drain_rate(samples: list[tuple[float, int]], total: int) -> float:
    """Alerts/s between 5 % and 95 % of `total` (or over all samples if it never got there)."""
    window = [(t, n) for t, n in samples if 0.05 * total <= n <= 0.95 * total]
    if len(window) < 2:
        window = samples
    (t0, n0), (t1, n1) = window[0], window[-1]
    return (n1 - n0) / (t1 - t0) if t1 > t0 else float("nan")


async def run() -> dict[str, Any]:
    prefix = f"route{int(time.time())}-"
    topic = f"{prefix}hot-accounts"
    domains = [c["domain"] for c in synthetic.companies(50_000)]
    receiver_port = free_port()
    receiver = start(
        [sys.executable, "-m", "bench.arms.webhook_receiver", str(receiver_port), str(LATENCY)],
        dict(os.environ),
        TMP / "route-receiver.log",
    )
    result: dict[str, Any] = {"alerts": ALERTS, "receiver_latency_ms": LATENCY * 1000}
    try:
        deadline = time.monotonic() + 30
        while True:  # the receiver answers
            try:
                stats(receiver_port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        log("arm: ceiling (raw aiohttp POSTs, no Kafka)")
        ceiling = start(
            [sys.executable, "-m", "bench.arms.route_ceiling",
             f"http://127.0.0.1:{receiver_port}/hook", "20000", str(CONCURRENCY)],
            dict(os.environ), TMP / "route-ceiling.log",
        )  # fmt: skip
        ceiling.wait(timeout=600)
        result["ceiling_per_s"] = float((TMP / "route-ceiling.log").read_text().split()[-1])
        log(f"  {result['ceiling_per_s']:,.0f} POSTs/s")

        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
        await admin.start()
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
        await admin.close()
        log(f"producing {ALERTS:,} alerts")
        t = time.monotonic()
        await produce(topic, ALERTS, domains)
        log(f"  in {time.monotonic() - t:.1f} s")

        log(f"arm: naive (POST and await each alert), {NAIVE_SECONDS:.0f} s")
        naive = start(
            [sys.executable, "-m", "bench.arms.naive_router", BOOTSTRAP, topic,
             f"{prefix}naive", f"http://127.0.0.1:{receiver_port}/hook"],
            dict(os.environ), TMP / "route-naive.log",
        )  # fmt: skip
        time.sleep(3)
        t0, n0 = time.monotonic(), stats(receiver_port)["posts"]
        time.sleep(NAIVE_SECONDS)
        t1, n1 = time.monotonic(), stats(receiver_port)["posts"]
        stop(naive)
        time.sleep(1)  # its last POST, in flight when it stopped, lands before the router's count
        result["naive_per_s"] = round((n1 - n0) / (t1 - t0), 1)
        log(f"  {result['naive_per_s']:,} alerts/s")

        log("arm: scorer route")
        routes = TMP / "route-bench.yaml"
        routes.write_text(
            "destinations:\n"
            "  hook:\n"
            "    type: webhook\n"
            f"    url: http://127.0.0.1:{receiver_port}/hook\n"
            "    secret: ${BENCH_WEBHOOK_SECRET}\n"
            f"    concurrency: {CONCURRENCY}\n"
            "default: [hook]\n"
        )
        web_port = free_port()
        env = {
            **os.environ,
            "SCORER_BROKER": BROKER,
            "SCORER_TOPIC_PREFIX": prefix,
            "SCORER_TOPIC_PARTITIONS": str(PARTITIONS),
            "SCORER_ROUTER_ID": f"{prefix}router",
            "SCORER_ROUTER_WEB_PORT": str(web_port),
            "SCORER_ROUTE_MAX_AGE": "10h",
            "BENCH_WEBHOOK_SECRET": "bench-secret",
            "SCORER_LOG_LEVEL": "WARNING",
        }
        base = stats(receiver_port)["posts"]
        router = start([str(BIN / "scorer"), "route", "--routes", str(routes)], env,
                       TMP / "route-router.log")  # fmt: skip
        try:
            wait_ready(web_port, router)
            samples: list[tuple[float, int]] = []
            memory: list[tuple[int, float]] = []
            last_log = time.monotonic()
            while True:
                delivered = stats(receiver_port)["posts"] - base
                samples.append((time.monotonic(), delivered))
                memory.append((delivered, rss_mb(router.pid)[0]))
                if time.monotonic() - last_log > 30:
                    rate = drain_rate(samples[-10:], ALERTS)
                    log(f"  {delivered:,} delivered, {rate:,.0f}/s, RSS {memory[-1][1]:.0f} MB")
                    last_log = time.monotonic()
                if delivered >= ALERTS:
                    break
                if router.poll() is not None:
                    raise RuntimeError("the router exited; see bench/results/tmp/route-router.log")
                time.sleep(1)
            result["router_per_s"] = round(drain_rate(samples, ALERTS), 1)
            got = stats(receiver_port)
            result["duplicates"] = got["posts"] - base - ALERTS
            tenth = next(m for n, m in memory if n >= ALERTS // 10)
            result["rss_mb"] = {
                "at_10pct": round(tenth, 1),
                "at_end": round(memory[-1][1], 1),
                "peak": round(rss_mb(router.pid)[1], 1),
            }
            log(f"  {result['router_per_s']:,} alerts/s; RSS {result['rss_mb']}")

            log(f"paced: 100 alerts/s for {PACED_SECONDS:.0f} s")
            reset(receiver_port)
            await produce(topic, int(100 * PACED_SECONDS), domains, rate=100)
            time.sleep(3)
            result["latency_ms"] = percentiles(stats(receiver_port, "latency")["latency_ms"])
            log(f"  {result['latency_ms']}")
        finally:
            result["router_shutdown_s"] = round(stop(router), 2)
    finally:
        stop(receiver)
    return result


def report(result: dict[str, Any]) -> str:
    lat = result["latency_ms"]
    rss = result["rss_mb"]
    goals = {
        "router >= 1,000 alerts/s to the 50 ms webhook": (
            result["router_per_s"],
            result["router_per_s"] >= 1000,
        ),
        "p99 <= 150 ms + the webhook's 50 ms at 100 alerts/s": (lat["p99"], lat["p99"] <= 200),
        "memory flat (RSS at the end <= 1.2 x at 10 %)": (
            rss["at_end"] / rss["at_10pct"],
            rss["at_end"] <= 1.2 * rss["at_10pct"],
        ),
    }
    goal_lines = record_goals(result, goals)
    lines = [
        f"{'arm':<10}{'alerts/s':>12}",
        f"{'ceiling':<10}{result['ceiling_per_s']:>12,.0f}   (raw POSTs, {CONCURRENCY} in flight, "
        "no Kafka)",
        f"{'naive':<10}{result['naive_per_s']:>12,.1f}   (POST and await each, then commit)",
        f"{'router':<10}{result['router_per_s']:>12,.1f}   ({result['alerts']:,} alerts, "
        f"{result['duplicates']} repeated POSTs)",
        "",
        f"router at 100 alerts/s: p50 {lat['p50']} ms, p95 {lat['p95']} ms, p99 {lat['p99']} ms "
        f"(n={lat['n']}, produced → webhook answered, incl. its 50 ms)",
        f"router RSS: {rss['at_10pct']} MB at 10 %, {rss['at_end']} MB at the end, peak "
        f"{rss['peak']} MB; SIGTERM to exit {result['router_shutdown_s']} s",
        "",
        *goal_lines,
    ]
    return "\n".join(lines)


def main() -> int:
    TMP.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    path = save_result(asyncio.run(run()), "route", started, report)
    print(f"\n(written to {path.relative_to(ROOT)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
