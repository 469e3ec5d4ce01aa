"""Retries wait in a retry queue, not in a consumer slot: a message that failed goes to the
work queue's ``.retry.<N>s`` queue for its backoff and expires back to the work queue,
while the consumer goes on with other messages. On the embedded broker, which expires
retry queues as RabbitMQ does (the same topology, the contract suite covers RabbitMQ)."""

from __future__ import annotations

import asyncio

import pytest

from encompass.adapters.broker import Message
from encompass.adapters.embedded_broker import EmbeddedBroker
from encompass.adapters.topology import RETRY_DELAYS, Topology
from encompass.workers.runner import attempts_of, run_consumer


@pytest.mark.parametrize(
    ("seconds", "queue"),
    [
        (0.4, "incidents.retry.1s"),
        (1.0, "incidents.retry.1s"),
        (4.9, "incidents.retry.1s"),
        (5.0, "incidents.retry.5s"),
        (3600.0, "incidents.retry.300s"),
    ],
)
def test_a_wait_goes_to_the_longest_delay_not_above_it(seconds: float, queue: str) -> None:
    assert Topology().retry_queue("incidents", seconds) == queue


def test_every_work_queue_has_a_retry_queue_per_delay_that_expires_back_to_it() -> None:
    topology = Topology("p.")
    for work in ("incidents", "deliveries", "intake"):
        for delay in RETRY_DELAYS:
            name = f"{work}.retry.{delay}s"
            args = topology.arguments(name)
            assert args["x-message-ttl"] == delay * 1000
            assert args["x-dead-letter-routing-key"] == f"p.{work}"
            # Classic: a quorum queue without consumers may never expire its messages.
            assert "x-queue-type" not in args
            assert "x-delivery-limit" not in args
    assert topology.retry_queue("incidents.dead", 5) is None


async def test_a_retry_waits_in_the_retry_queue_while_others_are_handled() -> None:
    # Given a consumer with one slot and a message that fails once, then another message
    broker = EmbeddedBroker(Topology("unit."))
    await broker.start()
    loop = asyncio.get_running_loop()
    handled: list[tuple[str, int, float]] = []

    async def handler(message: Message) -> None:
        handled.append((message.message_id, attempts_of(message), loop.time()))
        if message.message_id == "slow" and attempts_of(message) == 0:
            raise TimeoutError("the receiver timed out")

    started = loop.time()
    consumer = await run_consumer(broker, "incidents", handler, prefetch=1, backoff=lambda _: 1.0)
    await broker.publish("incidents", b"{}", message_id="slow")
    await broker.publish("incidents", b"{}", message_id="next")

    # When the first fails, the second is handled at once: no slot is held by the wait
    await asyncio.sleep(0.2)
    assert [(m, a) for m, a, _ in handled] == [("slow", 0), ("next", 0)]
    assert await broker.depth("incidents.retry.1s") == 1

    # Then after its delay the failed one comes back from the retry queue, counted
    await asyncio.sleep(1.2)
    await broker.join("incidents")
    await consumer.cancel()
    assert [(m, a) for m, a, _ in handled] == [("slow", 0), ("next", 0), ("slow", 1)]
    assert handled[-1][2] - started >= 0.95
    assert await broker.depth("incidents.retry.1s") == 0
    assert await broker.depth("incidents.dead") == 0
    await broker.close()
