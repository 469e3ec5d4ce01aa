"""Runner details that are easier to pin down on the embedded broker alone: what happens
when the broker refuses the retry copy, the backoff it asks for, odd attempt headers and
what it logs. The shared retry/dead-letter behaviour is in tests/contract."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, TypeVar

import pytest
from structlog.testing import capture_logs

from encompass.adapters.broker import Message, Poison, PublishError
from encompass.adapters.embedded_broker import EmbeddedBroker
from encompass.adapters.topology import Topology
from encompass.workers.runner import (
    ATTEMPTS_HEADER,
    DEAD_REASON_HEADER,
    DROPPED_HEADER,
    attempts_of,
    default_backoff,
    run_consumer,
)

SECRET = b'{"child": "Ada Lovelace", "postcode": "PL1 1AA"}'


class RefusingBroker(EmbeddedBroker):
    """Refuses the first ``refusals`` publishes to ``target``, as a broker that nacks."""

    def __init__(self, target: str, refusals: int) -> None:
        super().__init__(Topology("unit."))
        self.target, self.refusals = target, refusals

    async def publish(
        self, queue: str, body: bytes, *, message_id: str, headers: Mapping[str, Any] | None = None
    ) -> None:
        if queue == self.target and self.refusals > 0:
            self.refusals -= 1
            raise PublishError(f"{queue}: refused by the broker (nack)")
        await super().publish(queue, body, message_id=message_id, headers=headers)


B = TypeVar("B", bound=EmbeddedBroker)


async def started(broker: B) -> B:
    await broker.start()
    return broker


def embedded() -> EmbeddedBroker:
    return EmbeddedBroker(Topology("unit."))


async def test_a_refused_retry_copy_keeps_the_original() -> None:
    # Given a queued message, and a broker that will refuse the first retry copy
    broker = await started(RefusingBroker("incidents", refusals=0))
    await broker.publish("incidents", b"{}", message_id="keep-1")
    broker.refusals = 1
    seen: list[tuple[int, bool]] = []

    async def handler(message: Message) -> None:
        seen.append((attempts_of(message), message.redelivered))
        if len(seen) == 1:
            raise ConnectionError("transient")

    # When the first attempt fails and the copy cannot be published
    consumer = await run_consumer(broker, "incidents", handler, backoff=lambda _: 0.0)
    await broker.join("incidents")
    await consumer.cancel()

    # Then the original came back (redelivered, attempt count unchanged) and succeeded
    assert seen == [(0, False), (0, True)]
    assert await broker.depth("incidents.dead") == 0


async def test_a_refused_dead_letter_keeps_the_original() -> None:
    broker = await started(RefusingBroker("incidents.dead", refusals=1))
    calls = 0

    async def handler(message: Message) -> None:
        nonlocal calls
        calls += 1
        raise Poison("unparseable")

    consumer = await run_consumer(broker, "incidents", handler)
    await broker.publish("incidents", b"x", message_id="keep-2")
    await broker.join("incidents")
    await consumer.cancel()

    assert calls == 2  # once refused, once dead-lettered
    dead = await broker.get("incidents.dead", timeout=0)
    assert dead is not None and dead.message.headers[DEAD_REASON_HEADER] == "unparseable"


async def test_backoff_is_asked_for_each_failed_attempt_before_the_last() -> None:
    broker = await started(embedded())
    asked: list[int] = []

    async def handler(message: Message) -> None:
        raise ValueError("always")

    def backoff(attempt: int) -> float:
        asked.append(attempt)
        return 0.0

    consumer = await run_consumer(broker, "incidents", handler, max_attempts=4, backoff=backoff)
    await broker.publish("incidents", b"x", message_id="b-1")
    await broker.join("incidents")
    await consumer.cancel()

    assert asked == [1, 2, 3]  # no wait before giving up
    assert await broker.depth("incidents.dead") == 1


async def test_one_attempt_means_dead_at_the_first_failure() -> None:
    broker = await started(embedded())

    async def handler(message: Message) -> None:
        raise KeyError("x")

    consumer = await run_consumer(broker, "incidents", handler, max_attempts=1)
    await broker.publish("incidents", b"x", message_id="one-1")
    await broker.join("incidents")
    await consumer.cancel()

    dead = await broker.get("incidents.dead", timeout=0)
    assert dead is not None
    assert dict(dead.message.headers) == {
        DEAD_REASON_HEADER: "gave up after 1 attempts: KeyError",
        ATTEMPTS_HEADER: 1,
    }


@pytest.mark.parametrize(
    ("header", "expected"), [(None, 0), (2, 2), ("3", 3), ("junk", 0), (-4, 0), (b"\x00", 0)]
)
def test_attempts_are_read_from_our_header_leniently(header: object, expected: int) -> None:
    headers = {} if header is None else {ATTEMPTS_HEADER: header}
    assert attempts_of(Message(b"", "id", headers, False)) == expected


def test_default_backoff_is_short_and_capped() -> None:
    assert [default_backoff(n) for n in (1, 2, 3, 5, 10)] == [0.4, 0.8, 1.6, 5.0, 5.0]


async def test_refuses_a_queue_without_dead_letters_and_zero_attempts() -> None:
    broker = await started(embedded())

    async def handler(message: Message) -> None:
        return None

    with pytest.raises(ValueError, match="no dead-letter queue"):
        await run_consumer(broker, "incidents.dead", handler)
    with pytest.raises(ValueError, match="max_attempts"):
        await run_consumer(broker, "incidents", handler, max_attempts=0)


async def test_logs_name_the_message_but_never_its_body_or_error_text() -> None:
    broker = await started(embedded())
    done = asyncio.Event()

    async def handler(message: Message) -> None:
        if attempts_of(message) == 0:
            raise RuntimeError(f"could not parse {message.body!r}")
        done.set()

    with capture_logs() as logs:
        consumer = await run_consumer(broker, "incidents", handler, backoff=lambda _: 0.0)
        await broker.publish("incidents", SECRET, message_id="log-1")
        await broker.join("incidents")
        await consumer.cancel()

    assert done.is_set()
    assert [(e["event"], e["outcome"], e["attempt"]) for e in logs] == [
        ("message.retry", "retry", 1),
        ("message.processed", "acked", 2),
    ]
    assert all(e["message_id"] == "log-1" and e["queue"] == "incidents" for e in logs)
    assert logs[0]["error"] == "RuntimeError"
    assert "Lovelace" not in repr(logs)


async def test_a_poison_message_we_did_not_write_is_dead_lettered_without_body_or_headers() -> None:
    broker = await started(embedded())

    async def handler(message: Message) -> None:
        raise Poison("not ours", keep_body=False)

    consumer = await run_consumer(broker, "incidents", handler)
    await broker.publish(
        "incidents", SECRET, message_id="drop-1", headers={"x-encompass-force": "Ada Lovelace"}
    )
    await broker.join("incidents")
    await consumer.cancel()
    dead = await broker.get("incidents.dead", timeout=0.1)
    assert dead is not None
    assert dead.message.body == b""
    assert dict(dead.message.headers) == {
        DEAD_REASON_HEADER: "not ours",
        ATTEMPTS_HEADER: 1,
        DROPPED_HEADER: len(SECRET),
    }
    assert dead.message.message_id == "drop-1"
