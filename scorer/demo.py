"""`scorer demo`: hot accounts arriving live, on one machine.

Against the broker in SCORER_BROKER (`make demo` starts a local one first): it
publishes the sample ICPs, loads a few thousand synthetic companies, starts a
collector (`scorer collect`), a worker and a router (`scorer route`: the live
feed page and a signed webhook to a receiver on loopback, here in this
process). A synthetic website then reports its visitors through Segment's own
Python SDK to the collector at a modest rate: visitors stay anonymous until a
`group` call names their company, which credits their earlier pages
(identity stitching); leads arrive as `identify` calls. The demo prints each
hot-account alert with its tier and top reasons, and each webhook delivery,
until Ctrl-C or DEMO_SECONDS; then what the collector took and stitched, and
it stops the processes it started. Each run uses fresh topics (prefix
demo-<time>-) so earlier runs do not leak in.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Coroutine
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from aiokafka import TopicPartition

from scorer import demo_site, synthetic
from scorer.config import Settings
from scorer.display import format_alert
from scorer.errors import ConfigError
from scorer.icp.loader import loads_icp
from scorer.kafka.client import client_options, partitions_of, reader
from scorer.kafka.publish import icp_value, producer
from scorer.kafka.topics import Topics, ensure_topics
from scorer.route.messages import sign

SAMPLE_COMPANIES = 3000
EVENTS_PER_SECOND = 100
SAMPLES = ("midmarket-saas.yaml", "enterprise-fintech.yaml")


def say(message: str) -> None:
    print(f"demo: {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def run_demo(args: argparse.Namespace) -> int:
    seconds = (
        args.seconds if args.seconds is not None else float(os.environ.get("DEMO_SECONDS") or 0)
    )
    try:
        demo_site.require_sdk()
    except ConfigError as exc:
        say(str(exc))
        return 2
    run = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    base = Settings()
    settings = base.model_copy(
        update={
            "app_id": f"icp-demo-{run}",
            "collect_id": f"icp-demo-collect-{run}",
            "topic_prefix": f"demo-{run}-",
            "store": "memory",
            # The demo's throwaway topics on a laptop's single broker: one copy,
            # unless SCORER_REPLICATION_FACTOR says otherwise.
            "replication_factor": base.replication_factor
            if "SCORER_REPLICATION_FACTOR" in os.environ
            else 1,
            "web_port": free_port(),
            "collect_web_port": free_port(),
            "router_web_port": base.router_web_port
            if port_free(base.router_web_port)
            else free_port(),
        }
    )
    workdir = Path(base.data_dir)
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"demo-worker-{run}.log"
    say(f"broker {settings.broker}, topics demo-{run}-*")
    try:
        companies = asyncio.run(prepare(settings))
    except Exception as exc:  # the broker is the usual suspect: say so plainly
        say(f"cannot reach Kafka at {settings.broker} ({exc}); `make kafka-up` starts one")
        return 1
    secret = secrets.token_hex(16)
    hook_port = free_port()
    routes = workdir / f"demo-routes-{run}.yaml"
    routes.write_text(DEMO_ROUTES.format(port=hook_port))
    env = {**os.environ, **worker_env(settings)}
    router_env = {
        **env,
        "SCORER_ROUTER_ID": f"icp-demo-router-{run}",
        "SCORER_ROUTER_WEB_PORT": str(settings.router_web_port),
        "DEMO_WEBHOOK_SECRET": secret,
    }
    write_key = secrets.token_hex(12)
    collect_env = {
        **env,
        "SCORER_COLLECT_ID": settings.collect_id,
        "SCORER_COLLECT_WEB_PORT": str(settings.collect_web_port),
        "SCORER_COLLECT_WRITE_KEYS": f"website={write_key}",
    }
    collect_log = workdir / f"demo-collect-{run}.log"
    router_log = workdir / f"demo-router-{run}.log"
    processes = [
        spawn(["worker"], env, log_path),
        spawn(["collect"], collect_env, collect_log),
        spawn(["route", "--routes", str(routes)], router_env, router_log),
    ]
    worker, collector, router = processes
    collect_url = f"http://127.0.0.1:{settings.collect_web_port}"
    try:
        ready = wait_ready(settings.web_port, worker, timeout=90)
        say(f"worker ready in {ready:.1f} s (log: {log_path})")
        wait_ready(settings.collect_web_port, collector, timeout=90)
        say(
            f"collector ready on {collect_url} (log: {collect_log}): a synthetic website "
            f"sends it {EVENTS_PER_SECOND} Segment calls/s over {len(companies) // 2:,} "
            "companies with Segment's Python SDK; its visitors stay anonymous until a "
            "`group` call names their company. Ctrl-C stops."
        )
        wait_ready(settings.router_web_port, router, timeout=90)
        say(
            f"router ready (log: {router_log}): open "
            f"http://127.0.0.1:{settings.router_web_port}/feed to watch hot accounts arrive; "
            f"its webhook posts to a receiver on 127.0.0.1:{hook_port}"
        )
        website = demo_site.website(
            write_key, collect_url, companies[: len(companies) // 2], EVENTS_PER_SECOND
        )
        asyncio.run(stream(settings, website, seconds, Receiver(hook_port, secret.encode())))
        say_collected(collect_url)
    except KeyboardInterrupt:
        pass
    except TimeoutError as exc:
        say(f"{exc}; see {log_path}, {collect_log} and {router_log}")
        return 1
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        say("collector, worker and router stopped")
    return 0


DEMO_ROUTES = """\
# Written by `scorer demo`: every alert to the feed page and to a signed
# webhook whose receiver runs inside the demo.
destinations:
  feed: {{type: feed}}
  receiver:
    type: webhook
    url: http://127.0.0.1:{port}/hooks/icp
    secret: ${{DEMO_WEBHOOK_SECRET}}
default: [feed, receiver]
"""


class Receiver:
    """The webhook's far end: checks the signature, keeps one delivery per
    Idempotency-Key, and says what arrived."""

    def __init__(self, port: int, secret: bytes) -> None:
        self.port = port
        self.secret = secret
        self.keys: set[str] = set()

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        stamp = request.headers.get("X-Scorer-Timestamp", "0")
        expected = sign(self.secret, int(stamp), body)
        if not hmac.compare_digest(expected, request.headers.get("X-Scorer-Signature", "")):
            return web.Response(status=401, text="bad signature")
        key = request.headers.get("Idempotency-Key", "")
        if key not in self.keys:
            self.keys.add(key)
            alert = orjson.loads(body)
            print(
                f"  webhook: {alert['account']['domain']} tier {alert['tier']} received, "
                f"signature verified ({len(self.keys)} so far)",
                flush=True,
            )
        return web.Response(text="ok")

    async def run(self) -> None:
        app = web.Application()
        app.add_routes([web.post("/hooks/icp", self.receive)])
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()


def spawn(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """`scorer <command>` in a process of its own, its output to `log_path`."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "scorer.cli", *command],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def worker_env(settings: Settings) -> dict[str, str]:
    return {
        "SCORER_BROKER": settings.broker,
        "SCORER_APP_ID": settings.app_id,
        "SCORER_TOPIC_PREFIX": settings.topic_prefix,
        "SCORER_STORE": "memory",
        "SCORER_REPLICATION_FACTOR": str(settings.replication_factor),
        "SCORER_WEB_PORT": str(settings.web_port),
        "SCORER_LOG_LEVEL": "WARNING",
    }


async def prepare(settings: Settings) -> list[str]:
    """Topics, sample ICPs and companies; returns the company domains."""
    topics = Topics.from_settings(settings)
    await ensure_topics(settings, topics)
    client = producer(settings)
    await client.start()
    domains = []
    try:
        folder = resources.files("scorer") / "samples"
        for name in SAMPLES:
            document = loads_icp(folder.joinpath(name).read_text(), source=name)
            await client.send(topics.icp, key=document.id.encode(), value=icp_value(document))
            say(f"published ICP {document.id} v{document.version}")
        for record in synthetic.companies(SAMPLE_COMPANIES):
            domains.append(record["domain"])
            await client.send(
                topics.firmographics, key=record["domain"].encode(), value=orjson.dumps(record)
            )
        await client.flush()
        say(f"loaded {len(domains):,} synthetic companies")
    finally:
        await client.stop()
    return domains


def wait_ready(port: int, worker: subprocess.Popen[bytes], timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if worker.poll() is not None:
            raise TimeoutError(f"the worker exited with status {worker.returncode}")
        url = f"http://127.0.0.1:{port}/readyz"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:
            if response.status == 200:
                return time.monotonic() - started
        time.sleep(0.2)
    raise TimeoutError(f"the worker was not ready after {timeout:.0f} s")


async def stream(
    settings: Settings, website: Coroutine[Any, Any, None], seconds: float, receiver: Receiver
) -> None:
    topics = Topics.from_settings(settings)
    tasks = [
        asyncio.create_task(website),
        asyncio.create_task(show_alerts(settings, topics)),
        asyncio.create_task(receiver.run()),
    ]
    try:
        # Until the time is up (or for ever); a task that fails ends the demo with its error.
        done, _ = await asyncio.wait(
            tasks, timeout=seconds or None, return_when=asyncio.FIRST_EXCEPTION
        )
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def say_collected(url: str) -> None:
    """What the collector took and stitched, from its /metrics."""
    with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:
        counts = demo_site.collector_counts(r.read().decode())
        calls = sum(counts.get(kind, 0) for kind in ("page", "track", "identify", "group"))
        say(
            f"collector: {calls:,.0f} calls accepted ({counts.get('page', 0):,.0f} pages, "
            f"{counts.get('group', 0):,.0f} groups, {counts.get('identify', 0):,.0f} "
            f"identifies); {counts.get('stitched', 0):,.0f} anonymous visits credited to their "
            f"company by a later call, {counts.get('forwarded', 0):,.0f} from visitors already "
            f"linked, {counts.get('unlinked', 0):,.0f} events of visitors still unlinked"
        )


async def show_alerts(settings: Settings, topics: Topics) -> None:
    consumer = reader(settings)
    await consumer.start()
    colour = sys.stdout.isatty()
    try:
        parts = await partitions_of(client_options(settings), topics.hot)
        consumer.assign([TopicPartition(topics.hot, p) for p in sorted(parts)])
        async for record in consumer:
            print(format_alert(orjson.loads(record.value), colour), flush=True)
    finally:
        await consumer.stop()
