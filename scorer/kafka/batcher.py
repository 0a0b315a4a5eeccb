"""Records from concurrent callers gathered into whole record batches per partition.

`producer.send()` costs, per record, a metadata wait, a partition check that
builds a set, an accumulator call and a future resolved on delivery: in the
collector (a request of 100 Segment calls is about 100 records) that was a
third of its CPU. A `Batcher` appends records to an open `BatchBuilder` per
(topic, partition), shared by every caller within `linger` seconds, and hands
each batch to the producer whole (`send_batch`): one future per batch.

`add` returns the future of the batch the record went into: it resolves once
the broker acknowledged the batch (with the producer's acks and idempotence),
or carries the producer's error. A caller waits for the distinct futures of
its records. Batches of one partition reach the producer in the order they
were opened, so records keep the order in which they were added.

The batcher owns its open batches; the producer stays the owner of delivery.
`close` submits what is open and waits for it to be handed over.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer

Partition = tuple[str, int]


class _Open:
    """A batch being filled, and the future its callers wait on."""

    __slots__ = ("builder", "done", "timer")

    def __init__(self, builder: Any, done: asyncio.Future[None]) -> None:
        self.builder = builder
        self.done = done
        self.timer: asyncio.TimerHandle | None = None


class Batcher:
    def __init__(self, producer: AIOKafkaProducer, linger: float = 0.002) -> None:
        self.producer = producer
        self.linger = linger
        self._open: dict[Partition, _Open] = {}
        self._order: dict[Partition, asyncio.Lock] = {}
        self._submitting: set[asyncio.Task[None]] = set()

    def add(self, topic: str, partition: int, key: bytes | None, value: bytes | None) -> Any:
        """Append one record; returns the future of its batch."""
        where = (topic, partition)
        batch = self._open.get(where)
        if batch is None:
            batch = self._start(where)
        if batch.builder.append(timestamp=None, key=key, value=value) is None:  # full
            self._submit(where, batch)
            batch = self._start(where)
            # An empty batch takes any one record (a record over the batch size
            # is sent alone, as the producer does).
            batch.builder.append(timestamp=None, key=key, value=value)
        return batch.done

    def _start(self, where: Partition) -> _Open:
        loop = asyncio.get_running_loop()
        batch = self._open[where] = _Open(self.producer.create_batch(), loop.create_future())
        batch.timer = loop.call_later(self.linger, self._linger_over, where, batch)
        return batch

    def _linger_over(self, where: Partition, batch: _Open) -> None:
        if self._open.get(where) is batch:
            self._submit(where, batch)

    def _submit(self, where: Partition, batch: _Open) -> None:
        del self._open[where]
        if batch.timer is not None:
            batch.timer.cancel()
        batch.builder.close()
        task = asyncio.get_running_loop().create_task(self._hand_over(where, batch))
        self._submitting.add(task)
        task.add_done_callback(self._submitting.discard)

    async def _hand_over(self, where: Partition, batch: _Open) -> None:
        order = self._order.get(where)
        if order is None:
            order = self._order[where] = asyncio.Lock()
        try:
            async with order:  # FIFO: batches of a partition in the order opened
                delivered = await self.producer.send_batch(
                    batch.builder, where[0], partition=where[1]
                )
            await delivered
        except Exception as exc:  # the callers' to handle (they answer 503)
            if not batch.done.done():
                batch.done.set_exception(exc)
                batch.done.exception()  # retrieved: a caller may have given up waiting
            return
        if not batch.done.done():
            batch.done.set_result(None)

    async def close(self) -> None:
        """Submit every open batch and wait until each was delivered or failed."""
        for where, batch in list(self._open.items()):
            self._submit(where, batch)
        if self._submitting:
            await asyncio.gather(*self._submitting, return_exceptions=True)
