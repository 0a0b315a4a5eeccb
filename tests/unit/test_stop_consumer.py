"""`stop_consumer`: aiokafka's stray CancelledError from `stop()` is not ours.

The real case (aiokafka 0.14 cancels a fetch sleeping out its retry back-off
and lets the CancelledError out of `stop()`) needs a broker to vanish at the
right moment; tests/integration/test_operations.py runs it. Here: the rule."""

from __future__ import annotations

import asyncio

import pytest

from scorer.kafka.client import stop_consumer


class LeakyConsumer:
    """Raises what aiokafka's stop() raises when a fetch is in back-off."""

    def __init__(self) -> None:
        self.stopped = False

    async def stop(self) -> None:
        self.stopped = True
        raise asyncio.CancelledError


class SlowConsumer:
    async def stop(self) -> None:
        await asyncio.sleep(10)


async def test_a_cancelled_error_from_inside_stop_is_swallowed() -> None:
    consumer = LeakyConsumer()
    await stop_consumer(consumer)  # type: ignore[arg-type]
    assert consumer.stopped


async def test_cancelling_the_caller_still_cancels_it() -> None:
    task = asyncio.ensure_future(stop_consumer(SlowConsumer()))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
