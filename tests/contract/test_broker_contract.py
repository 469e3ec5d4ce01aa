"""The broker port's contract: each test runs on the embedded broker and on real RabbitMQ."""

from __future__ import annotations

import asyncio

import pytest

from encompass.adapters.broker import Broker, Delivery
from encompass.adapters.embedded_broker import EmbeddedBroker
from encompass.adapters.topology import DEFAULT_DELIVERY_LIMIT
from tests.contract.helpers import Inbox, must_get


async def test_publish_consume_ack(broker: Broker) -> None:
    # Given a published message
    await broker.publish("incidents", b"hello", message_id="m-1")
    inbox = Inbox()
    # When a consumer receives and acks it
    consumer = await broker.consume("incidents", inbox)
    delivery = await inbox.next()
    await delivery.ack()
    await consumer.cancel()
    # Then it is gone for good
    assert delivery.message.body == b"hello"
    assert delivery.message.redelivered is False
    assert await broker.depth("incidents") == 0
    assert await broker.get("incidents", timeout=0.2) is None


async def test_message_id_and_headers_survive(broker: Broker) -> None:
    headers = {"x-encompass-attempts": 3, "force": "devon-cornwall", "sig": b"\x00\xffsig"}
    await broker.publish("incidents", b"\x00body", message_id="m-2", headers=headers)

    delivery = await must_get(broker, "incidents")
    await delivery.ack()

    assert delivery.message.message_id == "m-2"
    assert delivery.message.body == b"\x00body"
    # Exactly our headers: the broker's own bookkeeping (x-delivery-count…) is not shown.
    assert dict(delivery.message.headers) == headers


async def test_reject_with_requeue_redelivers(broker: Broker) -> None:
    await broker.publish("incidents", b"x", message_id="m-3", headers={"k": "v"})
    first = await must_get(broker, "incidents")
    assert first.message.redelivered is False

    await first.reject(requeue=True)

    again = await must_get(broker, "incidents")
    await again.ack()
    assert (again.message.message_id, again.message.redelivered) == ("m-3", True)
    assert dict(again.message.headers) == {"k": "v"}


async def test_reject_without_requeue_dead_letters(broker: Broker) -> None:
    await broker.publish("incidents", b"bad", message_id="m-4", headers={"k": 1})
    delivery = await must_get(broker, "incidents")

    await delivery.reject(requeue=False)

    dead = await must_get(broker, "incidents.dead")
    await dead.ack()
    assert (dead.message.body, dead.message.message_id) == (b"bad", "m-4")
    assert dict(dead.message.headers) == {"k": 1}
    assert await broker.depth("incidents") == 0


async def test_delivery_limit_dead_letters(broker: Broker) -> None:
    # Given a message that is given back every time
    await broker.publish("incidents", b"crashy", message_id="m-5")
    deliveries = 0
    while (delivery := await broker.get("incidents", timeout=0.3)) is not None:
        deliveries += 1
        await delivery.reject(requeue=True)
    # Then the queue allowed `limit` redeliveries and dead-lettered it on the next return
    assert deliveries == DEFAULT_DELIVERY_LIMIT + 1
    dead = await must_get(broker, "incidents.dead")
    await dead.ack()
    assert dead.message.message_id == "m-5"


async def test_unsettled_delivery_comes_back_when_consumer_cancelled(broker: Broker) -> None:
    await broker.publish("incidents", b"x", message_id="m-6")
    inbox = Inbox()
    consumer = await broker.consume("incidents", inbox)
    held = await inbox.next()

    await consumer.cancel()

    again = await must_get(broker, "incidents")
    await again.ack()
    await held.ack()  # too late: a no-op, not an error
    assert (again.message.message_id, again.message.redelivered) == ("m-6", True)


async def test_unsettled_delivery_comes_back_when_connection_closed(broker: Broker) -> None:
    await broker.publish("incidents", b"x", message_id="m-7")
    inbox = Inbox()
    await broker.consume("incidents", inbox)
    await inbox.next()

    await broker.close()
    await broker.start()

    again = await must_get(broker, "incidents")
    await again.ack()
    assert (again.message.message_id, again.message.redelivered) == ("m-7", True)


async def test_prefetch_bounds_unsettled_deliveries(broker: Broker) -> None:
    for n in range(4):
        await broker.publish("incidents", b"x", message_id=f"p-{n}")
    inbox = Inbox()
    consumer = await broker.consume("incidents", inbox, prefetch=2)
    first, second = await inbox.next(), await inbox.next()
    await asyncio.sleep(0.2)
    assert inbox.deliveries.empty()  # a third would exceed the prefetch

    await first.ack()
    third = await inbox.next()

    assert [d.message.message_id for d in (first, second, third)] == ["p-0", "p-1", "p-2"]
    for delivery in (second, third):
        await delivery.ack()
    await consumer.cancel()


async def test_handler_that_raises_has_its_delivery_requeued(broker: Broker) -> None:
    seen: list[bool] = []
    done = asyncio.Event()

    async def flaky(delivery: Delivery) -> None:
        seen.append(delivery.message.redelivered)
        if len(seen) == 1:
            raise RuntimeError("boom before settling")
        await delivery.ack()
        done.set()

    await broker.publish("incidents", b"x", message_id="m-8")
    consumer = await broker.consume("incidents", flaky)
    async with asyncio.timeout(5):
        await done.wait()
    await consumer.cancel()
    assert seen == [False, True]
    if isinstance(broker, EmbeddedBroker):  # which also reports the error at join()
        with pytest.raises(RuntimeError, match="boom"):
            await broker.join("incidents")


async def test_depth_counts_ready_messages_and_get_is_fifo(broker: Broker) -> None:
    for n in range(3):
        await broker.publish("incidents", f"{n}".encode(), message_id=f"d-{n}")
    assert await broker.depth("incidents") == 3

    first = await must_get(broker, "incidents")
    assert await broker.depth("incidents") == 2  # unsettled deliveries are not counted
    await first.ack()
    rest = [await must_get(broker, "incidents") for _ in range(2)]
    for delivery in rest:
        await delivery.ack()

    assert [d.message.body for d in (first, *rest)] == [b"0", b"1", b"2"]
    assert await broker.depth("incidents") == 0
    assert await broker.get("incidents", timeout=0.1) is None


async def test_start_twice_is_harmless(broker: Broker) -> None:
    await broker.publish("deliveries", b"kept", message_id="s-1")

    await broker.start()

    assert await broker.depth("deliveries") == 1
    kept = await must_get(broker, "deliveries")
    await kept.ack()
    assert kept.message.body == b"kept"


async def test_settling_twice_is_a_no_op(broker: Broker) -> None:
    await broker.publish("incidents", b"x", message_id="t-1")
    delivery = await must_get(broker, "incidents")
    await delivery.ack()
    await delivery.ack()
    await delivery.reject(requeue=True)
    assert await broker.get("incidents", timeout=0.2) is None


async def test_unknown_queue_and_bad_headers_are_refused(broker: Broker) -> None:
    with pytest.raises(ValueError, match="unknown queue"):
        await broker.publish("nowhere", b"x", message_id="u-1")
    with pytest.raises(TypeError, match="str, int or bytes"):
        await broker.publish("incidents", b"x", message_id="u-2", headers={"f": 1.5})
    assert await broker.depth("incidents") == 0


async def test_cancel_lets_a_running_handler_finish(broker: Broker) -> None:
    started, finished = asyncio.Event(), asyncio.Event()

    async def slow(delivery: Delivery) -> None:
        started.set()
        await asyncio.sleep(0.2)
        await delivery.ack()
        finished.set()

    await broker.publish("incidents", b"x", message_id="g-1")
    consumer = await broker.consume("incidents", slow)
    async with asyncio.timeout(5):
        await started.wait()

    await consumer.cancel()

    assert finished.is_set()
    assert await broker.get("incidents", timeout=0.2) is None


async def test_dead_letters_are_never_dropped_by_redelivery(broker: Broker) -> None:
    # A dead queue has no delivery limit: an admin may look at a dead letter many times.
    await broker.publish("incidents.dead", b"x", message_id="k-1")
    for _ in range(DEFAULT_DELIVERY_LIMIT + 2):
        delivery = await must_get(broker, "incidents.dead")
        await delivery.reject(requeue=True)
    kept = await must_get(broker, "incidents.dead")
    await kept.ack()
    assert kept.message.message_id == "k-1"


async def test_a_message_the_service_publishes_names_no_user(broker: Broker) -> None:
    # The intake trusts user_id as the broker-validated sender: the service never sets it
    await broker.publish("intake", b"x", message_id="uid-1")
    delivery = await must_get(broker, "intake")
    assert delivery.message.user_id is None
    await delivery.ack()
