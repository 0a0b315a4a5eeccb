"""A real Kafka broker and real `scorer worker` processes for the tests.

The session starts its own broker (deploy/local/kafka.sh on free ports, data in
a temporary folder) unless SCORER_TEST_BROKER names one. A test that needs a
broker and cannot get one fails: it never skips.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from scorer.kafka.client import partitions_of

ROOT = Path(__file__).resolve().parents[1]
KAFKA_SH = ROOT / "deploy" / "local" / "kafka.sh"
SCORER = str(Path(sys.executable).parent / "scorer")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Broker:
    bootstrap: str
    env: dict[str, str] = field(default_factory=dict)
    started_here: bool = False
    sasl_ssl: str | None = None  # host:port of the SASL_SSL listener, when started with one

    def secrets(self) -> tuple[str, str, str]:
        """(user, password, CA file) of the SASL_SSL listener."""
        tls = Path(self.env["KAFKA_DATA_DIR"]) / "tls"
        user = (tls / "sasl-user").read_text().strip()
        return user, (tls / "sasl-password").read_text().strip(), str(tls / "ca.pem")

    def restart(self) -> float:
        """Stop the broker and start it again on the same ports and data; seconds down."""
        assert self.started_here, "only a broker this session started can be restarted"
        started = time.monotonic()
        self.stop()
        result = subprocess.run(
            ["bash", str(KAFKA_SH), "up"], env=self.env, capture_output=True, text=True, timeout=300
        )
        if result.returncode != 0:
            raise RuntimeError(f"could not restart the test broker:\n{result.stderr[-3000:]}")
        return time.monotonic() - started

    def stop(self) -> None:
        if self.started_here:
            subprocess.run(
                ["bash", str(KAFKA_SH), "down"],
                env=self.env,
                check=False,
                capture_output=True,
                timeout=60,
            )


def start_broker(data_dir: Path, own: bool = False, sasl_ssl: bool = False) -> Broker:
    """The session's broker; `own=True` always starts a private one (to stop it);
    `sasl_ssl=True` adds a SASL_SSL (SCRAM-SHA-512) listener to a private one."""
    given = os.environ.get("SCORER_TEST_BROKER")
    if given and not own and not sasl_ssl:
        return Broker(given.split("://", 1)[-1])
    port, controller = free_port(), free_port()
    env = {
        **os.environ,
        "KAFKA_PORT": str(port),
        "KAFKA_CONTROLLER_PORT": str(controller),
        "KAFKA_DATA_DIR": str(data_dir),
    }
    secure = None
    if sasl_ssl:
        secure_port = free_port()
        env["KAFKA_SASL_SSL_PORT"] = str(secure_port)
        secure = f"127.0.0.1:{secure_port}"
    result = subprocess.run(
        ["bash", str(KAFKA_SH), "up"], env=env, capture_output=True, text=True, timeout=300
    )
    if result.returncode != 0:
        raise RuntimeError(f"could not start the test broker:\n{result.stderr[-3000:]}")
    return Broker(f"127.0.0.1:{port}", env, started_here=True, sasl_ssl=secure)


@dataclass
class Deployment:
    """One isolated scorer deployment on the shared broker: its own app id and topics."""

    broker: Broker
    tmp: Path
    name: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:8]}")
    workers: list[Worker] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return f"{self.name}-"

    def topic(self, name: str) -> str:
        return self.prefix + name

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "SCORER_BROKER": f"kafka://{self.broker.bootstrap}",
            "SCORER_APP_ID": self.name,
            "SCORER_TOPIC_PREFIX": self.prefix,
            "SCORER_TOPIC_PARTITIONS": "4",
            "SCORER_REPLICATION_FACTOR": "1",  # one broker (the cluster tests set 3)
            "SCORER_STORE": "memory",
            "SCORER_LOG_LEVEL": "INFO",
            **self.extra_env,
            **extra,
        }

    def run(self, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [SCORER, *map(str, args)], env=self.env(), capture_output=True, text=True, timeout=120
        )
        if check and result.returncode != 0:
            raise AssertionError(f"scorer {args} failed:\n{result.stderr[-3000:]}")
        return result

    def run_worker_to_exit(self, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """A worker expected to stop by itself (a refused login, a bad deployment)."""
        return subprocess.run(
            [SCORER, "worker"],
            env=self.env(SCORER_WEB_PORT="0", SCORER_DATA_DIR=str(self.tmp / f"{self.name}-x")),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start_worker(self, **extra: str) -> Worker:
        index = len(self.workers)
        defaults = {"SCORER_DATA_DIR": str(self.tmp / f"{self.name}-data{index}")}
        return self._start(["worker"], "SCORER_WEB_PORT", {**defaults, **extra})

    def start_router(self, routes: Path, **extra: str) -> Worker:
        """`scorer route` with this deployment's settings and its own group id."""
        defaults = {"SCORER_ROUTER_ID": f"{self.name}-router"}
        return self._start(
            ["route", "--routes", str(routes)], "SCORER_ROUTER_WEB_PORT", {**defaults, **extra}
        )

    def start_collector(self, *args: str | Path, **extra: str) -> Worker:
        """`scorer collect` with this deployment's settings and its own group id."""
        defaults = {"SCORER_COLLECT_ID": f"{self.name}-collect"}
        return self._start(
            ["collect", *map(str, args)], "SCORER_COLLECT_WEB_PORT", {**defaults, **extra}
        )

    def _start(self, args: list[str], port_variable: str, extra: dict[str, str]) -> Worker:
        index = len(self.workers)
        port = free_port()
        log_path = self.tmp / f"{self.name}-{args[0]}{index}.log"
        env = self.env(**{port_variable: str(port), **extra})
        handle = open(log_path, "wb")  # noqa: SIM115 - closed in Worker.stop
        process = subprocess.Popen(
            [SCORER, *args],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        worker = Worker(process, port, log_path, handle, time.monotonic())
        self.workers.append(worker)
        return worker

    async def consume(self, name: str, **options: Any) -> list[Any]:
        """Records of this deployment's topic `name` (see `consume`)."""
        return await consume(self.broker.bootstrap, self.topic(name), **options)

    async def documents(self, name: str, **options: Any) -> list[dict[str, Any]]:
        return documents(await self.consume(name, **options))

    async def produce(
        self, records: Iterable[tuple[str, bytes | None, bytes | None]], **options: Any
    ) -> list[tuple[int, int]]:
        return await produce(self.broker.bootstrap, records, **options)

    def stop_all(self) -> None:
        for worker in self.workers:
            worker.stop()


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    log_handle: Any
    started: float

    def status(self, path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
            body: bytes = r.read()
            return body

    def wait_ready(self, timeout: float = 60) -> float:
        """Seconds from start until /readyz answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited ({self.process.returncode}):\n{self.log()}")
            if self.status("/readyz") == 200:
                return time.monotonic() - self.started
            time.sleep(0.1)
        raise AssertionError(f"worker not ready after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        """The log's tail, after the worker's own warnings and errors from
        before it (a client's tracebacks can fill any tail)."""
        text = self.log_path.read_text(errors="replace")
        tail = text[-6000:]
        ours = [
            line
            for line in text[:-6000].splitlines()
            if " scorer." in line and (" WARNING " in line or " ERROR " in line)
        ]
        return "\n".join([*ours[:40], "...", tail]) if ours else tail

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def terminate(self, timeout: float = 30) -> float:
        """SIGTERM; seconds until the process exited."""
        start = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return time.monotonic() - start

    def stop(self) -> None:
        self.terminate()
        self.log_handle.close()


async def produce(
    bootstrap: str,
    records: Iterable[tuple[str, bytes | None, bytes | None]],
    headers: list[tuple[str, bytes]] | None = None,
    timestamps: Iterable[int] | None = None,
) -> list[tuple[int, int]]:
    """(topic, key, value) records, all acknowledged; their (partition, offset).
    `timestamps`: each record's, in ms (else the time of its send)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    count = 0
    stamps = iter(timestamps) if timestamps is not None else None
    try:
        await producer.start()
        futures = []
        for topic, key, value in records:
            stamp = next(stamps) if stamps is not None else None
            futures.append(
                await producer.send(
                    topic, key=key, value=value, headers=headers, timestamp_ms=stamp
                )
            )
            count += 1
        await producer.flush()
        metadata = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    assert count == len(metadata)
    return [(m.partition, m.offset) for m in metadata]


async def consume(
    bootstrap: str, topic: str, until: Any = None, timeout: float = 60, idle: float | None = None
) -> list[Any]:
    """Every record of a topic from the beginning, until `until(records)` holds,
    `idle` seconds pass without a record, or `timeout` (then AssertionError)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",  # as every downstream consumer should
    )
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        partitions = await partitions_of({"bootstrap_servers": bootstrap}, topic, timeout)
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        last = time.monotonic()
        while True:
            if until is not None and until(records):
                return records
            now = time.monotonic()
            if idle is not None and now - last > idle:
                return records
            if now > deadline:
                if until is None:
                    return records
                raise AssertionError(
                    f"{topic}: condition not met in {timeout} s ({len(records)} records)"
                )
            batch = await consumer.getmany(timeout_ms=200)
            for items in batch.values():
                records.extend(items)
                last = time.monotonic()
    finally:
        await consumer.stop()


def documents(records: list[Any]) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in records]
