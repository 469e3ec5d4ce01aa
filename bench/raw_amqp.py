"""The baseline every pipeline figure is compared with: raw aio-pika on the same broker.

Publishes ``count`` persistent messages with publisher confirms to a fresh quorum queue,
then consumes them with manual acks, and reports messages per second for each half.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

import aio_pika


@dataclass(frozen=True)
class RawRates:
    published_per_s: float
    consumed_per_s: float
    round_trip_per_s: float


async def measure(url: str, count: int, *, size: int = 2048, window: int = 256) -> RawRates:
    """Publish then consume ``count`` messages of ``size`` bytes; the queue is deleted after.

    Up to ``window`` confirms are awaited together, as a careful producer would.
    """
    connection = await aio_pika.connect_robust(url)
    name = f"bench.raw.{uuid.uuid4().hex[:8]}"
    body = b"x" * size
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
        started = time.perf_counter()
        pending: list[asyncio.Future[object]] = []
        for n in range(count):
            message = aio_pika.Message(
                body, message_id=str(n), delivery_mode=aio_pika.DeliveryMode.PERSISTENT
            )
            pending.append(
                asyncio.ensure_future(channel.default_exchange.publish(message, routing_key=name))
            )
            if len(pending) >= window:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        published = time.perf_counter() - started

        consumer_channel = await connection.channel()
        await consumer_channel.set_qos(prefetch_count=window)
        consumer_queue = await consumer_channel.get_queue(name)
        done = asyncio.Event()
        seen = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal seen
            await message.ack()
            seen += 1
            if seen >= count:
                done.set()

        started = time.perf_counter()
        tag = await consumer_queue.consume(on_message)
        await asyncio.wait_for(done.wait(), timeout=600)
        consumed = time.perf_counter() - started
        await consumer_queue.cancel(tag)
        await channel.queue_delete(name, if_unused=False, if_empty=False)
    finally:
        await connection.close()
    return RawRates(count / published, count / consumed, count / (published + consumed))
