"""Ceiling arm: raw aiokafka consume -> produce passthrough, no scoring.

getmany in batches, every record's value sent to the output topic keyed as it
came (sends batched by the producer, awaited once per batch), then the batch's
offsets committed. The most a Python process does per record on Kafka here.

    python bench/arms/ceiling.py BOOTSTRAP GROUP OUTPUT INPUT [INPUT...]
Runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


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
        bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024, acks="all"
    )
    await consumer.start()
    await producer.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            if not batches:
                continue
            sent = []
            for records in batches.values():
                for record in records:
                    sent.append(await producer.send(output, record.value, key=record.key))
            await asyncio.gather(*sent)
            await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]))
