#!/usr/bin/env python3
"""Ask one Kafka broker about the cluster, in the Kafka protocol, with the
standard library only (deploy/local/cluster.sh runs it with any python3 3.9+;
tests/cluster_harness.py runs it too).

    kafka_probe.py [--tls CERT KEY CA] HOST:PORT COMMAND [ARGS]

    api                          exit 0 if the broker answers ApiVersions
    brokers                      the ids of the live (unfenced) brokers, one line
    leader TOPIC PARTITION       the id of the partition's leader (-1: none)
    isr TOPIC PARTITION          the ids of the partition's in-sync replicas
    behind NODE                  "TOPIC:PARTITION" of every partition NODE is a
                                 replica of but not in the ISR of (empty: none)
    coordinator KEY [group|transaction]
                                 the id of the coordinator of a group or a
                                 transactional id

--tls connects with TLS and a client certificate (the cluster's INTERNAL
listener in secure mode, whose principal is a super user); without it the
connection is plaintext. Exit status 0 on an answer, 1 on a Kafka error or no
answer (message on stderr), 2 on bad usage.
"""

from __future__ import annotations

import socket
import ssl
import struct
import sys

CLIENT_ID = b"kafka-probe"
METADATA, FIND_COORDINATOR, API_VERSIONS = 3, 10, 18


class Reader:
    """Big-endian reader over one response body."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> int:
        (value,) = struct.unpack_from(">" + fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return int(value)

    def string(self) -> str | None:
        size = self.take("h")
        if size < 0:
            return None
        value = self.data[self.pos : self.pos + size].decode()
        self.pos += size
        return value

    def ints(self) -> list[int]:
        return [self.take("i") for _ in range(max(self.take("i"), 0))]


def connect(host: str, port: int, tls: list[str] | None) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=3)
    sock.settimeout(5)
    if tls is None:
        return sock
    cert, key, ca = tls
    context = ssl.create_default_context(cafile=ca)
    context.load_cert_chain(cert, key)
    return context.wrap_socket(sock, server_hostname=host)


def call(sock: socket.socket, api: int, version: int, body: bytes) -> Reader:
    correlation = 1
    header = struct.pack(">hhih", api, version, correlation, len(CLIENT_ID)) + CLIENT_ID
    request = header + body
    sock.sendall(struct.pack(">i", len(request)) + request)
    data = b""
    while len(data) < 4 or len(data) < 4 + struct.unpack(">i", data[:4])[0]:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    reader = Reader(data[4:])
    if reader.take("i") != correlation:
        raise ConnectionError("unexpected correlation id")
    return reader


Partitions = dict[tuple[str, int], tuple[int, list[int], list[int]]]


def metadata(sock: socket.socket, topics: list[str] | None) -> tuple[list[int], Partitions]:
    """Metadata v8 for some topics (None: all): the live broker ids, and
    (topic, partition) -> (leader, replicas, isr). A topic error is raised."""
    if topics is None:
        body = struct.pack(">i", -1)
    else:
        body = struct.pack(">i", len(topics))
        for name in topics:
            body += struct.pack(">h", len(name.encode())) + name.encode()
    body += struct.pack(">???", False, False, False)
    reader = call(sock, METADATA, 8, body)
    reader.take("i")  # throttle_time_ms
    brokers = []
    for _ in range(reader.take("i")):
        brokers.append(reader.take("i"))
        reader.string()  # host
        reader.take("i")  # port
        reader.string()  # rack
    reader.string()  # cluster_id
    reader.take("i")  # controller_id
    out: Partitions = {}
    for _ in range(reader.take("i")):
        error = reader.take("h")
        name = reader.string() or ""
        reader.take("?")  # is_internal
        count = reader.take("i")
        if error:
            raise LookupError(f"topic {name}: Kafka error code {error}")
        for _ in range(count):
            reader.take("h")  # partition error (e.g. LEADER_NOT_AVAILABLE): keep the row
            index = reader.take("i")
            leader = reader.take("i")
            reader.take("i")  # leader_epoch
            replicas, isr = reader.ints(), reader.ints()
            reader.ints()  # offline_replicas
            out[(name, index)] = (leader, replicas, isr)
        reader.take("i")  # topic_authorized_operations
    return sorted(brokers), out


def coordinator(sock: socket.socket, key: str, kind: str) -> int:
    key_type = {"group": 0, "transaction": 1}[kind]
    body = struct.pack(">h", len(key.encode())) + key.encode() + struct.pack(">b", key_type)
    reader = call(sock, FIND_COORDINATOR, 2, body)
    reader.take("i")  # throttle_time_ms
    error = reader.take("h")
    message = reader.string()
    node = reader.take("i")
    if error:
        raise LookupError(f"FindCoordinator {kind} {key}: Kafka error code {error} {message or ''}")
    return node


def run(sock: socket.socket, command: str, args: list[str]) -> str:
    if command == "api":
        reader = call(sock, API_VERSIONS, 0, b"")
        if reader.take("h") != 0:
            raise LookupError("ApiVersions error")
        return ""
    if command == "brokers":
        return " ".join(map(str, metadata(sock, [])[0]))
    if command in ("leader", "isr"):
        topic, partition = args[0], int(args[1])
        row = metadata(sock, [topic])[1].get((topic, partition))
        if row is None:
            raise LookupError(f"no partition {topic}-{partition}")
        return str(row[0]) if command == "leader" else " ".join(map(str, row[2]))
    if command == "behind":
        node = int(args[0])
        rows = metadata(sock, None)[1]
        return " ".join(
            f"{topic}:{index}"
            for (topic, index), (_, replicas, isr) in sorted(rows.items())
            if node in replicas and node not in isr
        )
    if command == "coordinator":
        return str(coordinator(sock, args[0], args[1] if len(args) > 1 else "group"))
    raise ValueError(command)


USAGE = {"api": 0, "brokers": 0, "leader": 2, "isr": 2, "behind": 1, "coordinator": 1}


def main(argv: list[str]) -> int:
    tls = None
    if argv[:1] == ["--tls"]:
        tls, argv = argv[1:4], argv[4:]
    if len(argv) < 2 or argv[1] not in USAGE or len(argv) - 2 < USAGE[argv[1]]:
        print(__doc__, file=sys.stderr)
        return 2
    host, _, port = argv[0].rpartition(":")
    try:
        with connect(host, int(port), tls) as sock:
            out = run(sock, argv[1], argv[2:])
    except (OSError, LookupError, struct.error) as exc:
        print(f"kafka_probe: {argv[0]} {argv[1]}: {exc}", file=sys.stderr)
        return 1
    if out:
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
