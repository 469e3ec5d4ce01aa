"""What only one adapter can show: RabbitMQ's refusals, and the embedded broker's join()."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import aio_pika
import pytest

from encompass.adapters.broker import Delivery, PublishError
from encompass.adapters.embedded_broker import EmbeddedBroker
from encompass.adapters.rabbit import RabbitBroker
from encompass.adapters.topology import DELIVERIES, Topology

if TYPE_CHECKING:
    from tests.conftest import RabbitTarget


@pytest.fixture
async def rabbit_broker(
    rabbit: RabbitTarget, _declared: list[tuple[str, Topology]]
) -> AsyncIterator[RabbitBroker]:
    topology = Topology(f"{rabbit.prefix}only.")
    _declared.append((rabbit.url, topology))
    broker = RabbitBroker(rabbit.url, topology, publish_timeout=5.0)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.close()


async def test_rabbit_unroutable_publish_is_a_publish_error(
    rabbit: RabbitTarget, rabbit_broker: RabbitBroker
) -> None:
    # Given the queue has gone (deleted by an operator)
    connection = await aio_pika.connect(rabbit.url)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(
            rabbit_broker.topology.name(DELIVERIES), if_unused=False, if_empty=False
        )
    # Then publishing to it is refused rather than silently dropped
    with pytest.raises(PublishError, match="unroutable"):
        await rabbit_broker.publish(DELIVERIES, b"x", message_id="r-1")
    # And start() declares it again
    await rabbit_broker.start()
    await rabbit_broker.publish(DELIVERIES, b"x", message_id="r-2")
    assert await rabbit_broker.depth(DELIVERIES) == 1


async def test_rabbit_refuses_a_queue_declared_with_other_arguments(
    rabbit: RabbitTarget, rabbit_broker: RabbitBroker
) -> None:
    other = RabbitBroker(rabbit.url, Topology(rabbit_broker.topology.prefix, delivery_limit=9))
    try:
        with pytest.raises(RuntimeError, match="other arguments"):
            await other.start()
    finally:
        await other.close()


async def test_embedded_join_reraises_the_first_handler_error_once() -> None:
    broker = EmbeddedBroker()
    await broker.start()

    async def handler(delivery: Delivery) -> None:
        if not delivery.message.redelivered:
            raise LookupError("first")
        await delivery.ack()

    await broker.consume("incidents", handler)
    await broker.publish("incidents", b"x", message_id="j-1")
    with pytest.raises(LookupError, match="first"):
        await broker.join("incidents")
    await broker.join("incidents")  # reported once; the retry has since succeeded
    await broker.close()


async def test_embedded_join_times_out_on_a_queue_nobody_consumes() -> None:
    broker = EmbeddedBroker()
    await broker.start()
    await broker.publish("incidents", b"x", message_id="j-2")
    with pytest.raises(TimeoutError, match="1 ready"):
        await broker.join("incidents", timeout=0.05)
    await broker.close()


async def test_embedded_broker_must_be_started() -> None:
    broker = EmbeddedBroker()
    with pytest.raises(RuntimeError, match="start"):
        await broker.publish("incidents", b"x", message_id="s-1")
    await broker.start()
    await broker.close()
    with pytest.raises(RuntimeError, match="start"):
        await broker.get("incidents", timeout=0)
