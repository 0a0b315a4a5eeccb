"""The routing benchmark's naive arm: what a user would write first. A
consumer that POSTs each alert to the webhook, awaits the answer, and
commits after each batch.

    python -m bench.arms.naive_router BOOTSTRAP TOPIC GROUP URL
"""

from __future__ import annotations

import asyncio
import sys

import aiohttp
from aiokafka import AIOKafkaConsumer


async def main(bootstrap: str, topic: str, group: str, url: str) -> None:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        async with aiohttp.ClientSession() as session:
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=100)
                for records in batches.values():
                    for record in records:
                        async with session.post(url, data=record.value) as reply:
                            await reply.read()
                await consumer.commit()
    finally:
        await consumer.stop()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
