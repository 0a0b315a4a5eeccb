"""Fixes for faust-streaming 0.15.3 behaviour the scorer's guarantees depend on.

Each fix is small and applied once by `apply()`. 1 and 2 close code paths read
in faust's source that can lose records or state; 3 makes commits follow the
worker's own record of finished offsets, which is what stopped the losses
tests/fault used to see (README, "Delivery guarantees"); 4 supports the
write-back of account state.

1. `ProducerBuffer.flush()` is what the consumer awaits before committing
   offsets. Upstream it returns as soon as 0.1 s passes without a message
   leaving the buffer, even if messages remain, so offsets can be committed
   while changelog writes for those events are still queued. Here it drains.

2. `Consumer.getmany()` drops records fetched for a partition that is not
   active yet (recovering after a rebalance) and the rest of a batch when the
   group generation changes, although the fetch position has moved past them;
   later commits can then skip them (upstream faust #216, #221,
   faust-streaming #318). Here, instead of being dropped, the partition is
   sought back to the first such record, so it is fetched again.

3. The commit offset of the scorer's own input topics comes from the worker's
   `OffsetTracker` (`app.scorer.offsets`, for the topics in
   `app.scorer.input_topics`), not from faust's acknowledgements, which can run past
   records that never reached the agent. faust's acknowledgement lists for
   those partitions are cleared at each commit so they do not grow.

4. Hooks for the worker's write-back of account state: `await app.scorer.before_commit()`
   runs at the start of every offset commit (before faust flushes the producer
   and commits), and `await app.scorer.before_revoke(revoked)` before faust
   revokes partitions (before its tables give them up). `in_partition(tp)` lets
   that write-back, and the re-reader, write a table outside stream iteration,
   on the partition faust would have used.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

from faust.app.base import App
from faust.streams import _current_event
from faust.transport.consumer import Consumer
from faust.transport.producer import ProducerBuffer

_applied = False
_faust_new_offset = Consumer._new_offset
_faust_commit_tps = Consumer._commit_tps
_faust_on_partitions_revoked = App._on_partitions_revoked


async def _flush_until_empty(self: ProducerBuffer) -> None:
    while self.size:
        if self.state != "running":
            raise RuntimeError("Cannot flush: Producer not Running")
        await self.flush_atmost(None)


async def _getmany_without_drops(self: Any, timeout: float) -> AsyncIterator[tuple[Any, Any]]:
    records, active_partitions = await self._wait_next_records(timeout)
    generation_id = self.app.consumer_generation_id
    if records is None or self.should_stop:
        return
    if not self.flow_active:
        await self.perform_seek()  # as upstream: re-read from the committed offsets
        return
    rewind: dict[Any, int] = {}
    records_it = self.scheduler.iterate(records)
    to_message = self._to_message
    for tp, record in records_it:
        if not self.flow_active or self.app.consumer_generation_id != generation_id:
            rewind.setdefault(tp, record.offset)
            for rest_tp, rest in records_it:
                rewind.setdefault(rest_tp, rest.offset)
            break
        if active_partitions is None or tp in active_partitions or tp in self._buffered_partitions:
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            yield tp, to_message(tp, record)
        else:
            rewind.setdefault(tp, record.offset)
    assigned = self.assignment()
    for tp, offset in rewind.items():
        if tp in assigned:
            await self.seek(tp, offset)


def _tracked_new_offset(self: Any, tp: Any) -> int | None:
    scorer = getattr(self.app, "scorer", None)
    if scorer is None or tp.topic not in scorer.input_topics:
        return _faust_new_offset(self, tp)
    self._acked[tp].clear()
    self._acked_index[tp].clear()
    self._gap.pop(tp, None)
    return scorer.offsets.commit_point(tp)  # type: ignore[no-any-return]


async def _commit_tps_after_write_back(self: Any, tps: Any, start_new_transaction: bool) -> bool:
    scorer = getattr(self.app, "scorer", None)
    if scorer is not None:
        await scorer.before_commit()
    # No await between the hook's end and the offsets faust picks next.
    return await _faust_commit_tps(self, tps, start_new_transaction)


async def _revoke_after_write_back(self: Any, revoked: Any) -> None:
    scorer = getattr(self, "scorer", None)
    if scorer is not None and not self.should_stop:
        await scorer.before_revoke(revoked)
    await _faust_on_partitions_revoked(self, revoked)


class _Message:
    __slots__ = ("partition", "timestamp", "topic")

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.timestamp = 0.0


class _Event:
    __slots__ = ("__weakref__", "message")

    def __init__(self, topic: str, partition: int) -> None:
        self.message = _Message(topic, partition)


@contextmanager
def in_partition(tp: Any) -> Iterator[None]:
    """Table reads and writes inside go to `tp`'s partition, as inside the stream."""
    event = _Event(tp.topic, tp.partition)
    token = _current_event.set(weakref.ref(event))  # type: ignore[arg-type]
    try:
        yield
    finally:
        _current_event.reset(token)


def apply() -> None:
    global _applied
    if not _applied:
        ProducerBuffer.flush = _flush_until_empty  # type: ignore[method-assign]
        Consumer.getmany = _getmany_without_drops  # type: ignore[method-assign]
        Consumer._new_offset = _tracked_new_offset  # type: ignore[method-assign]
        Consumer._commit_tps = _commit_tps_after_write_back  # type: ignore[method-assign]
        App._on_partitions_revoked = _revoke_after_write_back  # type: ignore[method-assign]
        _applied = True
