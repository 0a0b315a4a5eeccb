"""Ceiling arm: the strongest raw consume -> produce passthrough we could write
with aiokafka, no scoring.

A task per partition, as the scorer has: each getmany batch's records of input
partition p are appended to whole record batches (no per-record `send`; the
worker's own `send_batches`) and sent to partition p of the output topic, compressed with the
scorer's codec (SCORER_COMPRESSION, the worker's default when unset) and a
linger; then the batch's offsets are committed.

    python bench/arms/ceiling.py BOOTSTRAP GROUP OUTPUT INPUT [INPUT...]
Runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from scorer.config import Settings
from scorer.kafka.client import send_batches

CODEC = None if Settings().compression == "none" else Settings().compression


async def main(bootstrap: str, group: str, output: str, inputs: list[str]) -> None:
    consumer = AIOKafkaConsumer(
        *inputs,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=5,
        max_batch_size=256 * 1024,
        acks="all",
        compression_type=CODEC,
    )
    await consumer.start()
    await producer.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            if not batches:
                continue
            futures = []
            for tp, records in batches.items():
                pairs = ((record.key, record.value) for record in records)
                sent = await send_batches(producer, output, tp.partition, pairs)
                futures += [future for future, _ in sent]
            await asyncio.gather(*futures)
            await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]))
