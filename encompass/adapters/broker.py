"""The broker port: what the workers and services need from a message broker, and no more.

Two adapters implement it with the same semantics, proven by one contract suite
(``tests/contract``): :mod:`encompass.adapters.rabbit` (RabbitMQ quorum queues) and
:mod:`encompass.adapters.embedded_broker` (in process, for the demo and unit tests).

Queues are named by their LOGICAL name ("incidents", "incidents.dead", …); the broker's
:class:`~encompass.adapters.topology.Topology` maps them to real, prefixed names.
Delivery is at least once: every message carries a producer-assigned ``message_id`` so a
consumer can make a redelivery harmless.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from encompass.adapters.topology import Topology

HeaderValue = str | int | bytes


@dataclass(frozen=True, slots=True)
class Message:
    """One message as a consumer sees it, free of any transport type."""

    body: bytes
    # Assigned by the producer and kept across retries and dead-lettering: the key that
    # makes a redelivery harmless.
    message_id: str
    # Only the application's headers: the broker's own bookkeeping (x-death,
    # x-delivery-count, …) is left out so both adapters show the same thing.
    headers: Mapping[str, Any] = field(default_factory=dict)
    redelivered: bool = False
    # The AMQP ``user_id`` property. RabbitMQ refuses a message whose user_id is not the
    # publishing connection's user, so when set it is who published. The service never sets
    # it, and the embedded broker has no users: ``None`` there.
    user_id: str | None = None


class Delivery(Protocol):
    """A message handed to a consumer, to be settled exactly once.

    Settling twice is a no-op. Settling a delivery the broker has already taken back (its
    consumer was cancelled or its connection lost) is a no-op too: the message is queued
    again and will be redelivered.
    """

    @property
    def message(self) -> Message: ...

    async def ack(self) -> None:
        """The message is done with: the broker forgets it."""
        ...

    async def reject(self, *, requeue: bool) -> None:
        """Give the message back (``requeue=True``, counted toward the queue's delivery
        limit) or dead-letter it to the queue's ``.dead`` queue (``requeue=False``)."""
        ...


DeliveryHandler = Callable[[Delivery], Awaitable[None]]


class Consumer(Protocol):
    """A running subscription to one queue."""

    async def cancel(self) -> None:
        """Stop receiving, let in-flight handlers finish (for a bounded grace period), then
        give every unsettled delivery back to the queue, marked redelivered."""
        ...


class Poison(Exception):
    """Raised by a handler: a message that can never succeed (unparseable, invalid).
    ``reason`` is stored on the dead letter and logged, so it must hold no personal data.

    ``keep_body=False`` dead-letters an empty body without the message's own headers (only
    ours, and the dropped body's size): for a message we did not write, which could hold
    anything, a child's details included, and should not lie in a dead-letter queue.

    The worker runner dead-letters it at once; it lives here, beside the port, so that a
    use case can raise it without knowing who runs it."""

    def __init__(self, reason: str, *, keep_body: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.keep_body = keep_body


class Parts(Exception):
    """A batch handler's result for a message naming several items whose fates differ:
    each part, a body naming some of the message's items and the exception they met, is
    settled by the worker runner as a message of its own (a copy of the original with
    that body, under the usual poison, retry and dead-letter policy), and the original is
    acked once every copy is safe with the broker. Items named in no part succeeded."""

    def __init__(self, parts: Sequence[tuple[bytes, Exception]]) -> None:
        super().__init__(f"{len(parts)} part(s) failed")
        self.parts = list(parts)


class PublishError(Exception):
    """The broker did not confirm a message (nack, returned as unroutable, connection lost,
    timeout). The message may or may not have been stored: retry with the same
    ``message_id``."""


class Broker(Protocol):
    """A message broker with at-least-once delivery and dead-letter queues.

    A handler passed to :meth:`consume` must settle each delivery (ack or reject). One that
    raises before settling has its delivery rejected with ``requeue=True``; one that returns
    without settling leaves it unacknowledged until its consumer is cancelled.
    """

    kind: Literal["rabbitmq", "embedded"]
    topology: Topology

    async def start(self) -> None:
        """Connect and declare the topology. Idempotent: calling it again (or after
        :meth:`close`) neither fails nor loses messages."""
        ...

    async def publish(
        self, queue: str, body: bytes, *, message_id: str, headers: Mapping[str, Any] | None = None
    ) -> None:
        """Store one persistent message on ``queue``; return only once the broker has
        confirmed it. Raise :class:`PublishError` when it did not."""
        ...

    async def consume(
        self, queue: str, handler: DeliveryHandler, *, prefetch: int = 16
    ) -> Consumer:
        """Call ``handler`` for each message of ``queue``, with at most ``prefetch``
        deliveries unsettled at once."""
        ...

    async def get(
        self,
        queue: str,
        *,  # the wait for a message is part of the port
        timeout: float = 1.0,  # noqa: ASYNC109
    ) -> Delivery | None:
        """Take one message from ``queue`` (waiting up to ``timeout`` seconds for one), or
        ``None``. The delivery must be settled like a consumed one."""
        ...

    async def depth(self, queue: str) -> int:
        """How many messages of ``queue`` are ready, not counting unsettled deliveries."""
        ...

    async def close(self) -> None:
        """Cancel every consumer and disconnect; unsettled deliveries go back to their
        queues. Safe to call twice."""
        ...


def checked_headers(headers: Mapping[str, Any] | None) -> dict[str, HeaderValue]:
    """A copy of ``headers``, refusing values that would not survive the round trip the same
    way on every adapter (only ``str``, ``int`` and ``bytes`` do)."""
    result: dict[str, HeaderValue] = {}
    for key, value in (headers or {}).items():
        if not isinstance(key, str) or not isinstance(value, str | int | bytes):
            raise TypeError(
                f"header {key!r}: values must be str, int or bytes, not {type(value).__name__}"
            )
        result[key] = value
    return result
