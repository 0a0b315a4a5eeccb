"""A real three-node Kafka cluster (deploy/local/cluster.sh) for the tests that
need replication: a node killed or stopped under load, min.insync.replicas=2,
leaders and transaction coordinators that move, and (secure=True) SASL_SSL
logins as admin/worker/router/publisher/outsider under an authorizer that denies
what no ACL allows (admin is a super user; the others start with no ACLs).

    cluster = start_cluster(tmp_path / "cluster", secure=True)
    try:
        user, password, ca_file = cluster.credentials("worker")
        cluster.kill(cluster.leader("topic", 0))
        ...
    finally:
        cluster.stop()

Ports: cluster.sh gives node N the ports base+10(N-1)+{0 PLAINTEXT, 1 CONTROLLER,
2 SASL_SSL, 3 INTERNAL}. `start_cluster` takes a base below the kernel's
ephemeral range (where `free_port` ports and outgoing connections live), checks
that the node ports are free, and holds a lock file on that base while the
cluster lives, so that concurrent test sessions never pick the same one.
Helpers only: no tests here.
"""

from __future__ import annotations

import fcntl
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_SH = ROOT / "deploy" / "local" / "cluster.sh"
PROBE = ROOT / "deploy" / "local" / "kafka_probe.py"

NODES = (1, 2, 3)
PORT_STRIDE = 10  # as in cluster.sh: node N's block starts at base + 10 * (N - 1)
PLAINTEXT, CONTROLLER, SASL_SSL, INTERNAL = 0, 1, 2, 3  # offsets inside a node's block
PRINCIPALS = ("admin", "worker", "router", "publisher", "outsider")
BASE_RANGE = (20000, 32000)  # below Linux's default ephemeral range (32768-60999)
LOCK_DIR = Path(tempfile.gettempdir()) / "icp-scorer-cluster-ports"


def node_ports(base: int) -> list[int]:
    """Every port a cluster on `base` may listen on."""
    return [base + PORT_STRIDE * (n - 1) + k for n in NODES for k in range(4)]


def port_free(port: int) -> bool:
    """True if nothing is bound to 127.0.0.1:port (tried as a server would)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def reserve_base() -> tuple[int, IO[str]]:
    """A base port whose node ports are free, and the open lock file holding it."""
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    top = min(BASE_RANGE[1], ephemeral_low()) - PORT_STRIDE * len(NODES)
    bases = list(range(BASE_RANGE[0], top, 100))
    random.shuffle(bases)
    for base in bases:
        handle = open(LOCK_DIR / f"{base}.lock", "w")  # noqa: SIM115 - held by the Cluster
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        if all(port_free(port) for port in node_ports(base)):
            return base, handle
        handle.close()
    raise RuntimeError(f"no free block of cluster ports in {BASE_RANGE[0]}..{top}")


@dataclass
class Cluster:
    """Three KRaft nodes (broker+controller each) on 127.0.0.1, run by cluster.sh."""

    data_dir: Path
    base_port: int
    secure: bool
    env: dict[str, str] = field(repr=False)
    _lock: IO[str] | None = field(default=None, repr=False)

    def port(self, node: int, offset: int = PLAINTEXT) -> int:
        """Port of a node's listener (offset PLAINTEXT, CONTROLLER, SASL_SSL or INTERNAL)."""
        if node not in NODES:
            raise ValueError(f"no node {node}: nodes are {NODES}")
        return self.base_port + PORT_STRIDE * (node - 1) + offset

    def address(self, node: int, sasl: bool = False) -> str:
        """host:port of one node's PLAINTEXT (or SASL_SSL) client listener."""
        if sasl and not self.secure:
            raise RuntimeError("no SASL_SSL listener: the cluster was started with secure=False")
        return f"127.0.0.1:{self.port(node, SASL_SSL if sasl else PLAINTEXT)}"

    @property
    def bootstrap(self) -> str:
        """Comma-separated host:port of the nodes' PLAINTEXT listeners (anonymous,
        with no rights at all in secure mode)."""
        return ",".join(self.address(n) for n in NODES)

    @property
    def sasl_bootstrap(self) -> str:
        """Comma-separated host:port of the nodes' SASL_SSL listeners (secure mode)."""
        return ",".join(self.address(n, sasl=True) for n in NODES)

    def credentials(self, principal: str) -> tuple[str, str, str]:
        """(user, password, CA file) of a SCRAM-SHA-512 user (PRINCIPALS)."""
        if not self.secure:
            raise RuntimeError("no users: the cluster was started with secure=False")
        if principal not in PRINCIPALS:
            raise ValueError(f"no user {principal!r}: users are {PRINCIPALS}")
        password = (self.data_dir / "tls" / f"password-{principal}").read_text().strip()
        return principal, password, str(self.data_dir / "ca.pem")

    def pid(self, node: int) -> int | None:
        """The pid of a node's broker JVM, or None when it is not running."""
        try:
            pid = int((self.data_dir / f"node{node}" / "kafka.pid").read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if b"kafka.Kafka" in cmdline else None

    def running(self) -> list[int]:
        """The nodes whose JVM runs."""
        return [n for n in NODES if self.pid(n) is not None]

    def kill(self, node: int) -> float:
        """SIGKILL a node and wait until it is gone; seconds taken."""
        return self._run("kill", str(node))

    def stop_node(self, node: int) -> float:
        """Controlled shutdown of a node (SIGTERM), waiting for it to exit; seconds taken."""
        return self._run("stop", str(node))

    def start_node(self, node: int) -> float:
        """Start a node on its data; returns when it serves clients, is a live broker
        again and is back in every ISR it belongs to; seconds taken."""
        return self._run("start", str(node))

    def status(self) -> str:
        """cluster.sh status: one line per node (pid, ports, running or not)."""
        result = subprocess.run(
            ["bash", str(CLUSTER_SH), "status"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return result.stdout

    def leader(self, topic: str, partition: int, timeout: float = 30) -> int:
        """The running node leading a partition. Right after a kill the cluster still
        names the dead node until it is fenced (3 s): this waits for a live one."""
        return self._live_node(["leader", topic, str(partition)], timeout)

    def isr(self, topic: str, partition: int) -> list[int]:
        """The nodes in a partition's in-sync replica set."""
        return [int(n) for n in self._probe(["isr", topic, str(partition)]).split()]

    def transaction_coordinator(self, transactional_id: str, timeout: float = 30) -> int:
        """The running node coordinating a transactional id (waits as `leader`)."""
        return self._live_node(["coordinator", transactional_id, "transaction"], timeout)

    def group_coordinator(self, group_id: str, timeout: float = 30) -> int:
        """The running node coordinating a consumer group (waits as `leader`)."""
        return self._live_node(["coordinator", group_id, "group"], timeout)

    def stop(self) -> None:
        """Stop every node (idempotent) and free the port block."""
        try:
            subprocess.run(
                ["bash", str(CLUSTER_SH), "down"],
                env=self.env,
                capture_output=True,
                timeout=120,
                check=False,
            )
        finally:
            if self._lock is not None:
                self._lock.close()
                self._lock = None

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, *args: str) -> float:
        started = time.monotonic()
        result = subprocess.run(
            ["bash", str(CLUSTER_SH), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"cluster.sh {' '.join(args)} failed:\n{result.stderr[-3000:]}")
        return time.monotonic() - started

    def _live_node(self, args: list[str], timeout: float) -> int:
        """A node id kafka_probe answers, once it names a running node."""
        deadline = time.monotonic() + timeout
        while True:
            node = int(self._probe(args, timeout))
            if node in self.running():
                return node
            if time.monotonic() > deadline:
                raise RuntimeError(f"kafka_probe {' '.join(args)}: node {node} is not running")
            time.sleep(0.2)

    def _probe(self, args: list[str], timeout: float = 10) -> str:
        """kafka_probe.py against a running node (as the super user kafka-broker over
        mutual TLS in secure mode), retried until it answers or `timeout`."""
        deadline = time.monotonic() + timeout
        error = "no node running"
        while True:
            for node in self.running():
                if self.secure:
                    tls = self.data_dir / "tls"
                    target = [
                        "--tls",
                        str(tls / "broker.pem"),
                        str(tls / "broker.key"),
                        str(self.data_dir / "ca.pem"),
                        f"127.0.0.1:{self.port(node, INTERNAL)}",
                    ]
                else:
                    target = [self.address(node)]
                result = subprocess.run(
                    [sys.executable, str(PROBE), *target, *args],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                )
                if result.returncode == 0:
                    return result.stdout.strip()
                error = result.stderr.strip()
            if time.monotonic() > deadline:
                raise RuntimeError(f"kafka_probe {' '.join(args)}: {error}")
            time.sleep(0.2)


def start_cluster(data_dir: Path, secure: bool = False) -> Cluster:
    """Start a three-node cluster with its data in data_dir (formatted on first use)
    on a reserved block of ports; returns when every node serves clients, all three
    are live brokers and the 3-voter quorum has a leader."""
    attempts = 3
    for attempt in range(attempts):
        base, lock = reserve_base()
        env = {
            **os.environ,
            "KAFKA_CLUSTER_DIR": str(data_dir),
            "KAFKA_CLUSTER_PORT": str(base),
            "KAFKA_CLUSTER_SECURE": "1" if secure else "0",
        }
        cluster = Cluster(data_dir, base, secure, env, lock)
        try:
            cluster._run("up")
        except RuntimeError as exc:
            cluster.stop()
            # a port taken between our check and the start: try another block
            if "already in use" in str(exc) and attempt + 1 < attempts:
                continue
            raise RuntimeError(f"could not start the test cluster: {exc}") from None
        return cluster
    raise AssertionError("unreachable")
