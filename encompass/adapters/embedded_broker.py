"""The broker port in process, with RabbitMQ quorum-queue semantics, for the demo and tests.

Like dramatiq's StubBroker it has :meth:`EmbeddedBroker.join`, which waits for a queue to
drain and re-raises the first exception a handler raised. Everything the contract suite
checks on RabbitMQ holds here too: FIFO per queue (messages given back are served first, as
quorum queues do), requeue marks a message redelivered and counts toward the delivery
limit, ``reject(requeue=False)`` and an exceeded limit dead-letter to the ``.dead`` queue,
a retry queue's messages expire after its TTL back to their work queue,
prefetch bounds unsettled deliveries, and cancel/close give unsettled deliveries back.
Messages live as long as the object: ``close()`` then ``start()`` finds them again.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import structlog

from encompass.adapters.broker import (
    Consumer,
    DeliveryHandler,
    HeaderValue,
    Message,
    checked_headers,
)
from encompass.adapters.topology import QueueSpec, Topology

log = structlog.get_logger()


@dataclass(slots=True)
class _Stored:
    body: bytes
    message_id: str
    headers: dict[str, HeaderValue]
    returns: int = 0  # as a quorum queue's x-delivery-count: times it was given back
    redelivered: bool = False


class _Queue:
    def __init__(self, spec: QueueSpec) -> None:
        self.spec = spec
        self.returned: deque[_Stored] = deque()  # served before `ready`, as quorum does
        self.ready: deque[_Stored] = deque()
        self.unacked: set[_EmbeddedDelivery] = set()
        self.consumers: list[_EmbeddedConsumer] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.turn = 0  # round robin over consumers

    def __len__(self) -> int:
        return len(self.returned) + len(self.ready)

    def pop(self) -> _Stored | None:
        if self.returned:
            return self.returned.popleft()
        return self.ready.popleft() if self.ready else None


class _EmbeddedDelivery:
    __slots__ = ("_broker", "_owner", "_queue", "_stored", "message")

    def __init__(
        self,
        broker: EmbeddedBroker,
        queue: _Queue,
        stored: _Stored,
        owner: _EmbeddedConsumer | None,
    ) -> None:
        self.message = Message(
            body=stored.body,
            message_id=stored.message_id,
            headers=dict(stored.headers),
            redelivered=stored.redelivered,
        )
        self._broker, self._queue, self._stored, self._owner = broker, queue, stored, owner

    async def ack(self) -> None:
        self._broker._settle(self, None)

    async def reject(self, *, requeue: bool) -> None:
        self._broker._settle(self, requeue)


class _EmbeddedConsumer:
    def __init__(
        self,
        broker: EmbeddedBroker,
        queue: _Queue,
        handler: DeliveryHandler,
        prefetch: int,
        grace: float,
    ) -> None:
        self._broker, self.queue, self._handler = broker, queue, handler
        self.prefetch, self._grace = prefetch, grace
        self.holding: set[_EmbeddedDelivery] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self._cancelled = False

    def has_room(self) -> bool:
        return len(self.holding) < self.prefetch

    async def run(self, delivery: _EmbeddedDelivery) -> None:
        try:
            await self._handler(delivery)
        except Exception as exc:
            self._broker._record(exc)
            log.error(
                "broker.handler_failed",
                queue=self.queue.spec.name,
                message_id=delivery.message.message_id,
                error=type(exc).__name__,
                outcome="requeued",
            )
            await delivery.reject(requeue=True)

    async def cancel(self) -> None:
        if self._cancelled:
            return
        self._cancelled = True
        self.queue.consumers.remove(self)
        self._broker._consumers.discard(self)
        waiting = self.tasks - {asyncio.current_task()}
        if waiting:
            _, late = await asyncio.wait(waiting, timeout=self._grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        # As a closed RabbitMQ channel does: what is still unsettled goes back.
        for delivery in list(self.holding):
            self._broker._settle(delivery, True)


class EmbeddedBroker:
    """An in-process broker with the port's semantics; state lives in this object."""

    kind: Literal["rabbitmq", "embedded"] = "embedded"

    def __init__(self, topology: Topology | None = None, *, cancel_grace: float = 10.0) -> None:
        self.topology = topology if topology is not None else Topology()
        self._queues = {spec.name: _Queue(spec) for spec in self.topology.queues}
        self._cancel_grace = cancel_grace
        self._started = False
        self._consumers: set[_EmbeddedConsumer] = set()
        self._gets: set[_EmbeddedDelivery] = set()  # handed out by get(), unsettled
        self._changed = asyncio.Event()
        self._error: Exception | None = None

    def __repr__(self) -> str:
        return f"EmbeddedBroker({self.topology!r})"

    async def start(self) -> None:
        """Ready the broker; the queues already exist, so this is idempotent."""
        self._started = True

    async def publish(
        self, queue: str, body: bytes, *, message_id: str, headers: Mapping[str, Any] | None = None
    ) -> None:
        """Append the message to ``queue``; confirmed as soon as this returns."""
        target = self._queue(queue)
        self._append(target, _Stored(bytes(body), message_id, checked_headers(headers)))

    async def consume(
        self, queue: str, handler: DeliveryHandler, *, prefetch: int = 16
    ) -> Consumer:
        """Run ``handler`` in a task per delivery, at most ``prefetch`` unsettled."""
        if prefetch < 1:
            raise ValueError("prefetch must be at least 1")
        source = self._queue(queue)
        consumer = _EmbeddedConsumer(self, source, handler, prefetch, self._cancel_grace)
        source.consumers.append(consumer)
        self._consumers.add(consumer)
        self._dispatch(source)
        return consumer

    async def get(
        self,
        queue: str,
        *,  # the wait for a message is part of the port
        timeout: float = 1.0,  # noqa: ASYNC109
    ) -> _EmbeddedDelivery | None:
        """Take the next message, waiting up to ``timeout`` seconds; ``None`` if none."""
        source = self._queue(queue)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (stored := source.pop()) is None:
            if not await self._wait_for_change(deadline - loop.time()):
                return None
        delivery = _EmbeddedDelivery(self, source, stored, None)
        source.unacked.add(delivery)
        self._gets.add(delivery)
        self._notify()
        return delivery

    async def depth(self, queue: str) -> int:
        """Ready messages, not counting unsettled deliveries (as RabbitMQ counts)."""
        return len(self._queue(queue))

    async def close(self) -> None:
        """Cancel every consumer and give every unsettled delivery back."""
        for consumer in list(self._consumers):
            await consumer.cancel()
        for delivery in list(self._gets):
            self._settle(delivery, True)
        self._started = False

    async def join(self, queue: str, *, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until ``queue`` is empty, nothing taken from it is unsettled and its handlers
        have returned. Re-raise the first exception a handler raised since the last join;
        raise ``TimeoutError`` if the queue has not drained within ``timeout`` seconds."""
        source = self._queue(queue, started=False)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            if not source and not source.unacked and not source.tasks:
                return
            if not await self._wait_for_change(deadline - loop.time()):
                raise TimeoutError(
                    f"{queue}: {len(source)} ready and {len(source.unacked)} "
                    f"unsettled after {timeout}s"
                )

    # -- internals -----------------------------------------------------------------------

    def _queue(self, logical: str, *, started: bool = True) -> _Queue:
        self.topology.spec(logical)  # ValueError for a name outside the topology
        if started and not self._started:
            raise RuntimeError("EmbeddedBroker.start() has not been called")
        return self._queues[logical]

    def _settle(self, delivery: _EmbeddedDelivery, requeue: bool | None) -> None:
        """Ack (``None``), give back (``True``) or dead-letter (``False``); once only."""
        queue = delivery._queue
        if delivery not in queue.unacked:
            return  # settled already, or taken back when its consumer was cancelled
        queue.unacked.discard(delivery)
        self._gets.discard(delivery)
        if delivery._owner is not None:
            delivery._owner.holding.discard(delivery)
        stored = delivery._stored
        if requeue is False:
            self._dead_letter(queue, stored, "rejected")
        elif requeue:
            stored.returns += 1
            stored.redelivered = True
            limit = queue.spec.delivery_limit
            # Quorum queues allow `limit` redeliveries (limit + 1 deliveries in all), and
            # dead-letter the message when it comes back once more.
            if limit is not None and stored.returns > limit:
                self._dead_letter(queue, stored, "delivery_limit")
            else:
                queue.returned.append(stored)
        self._dispatch(queue)

    def _dead_letter(self, queue: _Queue, stored: _Stored, reason: str) -> None:
        if queue.spec.dead_letter is None:
            # RabbitMQ drops a dead letter that has nowhere to go; so do we, loudly.
            log.warning(
                "broker.dropped", queue=queue.spec.name, message_id=stored.message_id, reason=reason
            )
            return
        target = self._queues[queue.spec.dead_letter]
        self._append(target, _Stored(stored.body, stored.message_id, stored.headers))

    def _append(self, queue: _Queue, stored: _Stored) -> None:
        queue.ready.append(stored)
        ttl = queue.spec.message_ttl
        if ttl is not None:
            # Every message of a retry queue has the same lifetime, so the one at the head
            # is the one whose time is up (as RabbitMQ expires from the head).
            asyncio.get_running_loop().call_later(ttl / 1000, self._expire, queue)
        self._dispatch(queue)

    def _expire(self, queue: _Queue) -> None:
        stored = queue.pop()
        if stored is not None:
            self._dead_letter(queue, stored, "expired")

    def _dispatch(self, queue: _Queue) -> None:
        """Hand ready messages to consumers with room, round robin."""
        while queue and queue.consumers:
            count = len(queue.consumers)
            for step in range(count):
                consumer = queue.consumers[(queue.turn + step) % count]
                if consumer.has_room():
                    queue.turn = (queue.turn + step + 1) % count
                    break
            else:
                break
            stored = queue.pop()
            assert stored is not None
            delivery = _EmbeddedDelivery(self, queue, stored, consumer)
            queue.unacked.add(delivery)
            consumer.holding.add(delivery)
            task = asyncio.get_running_loop().create_task(consumer.run(delivery))
            for owner in (consumer.tasks, queue.tasks):
                owner.add(task)
                task.add_done_callback(owner.discard)
            task.add_done_callback(lambda _: self._notify())
        self._notify()

    def _record(self, exc: Exception) -> None:
        if self._error is None:
            self._error = exc

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_for_change(self, remaining: float) -> bool:
        """Wait for any change of state; ``False`` once ``remaining`` has run out."""
        if remaining <= 0:
            return False
        try:
            async with asyncio.timeout(remaining):
                await self._changed.wait()
        except TimeoutError:
            return False
        return True
