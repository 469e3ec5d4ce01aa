"""The batched consumer on the embedded broker: messages gathered into one handler call,
each acked after it; a poison message split out of its batch and dead-lettered alone,
the others committed; an outage putting the whole batch back uncounted."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from encompass.adapters.broker import Message, Parts, Poison
from encompass.adapters.embedded_broker import EmbeddedBroker
from encompass.adapters.topology import Topology
from encompass.workers.runner import DEAD_REASON_HEADER, _BatchRunner, run_batch_consumer


async def queued(count: int, *, poison: frozenset[int] = frozenset()) -> EmbeddedBroker:
    broker = EmbeddedBroker(Topology("unit."))
    await broker.start()
    for n in range(count):
        body = b"poison" if n in poison else str(n).encode()
        await broker.publish("incidents", body, message_id=f"m-{n}")
    return broker


async def test_messages_are_handled_in_batches_and_all_acked() -> None:
    # Given 20 queued messages
    broker = await queued(20)
    calls: list[int] = []
    committed: list[str] = []

    async def handler(messages: Sequence[Message]) -> None:
        calls.append(len(messages))
        committed.extend(m.message_id for m in messages)

    # When a batched consumer takes them 8 at a time
    consumer = await run_batch_consumer(broker, "incidents", handler, batch_size=8, batch_wait=0.05)
    await broker.join("incidents")
    await consumer.cancel()

    # Then they came in few calls of at most 8, each message once, none left
    assert sorted(committed) == sorted(f"m-{n}" for n in range(20))
    assert max(calls) == 8
    assert len(calls) <= 4
    assert await broker.depth("incidents") == 0
    assert await broker.depth("incidents.dead") == 0


async def test_one_poison_message_does_not_fail_the_others() -> None:
    # Given 16 messages, one of them poison
    broker = await queued(16, poison=frozenset({5}))
    committed: list[str] = []

    async def handler(messages: Sequence[Message]) -> None:
        # All or nothing, as a transaction: a poison message fails the whole call.
        if any(m.body == b"poison" for m in messages):
            raise Poison("not a version message")
        committed.extend(m.message_id for m in messages)

    # When they are consumed in one batch
    consumer = await run_batch_consumer(
        broker, "incidents", handler, batch_size=16, batch_wait=0.05
    )
    await broker.join("incidents")
    await consumer.cancel()

    # Then the 15 others were committed once each and the poison one alone is dead
    assert sorted(committed) == sorted(f"m-{n}" for n in range(16) if n != 5)
    assert await broker.depth("incidents.dead") == 1
    dead = await broker.get("incidents.dead")
    assert dead is not None
    assert dead.message.message_id == "m-5"
    assert dead.message.headers[DEAD_REASON_HEADER] == "not a version message"
    await dead.ack()


async def test_a_transient_failure_retries_only_the_failing_message() -> None:
    # Given 6 messages, one of which fails once
    broker = await queued(6)
    failed: list[str] = []
    committed: list[str] = []

    async def handler(messages: Sequence[Message]) -> None:
        for m in messages:
            if m.message_id == "m-2" and not failed:
                failed.append(m.message_id)
                raise TimeoutError("slow")
        committed.extend(m.message_id for m in messages)

    # When consumed in batches with no backoff
    consumer = await run_batch_consumer(
        broker, "incidents", handler, batch_size=6, batch_wait=0.05, backoff=lambda _: 0.0
    )
    await broker.join("incidents")
    await consumer.cancel()

    # Then every message is committed exactly once and nothing is dead
    assert sorted(committed) == sorted(f"m-{n}" for n in range(6))
    assert await broker.depth("incidents.dead") == 0


async def test_a_handler_may_settle_each_message_alone_without_being_called_again() -> None:
    # Given 5 messages, and a handler that sends each once and says which failed
    broker = await queued(5)
    sent: list[str] = []

    async def handler(messages: Sequence[Message]) -> list[Exception | None]:
        sent.extend(m.message_id for m in messages)
        return [Poison("unknown envelope") if m.message_id == "m-1" else None for m in messages]

    # When they are consumed in one batch
    consumer = await run_batch_consumer(broker, "incidents", handler, batch_size=5, batch_wait=0.05)
    await broker.join("incidents")
    await consumer.cancel()

    # Then each was sent once (no split, no second call), and only the failed one is dead
    assert sorted(sent) == [f"m-{n}" for n in range(5)]
    assert await broker.depth("incidents.dead") == 1


async def test_a_batch_cut_short_gives_its_messages_back_and_the_next_consumer_gets_all() -> None:
    # Given 3 messages gathered by a consumer that waits long for a fuller batch
    broker = EmbeddedBroker(Topology("unit."), cancel_grace=0.05)
    await broker.start()
    for n in range(3):
        await broker.publish("incidents", str(n).encode(), message_id=f"m-{n}")
    committed: list[str] = []

    async def handler(messages: Sequence[Message]) -> None:
        committed.extend(m.message_id for m in messages)

    slow = await run_batch_consumer(broker, "incidents", handler, batch_size=10, batch_wait=30)
    await asyncio.sleep(0.05)

    # When that consumer is stopped mid-gathering (its handler tasks cancelled)
    await slow.cancel()
    assert committed == []

    # Then every message is back, and the next consumer commits each exactly once
    fresh = await run_batch_consumer(broker, "incidents", handler, batch_size=10, batch_wait=0.05)
    await broker.join("incidents")
    await fresh.cancel()
    assert sorted(committed) == ["m-0", "m-1", "m-2"]


class _Held:
    """A delivery that records how it was settled."""

    def __init__(self, n: int) -> None:
        self.message = Message(body=b"{}", message_id=f"h-{n}")
        self.outcome: str | None = None

    async def ack(self) -> None:
        self.outcome = self.outcome or "acked"

    async def reject(self, *, requeue: bool) -> None:
        self.outcome = self.outcome or ("requeued" if requeue else "dead")


async def test_a_leader_cancelled_while_gathering_leaves_no_delivery_unsettled() -> None:
    # Given a batch runner whose leader is gathering a batch
    broker = EmbeddedBroker(Topology("unit."))

    async def handler(messages: Sequence[Message]) -> None:
        return None

    runner = _BatchRunner(
        broker,
        "incidents",
        "incidents.dead",
        handler,
        batch_size=10,
        batch_wait=30,
        max_attempts=5,
        wait=lambda _: 0.0,
        concurrency=1,
    )
    first, second, later = _Held(1), _Held(2), _Held(3)
    leader = asyncio.create_task(runner.on_delivery(first))
    follower = asyncio.create_task(runner.on_delivery(second))
    await asyncio.sleep(0.01)

    # When the leader's task is cancelled (its channel went away)
    leader.cancel()
    await asyncio.gather(leader, follower, return_exceptions=True)

    # Then what it gathered is given back, and a later delivery forms a batch of its own
    assert (first.outcome, second.outcome) == ("requeued", "requeued")
    runner._wait_s = 0.01
    await runner.on_delivery(later)
    assert later.outcome == "acked"


async def test_a_message_whose_parts_fail_differently_goes_on_as_one_copy_per_part() -> None:
    # Given one message naming items a, b and c, of which b fails for now and c never can
    broker = EmbeddedBroker(Topology("unit."))
    await broker.start()
    await broker.publish("incidents", b"a,b,c", message_id="m-abc")
    seen: list[bytes] = []

    async def handler(messages: Sequence[Message]) -> list[Exception | None]:
        results: list[Exception | None] = []
        for m in messages:
            seen.append(m.body)
            items = m.body.split(b",")
            parts: list[tuple[bytes, Exception]] = []
            if b"b" in items and len([s for s in seen if b"b" in s.split(b",")]) == 1:
                parts.append((b"b", TimeoutError("later")))
            if b"c" in items:
                parts.append((b"c", Poison("never")))
            results.append(Parts(parts) if parts else None)
        return results

    # When it is consumed with no backoff
    consumer = await run_batch_consumer(
        broker, "incidents", handler, batch_size=4, batch_wait=0.01, backoff=lambda _: 0.0
    )
    await broker.join("incidents")
    await consumer.cancel()

    # Then b came back alone (and succeeded), and c alone went to the dead letters
    assert seen == [b"a,b,c", b"b"]
    assert await broker.depth("incidents") == 0
    dead = await broker.get("incidents.dead", timeout=0.1)
    assert dead is not None
    assert dead.message.body == b"c"
    assert dead.message.headers[DEAD_REASON_HEADER] == "never"


async def test_a_batch_is_full_once_its_messages_name_batch_size_items() -> None:
    # Given messages naming 3 items each
    broker = EmbeddedBroker(Topology("unit."))
    await broker.start()
    for n in range(6):
        await broker.publish("incidents", b"x,y,z", message_id=f"m-{n}")
    calls: list[int] = []

    async def handler(messages: Sequence[Message]) -> None:
        calls.append(sum(len(m.body.split(b",")) for m in messages))

    # When a batch holds 6 items, counted by the weight
    consumer = await run_batch_consumer(
        broker,
        "incidents",
        handler,
        batch_size=6,
        batch_wait=0.2,
        weight=lambda m: len(m.body.split(b",")),
    )
    await broker.join("incidents")
    await consumer.cancel()

    # Then no call held more than 6 items: two messages a batch, not six
    assert sum(calls) == 18
    assert max(calls) == 6
