"""The worker runner's retry and dead-letter policy, on the embedded broker and on RabbitMQ."""

from __future__ import annotations

import asyncio

from encompass.adapters.broker import Broker, Message, Poison
from encompass.workers.runner import ATTEMPTS_HEADER, DEAD_REASON_HEADER, run_consumer
from tests.contract.helpers import WAIT, must_get


def no_backoff(attempt: int) -> float:
    return 0.0


async def test_poison_message_is_dead_lettered_at_once_with_its_reason(broker: Broker) -> None:
    calls: list[str] = []

    async def handler(message: Message) -> None:
        calls.append(message.message_id)
        raise Poison("body is not valid JSON")

    # Given a consumer whose handler finds the message poisonous
    consumer = await run_consumer(broker, "incidents", handler, backoff=no_backoff)
    # When the message arrives
    await broker.publish(
        "incidents", b"{not json", message_id="poison-1", headers={"force": "avon"}
    )
    # Then it lands in incidents.dead after one attempt, with the reason and our headers
    dead = await must_get(broker, "incidents.dead")
    await dead.ack()
    await consumer.cancel()
    assert calls == ["poison-1"]
    assert dead.message.message_id == "poison-1"
    assert dead.message.body == b"{not json"
    assert dict(dead.message.headers) == {
        "force": "avon",
        DEAD_REASON_HEADER: "body is not valid JSON",
        ATTEMPTS_HEADER: 1,
    }
    assert await broker.depth("incidents") == 0


async def test_transient_failures_are_retried_until_success(broker: Broker) -> None:
    seen: list[int] = []
    succeeded = asyncio.Event()

    async def handler(message: Message) -> None:
        seen.append(int(message.headers.get(ATTEMPTS_HEADER, 0)))
        if len(seen) <= 2:
            raise ConnectionError("the directory database blinked")
        succeeded.set()

    consumer = await run_consumer(broker, "incidents", handler, backoff=no_backoff)
    await broker.publish("incidents", b"{}", message_id="flaky-1")
    async with asyncio.timeout(WAIT):
        await succeeded.wait()
    await consumer.cancel()

    # Two failures, then one success that saw the attempts header at 2; nothing is left.
    assert seen == [0, 1, 2]
    assert await broker.depth("incidents") == 0
    assert await broker.get("incidents.dead", timeout=0.2) is None


async def test_a_handler_that_always_fails_ends_in_dead_after_max_attempts(broker: Broker) -> None:
    calls: list[str] = []

    async def handler(message: Message) -> None:
        calls.append(message.message_id)
        raise TimeoutError("the school's webhook did not answer")

    consumer = await run_consumer(broker, "incidents", handler, max_attempts=3, backoff=no_backoff)
    await broker.publish("incidents", b"{}", message_id="doomed-1")

    dead = await must_get(broker, "incidents.dead")
    await dead.ack()
    await consumer.cancel()
    assert calls == ["doomed-1"] * 3
    assert dead.message.headers[DEAD_REASON_HEADER] == "gave up after 3 attempts: TimeoutError"
    assert dead.message.headers[ATTEMPTS_HEADER] == 3
    assert await broker.depth("incidents") == 0


async def test_a_retry_waits_in_the_retry_queue_and_comes_back_after_its_delay(
    broker: Broker,
) -> None:
    loop = asyncio.get_running_loop()
    seen: list[tuple[int, float]] = []
    succeeded = asyncio.Event()

    async def handler(message: Message) -> None:
        seen.append((int(message.headers.get(ATTEMPTS_HEADER, 0)), loop.time()))
        if len(seen) == 1:
            raise TimeoutError("the receiver timed out")
        succeeded.set()

    # Given a consumer whose backoff is a second, and a message that fails once
    consumer = await run_consumer(broker, "incidents", handler, backoff=lambda _: 1.0)
    await broker.publish("incidents", b"{}", message_id="later-1", headers={"force": "avon"})
    async with asyncio.timeout(WAIT):
        await succeeded.wait()
    await consumer.cancel()

    # Then it came back, counted and with its headers, after the retry queue's delay
    assert [attempt for attempt, _ in seen] == [0, 1]
    assert seen[1][1] - seen[0][1] >= 0.9
    assert await broker.depth("incidents.retry.1s") == 0
    assert await broker.get("incidents.dead", timeout=0.2) is None
