"""The broker port on RabbitMQ, through aio-pika. Thin: transport only, no business logic.

One robust connection; a publisher-confirms channel for publishing (persistent, mandatory,
so an unroutable message is an error rather than silently dropped); an admin channel for
declaring, ``get`` and ``depth``; and one channel per consumer, so a consumer's prefetch
and its unsettled deliveries are its own and closing it gives them back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

import aio_pika
import aiormq.exceptions
import structlog
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
    HeadersType,
)

from encompass.adapters.broker import (
    Consumer,
    DeliveryHandler,
    Message,
    PublishError,
    checked_headers,
)
from encompass.adapters.topology import Topology

log = structlog.get_logger()
_T = TypeVar("_T")

# What a lost channel or connection raises; a settle or cancel that meets one has nothing
# left to do, because the broker gives the unsettled messages back by itself.
_GONE = (aiormq.exceptions.AMQPError, aiormq.exceptions.ChannelInvalidStateError, ConnectionError)


def _app_headers(raw: Mapping[str, Any] | None) -> dict[str, Any]:
    """Our headers only: drop the broker's dead-letter and delivery-count bookkeeping, and
    give ``bytes`` back for AMQP byte arrays."""
    headers: dict[str, Any] = {}
    for key, value in (raw or {}).items():
        if key in ("x-death", "x-delivery-count") or key.startswith(
            ("x-first-death-", "x-last-death-")
        ):
            continue
        headers[key] = bytes(value) if isinstance(value, bytearray) else value
    return headers


class _RabbitDelivery:
    __slots__ = ("_incoming", "_settled", "message")

    def __init__(self, incoming: AbstractIncomingMessage) -> None:
        self.message = Message(
            body=incoming.body,
            message_id=incoming.message_id or "",
            headers=_app_headers(incoming.headers),
            redelivered=bool(incoming.redelivered),
            user_id=incoming.user_id or None,
        )
        self._incoming = incoming
        self._settled = False

    async def ack(self) -> None:
        if not self._settled:
            self._settled = True
            try:
                await self._incoming.ack()
            except _GONE as exc:
                _settle_lost(self.message, exc)

    async def reject(self, *, requeue: bool) -> None:
        if not self._settled:
            self._settled = True
            try:
                await self._incoming.reject(requeue=requeue)
            except _GONE as exc:
                _settle_lost(self.message, exc)


def _settle_lost(message: Message, exc: BaseException) -> None:
    log.warning(
        "broker.settle_lost",
        message_id=message.message_id,
        error=type(exc).__name__,
        outcome="broker will redeliver",
    )


class _RabbitConsumer:
    def __init__(
        self,
        broker: RabbitBroker,
        logical: str,
        channel: AbstractRobustChannel,
        queue: AbstractQueue,
        handler: DeliveryHandler,
        grace: float,
    ) -> None:
        self._broker, self._logical, self._channel = broker, logical, channel
        self._queue, self._handler, self._grace = queue, handler, grace
        self._inflight: set[asyncio.Task[Any]] = set()
        self._tag: str | None = None
        self._cancelled = False

    async def start(self) -> None:
        self._tag = await self._queue.consume(self._on_message)

    async def _on_message(self, incoming: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        assert task is not None  # aio-pika runs every delivery in a task of its own
        self._inflight.add(task)
        delivery = _RabbitDelivery(incoming)
        try:
            await self._handler(delivery)
        except Exception as exc:
            log.error(
                "broker.handler_failed",
                queue=self._logical,
                message_id=delivery.message.message_id,
                error=type(exc).__name__,
                outcome="requeued",
            )
            await delivery.reject(requeue=True)
        finally:
            self._inflight.discard(task)

    async def cancel(self) -> None:
        if self._cancelled:
            return
        self._cancelled = True
        self._broker._forget(self)
        if self._tag is not None:
            with contextlib.suppress(*_GONE):
                await self._queue.cancel(self._tag)
        # Let running handlers settle what they hold; a handler that cancels its own
        # consumer must not wait for itself.
        waiting = self._inflight - {asyncio.current_task()}
        if waiting:
            await asyncio.wait(waiting, timeout=self._grace)
        # Closing the channel is what gives unsettled deliveries back: basic.cancel alone
        # leaves them held by the channel.
        with contextlib.suppress(*_GONE):
            await self._channel.close()


class RabbitBroker:
    """The broker port on a RabbitMQ server (quorum queues, publisher confirms)."""

    kind: Literal["rabbitmq", "embedded"] = "rabbitmq"

    def __init__(
        self,
        url: str,
        topology: Topology,
        *,
        publish_timeout: float = 10.0,
        connect_timeout: float = 10.0,
        cancel_grace: float = 10.0,
        poll_interval: float = 0.02,
    ) -> None:
        self.topology = topology
        self._url = url
        self._publish_timeout = publish_timeout
        self._connect_timeout = connect_timeout
        self._cancel_grace = cancel_grace
        self._poll_interval = poll_interval
        self._connection: AbstractRobustConnection | None = None
        self._publisher: AbstractRobustChannel | None = None
        self._admin: AbstractRobustChannel | None = None
        self._queues: dict[str, AbstractQueue] = {}
        self._consumers: set[_RabbitConsumer] = set()

    def __repr__(self) -> str:
        return f"RabbitBroker({self.topology!r})"

    async def start(self) -> None:
        """Connect (once) and declare every exchange, queue and binding of the topology.
        Raise ``RuntimeError`` when a queue exists with other arguments."""
        if self._connection is None or self._connection.is_closed:
            self._connection = await aio_pika.connect_robust(
                self._url, timeout=self._connect_timeout
            )
            self._publisher = await self._connection.channel(
                publisher_confirms=True, on_return_raises=True
            )
            self._admin = await self._connection.channel(publisher_confirms=False)
        admin = _require(self._admin)
        try:
            exchanges = {
                e.name: await admin.declare_exchange(
                    e.name, aio_pika.ExchangeType(e.type), durable=True
                )
                for e in self.topology.exchanges()
            }
            for spec in self.topology.queues:
                self._queues[spec.name] = await admin.declare_queue(
                    self.topology.name(spec.name),
                    durable=True,
                    arguments=self.topology.arguments(spec.name),
                )
            by_real = {self.topology.name(name): q for name, q in self._queues.items()}
            for binding in self.topology.bindings():
                await by_real[binding.queue].bind(
                    exchanges[binding.exchange], routing_key=binding.routing_key
                )
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            raise RuntimeError(
                f"RabbitMQ refused our topology ({exc}); a queue or exchange "
                "exists with other arguments: delete it or change the "
                "prefix"
            ) from exc

    async def publish(
        self, queue: str, body: bytes, *, message_id: str, headers: Mapping[str, Any] | None = None
    ) -> None:
        """Publish persistently to ``queue`` and wait for the broker's confirm; raise
        :class:`PublishError` on a nack, a return (unroutable), a timeout or a lost
        connection."""
        routing_key = self.topology.name(queue)
        amqp_headers: HeadersType = {
            key: bytearray(value) if isinstance(value, bytes) else value
            for key, value in checked_headers(headers).items()
        }
        publisher = _require(self._publisher)
        if not _require(self._connection).connected.is_set():
            # Reconnecting: say so now rather than hold the caller (an HTTP request) until
            # the broker is back; the caller retries or answers 503.
            raise PublishError(f"{queue}: not connected to the broker")
        message = aio_pika.Message(
            body,
            message_id=message_id,
            headers=amqp_headers,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        try:
            await publisher.default_exchange.publish(
                message, routing_key, mandatory=True, timeout=self._publish_timeout
            )
        except aiormq.exceptions.PublishError as exc:
            raise PublishError(f"{queue}: returned by the broker as unroutable") from exc
        except aiormq.exceptions.DeliveryError as exc:
            raise PublishError(f"{queue}: refused by the broker (nack)") from exc
        except TimeoutError as exc:
            raise PublishError(f"{queue}: no confirm within {self._publish_timeout}s") from exc
        except _GONE as exc:
            raise PublishError(f"{queue}: connection lost ({type(exc).__name__})") from exc

    async def consume(
        self, queue: str, handler: DeliveryHandler, *, prefetch: int = 16
    ) -> Consumer:
        """Consume ``queue`` on a channel of its own with QoS ``prefetch``."""
        if prefetch < 1:
            raise ValueError("prefetch must be at least 1")
        real = self.topology.name(queue)
        connection = _require(self._connection)
        channel = await connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=prefetch)
        # Declared with the full arguments (idempotent), so the robust channel can
        # re-declare it after a reconnection before restoring the consumer.
        amqp_queue = await channel.declare_queue(
            real, durable=True, arguments=self.topology.arguments(queue)
        )
        consumer = _RabbitConsumer(self, queue, channel, amqp_queue, handler, self._cancel_grace)
        self._consumers.add(consumer)
        await consumer.start()
        return consumer

    async def get(
        self,
        queue: str,
        *,  # the wait for a message is part of the port
        timeout: float = 1.0,  # noqa: ASYNC109
    ) -> _RabbitDelivery | None:
        """Take one message with basic.get, polling until ``timeout``; ``None`` if none."""
        self.topology.spec(queue)
        amqp_queue = self._queues.get(queue)
        if amqp_queue is None:
            raise RuntimeError("RabbitBroker.start() has not been called")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            incoming = await amqp_queue.get(no_ack=False, fail=False, timeout=self._publish_timeout)
            if incoming is not None:
                return _RabbitDelivery(incoming)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            await asyncio.sleep(min(self._poll_interval, remaining))

    async def depth(self, queue: str) -> int:
        """Ready messages of ``queue`` (RabbitMQ's queue.declare-ok count)."""
        real = self.topology.name(queue)
        channel = await _require(self._admin).get_underlay_channel()
        declared = await channel.queue_declare(real, passive=True)
        return int(declared.message_count or 0)

    async def close(self) -> None:
        """Cancel every consumer (letting handlers finish), then close the connection."""
        for consumer in list(self._consumers):
            await consumer.cancel()
        if self._connection is not None:
            await self._connection.close()
        self._connection = self._publisher = self._admin = None
        self._queues.clear()

    def _forget(self, consumer: _RabbitConsumer) -> None:
        self._consumers.discard(consumer)


def _require(value: _T | None) -> _T:
    if value is None:
        raise RuntimeError("RabbitBroker.start() has not been called")
    return value
