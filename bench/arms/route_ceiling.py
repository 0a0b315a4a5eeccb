"""The routing benchmark's ceiling: COUNT signed-size POSTs to URL, CONCURRENCY
at a time, with aiohttp and no Kafka; prints the rate (POSTs/s) last.

    python -m bench.arms.route_ceiling URL COUNT CONCURRENCY
"""

from __future__ import annotations

import asyncio
import sys
import time

import aiohttp

BODY = b'{"type": "hot_account", "alert_id": "x"}' + b" " * 650


async def main(url: str, count: int, concurrency: int) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def post() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                headers = {"Idempotency-Key": f"ceiling-{i}", "Content-Type": "application/json"}
                async with session.post(url, data=BODY, headers=headers) as reply:
                    await reply.read()

        started = time.monotonic()
        await asyncio.gather(*(post() for _ in range(concurrency)))
        print(f"{count / (time.monotonic() - started):.1f}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
