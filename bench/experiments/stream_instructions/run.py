"""Experiment: instructions an event in the worker's per-record path, no Kafka.

Not product code (README.md beside this file). `make bench` times the worker
on a shared, noisy machine; this counts what the code does, which does not
move with the machine:

    python -m bench.experiments.stream_instructions.run [EVENTS]

runs `Processor.process` over the first EVENTS (default 100,000) of the bench's
events into four tasks with memory-backed stores, preloaded as after a restore,
with a commit's `prepare` every 5,000 events, under `valgrind --tool=callgrind`;
and again with the same set-up (the events decoded into records) and none
processed. The difference over EVENTS is printed: the
instructions an event of decoding, the engine, the store, the outputs queued
and the changelog records written, without the Kafka clients or the event loop.
`... --inside COMPANIES EVENTS_FILE N PROCESS` is a run callgrind counts
(PROCESS 0 or 1). About 4 minutes here for 100,000 events.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path
from typing import Any

import orjson
from aiokafka import TopicPartition

from bench.common import ICPS, TMP
from bench.paced import prepare_paced
from bench.stream_bench import make_data
from scorer import native
from scorer.config import Settings
from scorer.icp.loader import load_icp
from scorer.kafka.topics import Topics
from scorer.scoring.engine import Engine
from scorer.stream.backing import MemoryBacking
from scorer.stream.metrics import Metrics
from scorer.stream.processor import Processor
from scorer.stream.store import AccountStore
from scorer.stream.tables import Firmographics
from scorer.stream.tasks import Task

PARTITIONS = 4
BATCH = 100  # records of one partition per Processor.process call, as the worker's slices
COMMIT_EVERY = 5_000
PREFIX = "instructions-"
Record = namedtuple("Record", "topic partition key value offset timestamp headers")


def records(events_path: Path, count: int) -> list[Any]:
    """The bench's first `count` events as consumer records, on the partitions the
    default partitioner gives their keys."""
    with events_path.open("rb") as events:
        lines = [events.readline().rstrip(b"\n") for _ in range(count)]
    return [
        Record(topic, partition, key, value, offset, 1_700_000_000_000, ())
        for offset, (topic, partition, key, value, _) in enumerate(prepare_paced(PREFIX, lines))
    ]


def inside(companies_path: Path, events_path: Path, count: int, process: bool) -> None:
    """The counted run: set-up, then (`process`) `count` records through the processor."""
    settings = Settings(topic_prefix=PREFIX, topic_partitions=PARTITIONS)
    topics = Topics.from_settings(settings)
    engine = Engine(dedup_window=settings.dedup_window, account_ttl=settings.account_ttl)
    for path in ICPS:
        engine.set_icp(load_icp(path))
    metrics = Metrics()
    firmographics = Firmographics(metrics, settings.max_message_bytes)
    with companies_path.open("rb") as lines:
        for line in lines:  # checked when the bench made them: straight into the table
            record = line.rstrip(b"\n")
            firmographics.table.records[orjson.loads(record)["domain"].encode()] = record
    decoded = records(events_path, count)  # in both runs: their difference is the processing alone
    batch = decoded if process else []
    processor = Processor(settings, topics, engine, firmographics, metrics, PARTITIONS)
    tasks = []
    for partition in range(PARTITIONS):
        store = AccountStore(MemoryBacking(), settings.dedup_window, 86_400.0, 1_000_000)
        store.preload()  # empty: every account is in memory, as after a restore
        changelog = TopicPartition(topics.changelog, partition)
        tasks.append(Task(partition, [], changelog, store, None))
    pending: list[list[Any]] = [[] for _ in range(PARTITIONS)]
    for done, record in enumerate(batch, 1):
        waiting = pending[record.partition]
        waiting.append(record)
        if len(waiting) == BATCH:
            processor.process(tasks[record.partition], waiting)
            pending[record.partition] = []
        if done % COMMIT_EVERY == 0:
            for task in tasks:
                task.store.prepare()
                task.store.committed(done)
                task.outbox.clear()
    for partition, waiting in enumerate(pending):
        if waiting:
            processor.process(tasks[partition], waiting)


def counted(paths: tuple[Path, Path], count: int, process: bool) -> subprocess.Popen[str]:
    """callgrind over `inside(*paths, count, process)`, started (`collected` reads it)."""
    out = TMP / f"stream-instructions-{count}-{int(process)}.callgrind"
    return subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
         "-m", "bench.experiments.stream_instructions.run", "--inside", str(paths[0]),
         str(paths[1]), str(count), str(int(process))],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def collected(run: subprocess.Popen[str]) -> int:
    _, err = run.communicate()
    match = re.search(r"Collected : (\d+)", err)
    if run.returncode or match is None:
        raise RuntimeError(f"no count from callgrind: {err[-500:]}")
    return int(match[1])


def main() -> None:
    if sys.argv[1:2] == ["--inside"]:
        inside(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1")
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is needed (apt-get install valgrind)")
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    companies_path, _, events_path = make_data()  # outside the counted runs
    paths = (companies_path, events_path)
    runs = counted(paths, count, True), counted(paths, count, False)  # side by side
    total, empty = collected(runs[0]), collected(runs[1])
    print(
        orjson.dumps(
            {
                "core": native.describe(),
                "events": count,
                "instructions_per_event": round((total - empty) / count),
                "instructions": total,
                "set_up_instructions": empty,
            }
        ).decode()
    )


if __name__ == "__main__":
    main()
