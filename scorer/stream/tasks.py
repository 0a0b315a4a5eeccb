"""A task: one partition number of the co-partitioned inputs, its account
state and its changelog partition, as in Kafka Streams.

A task's fields change only through its own methods, and only the task
manager (`scorer.stream.manager`) calls those, except `send`, through which
the processor queues a record's outputs. Its life:

    RESTORING --restored--> RUNNING --commit failed--> BROKEN --revived--> RUNNING
                                    --fenced--------> LOST  (another worker owns it)
    any state --closed--> CLOSED

A commit is split as in Kafka Streams: `prepare_commit` hands the work done
so far to one commit (a `Snapshot`), `post_commit` records that the commit
landed, and `rewind` goes back to the last commit when it did not.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition

from scorer.stream.ordering import InputQueue
from scorer.stream.store import AccountStore

# (topic, key, value, headers, partition): a record for the task's next commit.
Output = tuple[str, bytes | None, bytes | None, Any, int | None]


class TaskState(enum.Enum):
    RESTORING = "restoring"  # its store is being brought to the changelog's end
    RUNNING = "running"
    BROKEN = "broken"  # a commit failed: rewound, waiting for a new producer
    LOST = "lost"  # fenced: another worker owns the partition now
    CLOSED = "closed"


@dataclass(slots=True)
class Snapshot:
    """What one commit of a task carries, taken between two batches."""

    partition: int
    changelog: TopicPartition
    outbox: list[Output]
    writes: dict[bytes, bytes | None]  # changelog records: key -> value (None: delete)
    positions: dict[TopicPartition, int]  # the input offsets to commit
    alert_times: list[float]  # input timestamps of the alerts in the outbox
    marker: bytes | None  # the changelog marker to write, the first time


@dataclass(eq=False)
class Task:
    """One partition number p: its inputs' positions, state and outbox."""

    partition: int
    inputs: list[TopicPartition]
    changelog: TopicPartition
    store: AccountStore
    producer: AIOKafkaProducer | None  # the task's own in exactly-once mode
    state: TaskState = TaskState.RESTORING
    positions: dict[TopicPartition, int] = field(default_factory=dict)  # next offset to process
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    outbox: list[Output] = field(default_factory=list)
    alert_times: list[float] = field(default_factory=list)  # input timestamps of queued alerts
    marker: bytes | None = None  # a changelog marker to write in the next commit
    event_time: float = float("-inf")  # the newest occurred_at it has scored
    swept_at: float = 0.0  # when (monotonic) idle accounts last left its store
    # How many times it went back to its last commit: a reader that keeps what it
    # read of the store compares this before using it again.
    rewinds: int = 0
    # The input whose records carry their input timestamp in a header (the re-key topic's).
    rekeyed: TopicPartition | None = None
    # Fetched records not yet processed, handed out in timestamp order (scorer.stream.ordering).
    queue: InputQueue = field(init=False)

    def __post_init__(self) -> None:
        self.queue = InputQueue(self.inputs, [self.rekeyed] if self.rekeyed else [])

    # -- processing ------------------------------------------------------------

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Any = None,
        partition: int | None = None,
    ) -> None:
        """Queue an output record for the next commit."""
        self.outbox.append((topic, key, value, headers, partition))

    def scored(self, at: float) -> None:
        """Events up to `at` (epoch seconds) were applied: the task's event time moves
        (the processor calls it once a batch, with the batch's newest)."""
        if at > self.event_time:
            self.event_time = at

    def expire_idle(self, ttl: float, lateness: float, now: float) -> int:
        """Account expiry's housekeeping: accounts idle for `ttl` plus `lateness` behind the
        task's event time leave the store (tombstones in the next commit). The
        margin keeps the result exact for events at most `lateness` late."""
        self.swept_at = now
        return self.store.expire(self.event_time - ttl - lateness)

    def alerted(self, produced_at: float) -> None:
        """An alert is in the outbox for an input record produced at `produced_at`."""
        self.alert_times.append(produced_at)

    def start_at(self, tp: TopicPartition, offset: int) -> None:
        """Assigned: the input's committed offset is where processing starts."""
        self.positions[tp] = self.committed[tp] = offset

    def advance(self, tp: TopicPartition, offset: int) -> None:
        """Records of `tp` before `offset` are processed (or are control records)."""
        if offset > self.positions.get(tp, -1):
            self.positions[tp] = offset

    def restored(self, marker: bytes | None) -> None:
        """The store holds the changelog to its end; `marker` is to be written
        with the first commit when the changelog has none yet."""
        self.marker = marker
        self.state = TaskState.RUNNING

    # -- committing ------------------------------------------------------------

    @property
    def has_work(self) -> bool:
        return bool(
            self.outbox
            or self.store.dirty
            or self.store.pending
            or self.marker
            or self.positions != self.committed
        )

    def prepare_commit(self) -> Snapshot:
        """The work done up to now, handed to one commit (at most one is in
        flight): outputs, changed accounts serialised, input positions."""
        outbox, self.outbox = self.outbox, []
        alert_times, self.alert_times = self.alert_times, []
        return Snapshot(
            self.partition,
            self.changelog,
            outbox,
            self.store.prepare(),
            dict(self.positions),
            alert_times,
            self.marker,
        )

    def post_commit(
        self, snapshot: Snapshot, changelog_offset: int | None, marker_offset: int | None
    ) -> None:
        """The snapshot's commit landed: its positions are committed, and its
        changelog writes (up to `changelog_offset`) go into the local store."""
        self.committed = snapshot.positions
        backing = self.store.backing
        if marker_offset is not None and snapshot.marker is not None:
            backing.set_marker(snapshot.marker, marker_offset)
            if self.marker == snapshot.marker:
                self.marker = None
        self.store.committed(changelog_offset if changelog_offset is not None else backing.offset)

    def rewind(self) -> None:
        """Back to the last commit: uncommitted state and outputs are dropped,
        and processing resumes from the committed positions."""
        self.store.discard()
        self.outbox.clear()
        self.alert_times.clear()
        self.positions = dict(self.committed)
        self.queue.clear()
        self.rewinds += 1

    def fail(self) -> None:
        """A commit failed; the producer must be replaced before the next."""
        if self.state is TaskState.RUNNING:
            self.state = TaskState.BROKEN

    def revive(self, producer: AIOKafkaProducer | None) -> None:
        """A new producer for a broken task."""
        self.producer = producer
        self.state = TaskState.RUNNING

    def lose(self) -> None:
        """Fenced: another worker owns this partition now."""
        if self.state is not TaskState.CLOSED:
            self.state = TaskState.LOST

    def closed(self) -> None:
        self.state = TaskState.CLOSED
