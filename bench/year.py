"""A year of traffic for account expiry, and the two ways of running it that
bench/expiry_bench.py and tests/*/test_expiry_year.py share: `score_lines` sampled
at the end of every day, and a streaming worker fed a day at a time.

At the end of day d (event time origin + (d + 1) days, the lines before the
first whose newest `occurred_at` reaches it), each run records the accounts in
state; the year's index has the accounts active in the last TTL then.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.common import metric_values
from scorer import synthetic
from scorer.config import Settings
from scorer.events import LEAD_CREATED, decode_event
from scorer.kafka.follower import read_whole
from scorer.offline import score_lines
from scorer.scoring.engine import Engine
from scorer.scoring.intake import AccountStates

DAY = synthetic.DAY
PAGE = 4096


@dataclass
class Year:
    """The events file (JSON lines, arrival order) and its index."""

    path: Path
    lines: int
    accounts: int
    boundaries: list[int]  # lines before the end of each day
    active: list[int]  # accounts with an event in the last TTL at the end of each day

    @property
    def days(self) -> int:
        return len(self.boundaries)

    def by_day(self) -> Iterator[list[bytes]]:
        """The lines of each day, in order."""
        with self.path.open("rb") as stream:
            done = 0
            for boundary in self.boundaries:
                yield [stream.readline() for _ in range(boundary - done)]
                done = boundary


def write_year(path: Path, domains: int, ttl: float, days: int = 365, seed: int = 17) -> Year:
    """`synthetic.year_of_traffic` over `domains` domains into `path` (kept, with its
    index beside it, and reused while the index's parameters match)."""
    index_path = path.with_suffix(".index.json")
    key = {"domains": domains, "ttl": ttl, "days": days, "seed": seed}
    if path.exists() and index_path.exists():
        index = orjson.loads(index_path.read_bytes())
        if index.get("key") == key:
            return Year(path, index["lines"], index["accounts"], index["boundaries"],
                        index["active"])  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    origin = synthetic.EPOCH.timestamp()
    active = synthetic.ActiveAccounts(ttl, origin, days)
    boundaries: list[int] = []
    newest = -1e300
    lines = 0
    seen: set[str] = set()
    names = synthetic.company_domains(domains)
    with path.open("wb") as out:
        for at, doc in synthetic.year_of_traffic(names, seed=seed, days=days):
            raw = orjson.dumps(doc)
            newest = max(newest, at)
            while len(boundaries) < days and newest >= origin + (len(boundaries) + 1) * DAY:
                boundaries.append(lines)
            account = decode_event(raw).account
            if account is not None:
                active.add(account, at, newest)
                seen.add(account)
            out.write(raw + b"\n")
            lines += 1
    boundaries += [lines] * (days - len(boundaries))
    year = Year(path, lines, len(seen), boundaries, active.per_day())
    index = {"key": key, "lines": lines, "accounts": len(seen), "boundaries": boundaries,
             "active": year.active}  # fmt: skip
    index_path.write_bytes(orjson.dumps(index))
    return year


def rss_mb(pid: int | None = None) -> float:
    """A process's resident set size now, in MB."""
    statm = Path(f"/proc/{pid or 'self'}/statm").read_text().split()
    return int(statm[1]) * PAGE / 1e6


@dataclass
class BatchRun:
    state: list[int] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    alerts: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def run_batch(
    year: Year, engine: Engine, companies: Mapping[str, Mapping[str, Any]], out: Any
) -> BatchRun:
    """`score_lines` over the year into `out`, sampling at the end of each day."""
    accounts = AccountStates()
    run = BatchRun()

    def sample() -> None:
        run.state.append(len(accounts))
        run.rss_mb.append(round(rss_mb(), 1))

    def lines() -> Iterator[bytes]:
        for day in year.by_day():
            yield from day
            sample()  # `score_lines` asks for the next line only once this one is scored

    started = time.perf_counter()
    totals = score_lines(lines(), engine, companies, out, accounts=accounts)
    run.seconds = round(time.perf_counter() - started, 1)
    run.alerts, run.outcomes = totals.alerts, dict(totals.outcomes)
    return run


def worst_ratio(state: list[int], active: list[int], ttl: float) -> tuple[float, int]:
    """The highest accounts in state / active in the last TTL after the first TTL,
    and its day (0-based)."""
    pairs = enumerate(zip(state, active, strict=True))
    ratios = [(s / a if a else float("inf"), d) for d, (s, a) in pairs]
    return max(ratios[int(ttl / DAY) :])


# -- the stream ------------------------------------------------------------------------


def metric_samples(port: int) -> dict[str, float]:
    """A worker's /metrics: each sample name's sum over its labels."""
    out: dict[str, float] = {}
    for name, value in metric_values(port, timeout=5).items():
        bare = name.partition("{")[0]
        out[bare] = out.get(bare, 0.0) + value
    return out


@dataclass
class StreamRun:
    state: list[int] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    expired: list[int] = field(default_factory=list)
    changelog_records: list[int] = field(default_factory=list)  # read so far
    changelog_live_keys: list[int] = field(default_factory=list)  # what compaction leaves
    changelog_live_mb: list[float] = field(default_factory=list)
    changelog_disk_mb: list[float | None] = field(default_factory=list)
    seconds: float = 0.0


class Changelog:
    """A read_committed reader of the changelog, keeping each key's latest size."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.partitions = [TopicPartition(topic, p) for p in range(partitions)]
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        self.live: dict[bytes, int] = {}
        self.records = 0

    async def start(self) -> None:
        await self.consumer.start()
        self.consumer.assign(self.partitions)

    async def catch_up(self) -> None:
        ends = await self.consumer.end_offsets(self.partitions)
        while not await reached(self.consumer, ends):
            batch = await self.consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    self.records += 1
                    if record.value is None:
                        self.live.pop(record.key, None)
                    else:
                        self.live[record.key] = len(record.key) + len(record.value)

    async def stop(self) -> None:
        await self.consumer.stop()


async def reached(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    """Whether the consumer's position is at `ends` on every partition."""
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True


def disk_mb(log_dirs: Path | None, topic: str) -> float | None:
    """Bytes of a topic's log segments on the broker's disk, in MB (its index files,
    preallocated at 10 MB, aside)."""
    if log_dirs is None or not log_dirs.is_dir():
        return None
    size = sum(f.stat().st_size for d in log_dirs.glob(f"{topic}-*") for f in d.glob("*.log"))
    return round(size / 1e6, 2)


async def committed_to(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int],
                       timeout: float) -> None:  # fmt: skip
    """Until the group's committed offsets (read by `consumer`, of the worker's group,
    subscribed to nothing) reach `ends`: the worker sweeps before it commits, so its
    state has then seen every event before them."""
    deadline = time.monotonic() + timeout
    pending = dict(ends)
    while pending:
        for tp, end in list(pending.items()):
            if (await consumer.committed(tp) or 0) >= end:
                del pending[tp]
        if pending:
            if time.monotonic() > deadline:
                raise AssertionError(f"not committed in {timeout} s: {pending}")
            await asyncio.sleep(0.05)


async def run_stream(
    year: Year,
    bootstrap: str,
    prefix: str,
    app_id: str,
    port: int,
    pid: int,
    partitions: int = 4,
    log_dirs: Path | None = None,
    progress: Callable[[int, StreamRun], None] | None = None,
) -> StreamRun:
    """Feed the year a day at a time to a running worker (its metrics on `port`,
    process `pid`), and after each day is committed sample its state, RSS and
    changelog."""
    run = StreamRun()
    changelog_topic = f"{prefix}{app_id}-accounts-changelog"
    changelog = Changelog(bootstrap, changelog_topic, partitions)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, acks="all")
    group = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=app_id,
                             enable_auto_commit=False)  # fmt: skip
    await producer.start()
    await group.start()
    await changelog.start()
    ends: dict[TopicPartition, int] = {}
    started = time.perf_counter()
    try:
        for number, day in enumerate(year.by_day()):
            futures = []
            for raw in day:
                event = decode_event(raw)
                topic = prefix + ("lead-events" if event.type == LEAD_CREATED else "visitor-events")
                key = event.account.encode() if event.account else None
                futures.append(await producer.send(topic, raw, key=key))
            await producer.flush()
            for metadata in await asyncio.gather(*futures):
                tp = TopicPartition(metadata.topic, metadata.partition)
                ends[tp] = max(ends.get(tp, 0), metadata.offset + 1)
            await committed_to(group, ends, timeout=300)
            metrics = metric_samples(port)
            await changelog.catch_up()
            run.state.append(int(metrics["scorer_accounts_in_memory"]))
            run.expired.append(int(metrics.get("scorer_accounts_expired_total", 0)))
            run.rss_mb.append(round(rss_mb(pid), 1))
            run.changelog_records.append(changelog.records)
            run.changelog_live_keys.append(len(changelog.live))
            run.changelog_live_mb.append(round(sum(changelog.live.values()) / 1e6, 2))
            run.changelog_disk_mb.append(disk_mb(log_dirs, changelog_topic))
            if progress is not None:
                progress(number, run)
    finally:
        await changelog.stop()
        await group.stop()
        await producer.stop()
    run.seconds = round(time.perf_counter() - started, 1)
    return run


def local_settings(bootstrap: str) -> Settings:
    return Settings(broker=f"kafka://{bootstrap}")


async def topic_documents(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every committed record of a topic, decoded, read to its end."""
    out: list[dict[str, Any]] = []
    await read_whole(local_settings(bootstrap), topic, lambda r: out.append(orjson.loads(r.value)))
    return out


async def stream_order(bootstrap: str, scores_topic: str, year: Year) -> list[bytes]:
    """The year's lines in the order the worker applied them, per account (from its
    account-scores records: a worker merges the visitor and lead topics of a
    partition in its own order, so an account's leads and visits of one day may
    be applied in another order than the file's). Accounts follow one another;
    an unresolved line, or one that scored nothing, comes first."""
    order: dict[str, list[str]] = {}

    def applied(record: Any) -> None:
        doc = orjson.loads(record.value)
        ids = order.setdefault(doc["account"]["domain"], [])
        event_id = doc["trigger"]["event_id"]
        if not ids or ids[-1] != event_id:  # one record per ICP, consecutive
            ids.append(event_id)

    await read_whole(local_settings(bootstrap), scores_topic, applied)
    lines: dict[str, bytes] = {}
    first: list[bytes] = []
    applied = {event_id for ids in order.values() for event_id in ids}
    with year.path.open("rb") as stream:
        for raw in stream:
            event_id = orjson.loads(raw)["event_id"]
            if event_id in applied:
                lines[event_id] = raw
            else:
                first.append(raw)
    return first + [lines[e] for ids in order.values() for e in ids]


def differing(stream: list[dict[str, Any]], batch: list[dict[str, Any]]) -> int:
    """Alerts in one list and not the other (as multisets; `scored_at` aside)."""

    def key(alert: dict[str, Any]) -> bytes:
        doc = {k: v for k, v in alert.items() if k != "scored_at"}
        return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)

    left, right = Counter(map(key, stream)), Counter(map(key, batch))
    return sum(((left - right) + (right - left)).values())
