"""Ceiling arm of the collector benchmark: a raw aiohttp `POST /v1/batch` that
produces each call of the batch as-is to one topic, in its own process.

No auth, no validation, no mapping, no stitching: the body is decoded with
orjson, each call re-encoded and sent (no key) with an AIOKafkaProducer made
with the collector's options (scorer.kafka.client.producer_options, acks=all,
idempotent) and a 2 ms linger, one `send` per record (the collector lingers
2 ms in its Batcher and sends whole record batches), and the
request is answered 200 only once the broker acknowledged every send. What
is left is aiohttp, JSON and aiokafka: the most this machine can accept
through the same libraries.

    python -m bench.arms.collect_ceiling PORT TOPIC

The broker comes from SCORER_BROKER. GET /readyz answers 200 once the
producer is up. Runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import orjson
from aiohttp import web
from aiokafka import AIOKafkaProducer

from scorer.config import Settings
from scorer.kafka.client import producer_options

OK_BODY = b'{"success":true}'


class Ceiling:
    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.producer: AIOKafkaProducer | None = None

    async def batch(self, request: web.Request) -> web.Response:
        producer = self.producer
        if producer is None:
            return web.Response(status=503)
        calls = orjson.loads(await request.read())["batch"]
        dumps, send, topic = orjson.dumps, producer.send, self.topic
        deliveries = [await send(topic, dumps(call)) for call in calls]
        await asyncio.wait(deliveries)
        for future in deliveries:
            future.result()
        return web.Response(body=OK_BODY, content_type="application/json")

    async def readyz(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if self.producer is not None else 503)


async def main(port: int, topic: str) -> None:
    ceiling = Ceiling(topic)
    app = web.Application()
    app.add_routes([web.post("/v1/batch", ceiling.batch), web.get("/readyz", ceiling.readyz)])
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    producer = AIOKafkaProducer(**{**producer_options(Settings()), "linger_ms": 2})
    await producer.start()
    ceiling.producer = producer
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await producer.stop()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
