"""Alert watcher for the latency phases, in a process of its own so the paced
producer cannot delay it: a read_committed consumer at the end of the
hot-accounts topic that notes when each alert (by trigger event id) becomes
visible. Prints "ready" once positioned; on SIGTERM writes {event id: epoch
seconds} as JSON to OUT and exits.

    python bench/arms/alert_watch.py BOOTSTRAP TOPIC PARTITIONS OUT
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition


async def main(bootstrap: str, topic: str, partitions: int, out: Path) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        isolation_level="read_committed",
        fetch_max_wait_ms=5,
    )
    await consumer.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    arrivals: dict[str, float] = {}
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        print("ready", flush=True)
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=50)
            now = time.time()
            for records in batches.values():
                for record in records:
                    trigger = orjson.loads(record.value)["trigger"]["event_id"]
                    arrivals.setdefault(trigger, now)
    finally:
        await consumer.stop()
        out.write_bytes(orjson.dumps(arrivals))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])))
