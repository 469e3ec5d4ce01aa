"""The generic consumer loop: decode nothing, decide everything about ack, retry and
dead-letter, so that a handler sees a :class:`Message` and never the transport.

A handler that returns has succeeded: the message is acked. One that raises
:class:`Poison` has met a message that can never succeed: it goes to the queue's ``.dead``
queue at once, with the reason (and, for a message we did not write, without its body).
Any other exception is transient: the message is published again to the same queue with
its attempt count raised, until ``max_attempts``, and then dead-lettered with the reason
"gave up after N attempts: <ExceptionClass>". An exception that says the database or the
broker is unreachable is not the message's fault: the message goes round again after a
pause, its attempt count unchanged.

We count attempts in our own header rather than trusting the broker: RabbitMQ ignores an
``x-death`` set by a client, and from RabbitMQ 4.3 a requeueing nack no longer counts
toward a quorum queue's delivery limit. The queue's ``x-delivery-limit`` stays as the
backstop for a message that kills the worker process before it can be settled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import structlog
from pydantic import BaseModel, ValidationError
from structlog.typing import FilteringBoundLogger

from encompass.adapters.broker import Broker, Consumer, Delivery, Message, Poison, PublishError
from encompass.adapters.unavailable import unavailable

ATTEMPTS_HEADER = "x-encompass-attempts"
DEAD_REASON_HEADER = "x-encompass-dead-reason"
# On a dead letter whose body and headers were dropped: how many bytes the body had.
DROPPED_HEADER = "x-encompass-dropped-bytes"

Handler = Callable[[Message], Awaitable[None]]
M = TypeVar("M", bound=BaseModel)
UNAVAILABLE_PAUSE = 1.0  # seconds before a message that met an outage goes round again

log = structlog.get_logger()


def decoding(
    model: type[M],
    handle: Callable[[M], Awaitable[None]],
    refuse: Callable[[ValidationError], Poison],
) -> Handler:
    """A handler that parses each body as ``model`` and hands ``handle`` the model, never
    bytes; a body that is not one is dead-lettered with the reason ``refuse`` gives."""

    async def handler(message: Message) -> None:
        try:
            parsed = model.model_validate_json(message.body)
        except ValidationError as exc:
            raise refuse(exc) from None
        await handle(parsed)

    return handler


def default_backoff(attempt: int) -> float:
    """Seconds to wait before retrying after failed attempt number ``attempt`` (1-based):
    0.4, 0.8, 1.6 … capped at 5, short because the message holds a prefetch slot."""
    return float(min(0.2 * 2**attempt, 5.0))


def attempts_of(message: Message) -> int:
    """How many attempts at this message have failed before, from our own header."""
    raw = message.headers.get(ATTEMPTS_HEADER, 0)
    try:
        return max(int(raw), 0)
    except (TypeError, ValueError):
        # A header we did not write: count from zero rather than lose the message.
        return 0


async def run_consumer(
    broker: Broker,
    queue: str,
    handler: Handler,
    *,
    max_attempts: int = 5,
    backoff: Callable[[int], float] | None = None,
    prefetch: int = 16,
) -> Consumer:
    """Consume ``queue`` with ``handler`` under the retry and dead-letter policy above.

    Every message ends acked exactly when its outcome (success, a retry copy, or a dead
    letter) is safe with the broker; if publishing that copy fails, the original is given
    back to the queue instead, so nothing is lost. Returns the consumer to cancel.
    """
    dead = broker.topology.dead_letter_of(queue)
    if dead is None:
        raise ValueError(f"queue {queue!r} has no dead-letter queue to run a consumer on")
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    wait = default_backoff if backoff is None else backoff

    async def on_delivery(delivery: Delivery) -> None:
        message = delivery.message
        attempt = attempts_of(message) + 1
        bound = log.bind(message_id=message.message_id, queue=queue, attempt=attempt)
        try:
            await handler(message)
        except Poison as exc:
            await _forward(
                broker,
                delivery,
                bound,
                dead,
                outcome="dead",
                headers={DEAD_REASON_HEADER: exc.reason, ATTEMPTS_HEADER: attempt},
                keep_body=exc.keep_body,
            )
        except Exception as exc:
            # Only the class: an exception's text may quote personal data from the body.
            error = type(exc).__name__
            if unavailable(exc) is not None:
                # The database or broker is away, not the message at fault: put it back
                # after a pause without counting an attempt, so an outage of any length
                # dead-letters nothing.
                await asyncio.sleep(UNAVAILABLE_PAUSE)
                await _forward(
                    broker,
                    delivery,
                    bound,
                    queue,
                    outcome="retry",
                    error=error,
                    headers={ATTEMPTS_HEADER: attempt - 1},
                )
            elif attempt < max_attempts:
                # The retry copy goes to the back of the queue. Order does not matter:
                # each message stands alone and is idempotent by its message_id.
                pause = wait(attempt)
                if pause > 0:
                    await asyncio.sleep(pause)
                await _forward(
                    broker,
                    delivery,
                    bound,
                    queue,
                    outcome="retry",
                    error=error,
                    headers={ATTEMPTS_HEADER: attempt},
                )
            else:
                await _forward(
                    broker,
                    delivery,
                    bound,
                    dead,
                    outcome="dead",
                    error=error,
                    headers={
                        DEAD_REASON_HEADER: f"gave up after {attempt} attempts: {error}",
                        ATTEMPTS_HEADER: attempt,
                    },
                )
        else:
            await delivery.ack()
            bound.info("message.processed", outcome="acked")

    return await broker.consume(queue, on_delivery, prefetch=prefetch)


async def _forward(
    broker: Broker,
    delivery: Delivery,
    bound: FilteringBoundLogger,
    target: str,
    *,
    outcome: str,
    headers: Mapping[str, Any],
    error: str | None = None,
    keep_body: bool = True,
) -> None:
    """Publish a copy of the delivery to ``target`` with ``headers`` added, confirmed, then
    ack the original; if the broker does not confirm, give the original back. Without
    ``keep_body`` the copy has an empty body and none of the original's headers."""
    message = delivery.message
    extra = {} if error is None else {"error": error}
    body, all_headers = message.body, {**message.headers, **headers}
    if not keep_body:
        body, all_headers = b"", {**headers, DROPPED_HEADER: len(message.body)}
    try:
        await broker.publish(target, body, message_id=message.message_id, headers=all_headers)
    except PublishError as exc:
        # The copy may not exist: keep the original. Its requeue counts toward the
        # broker's delivery limit, which dead-letters it if this keeps happening.
        await delivery.reject(requeue=True)
        bound.warning(
            "message.requeued", outcome="requeued", target=target, publish_error=str(exc), **extra
        )
        return
    await delivery.ack()
    if outcome == "dead":
        bound.warning("message.dead", outcome=outcome, reason=headers[DEAD_REASON_HEADER], **extra)
    else:
        bound.info("message.retry", outcome=outcome, **extra)
