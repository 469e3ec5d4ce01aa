"""The generic consumer loop: decode nothing, decide everything about ack, retry and
dead-letter, so that a handler sees a :class:`Message` and never the transport.

A handler that returns has succeeded: the message is acked. One that raises
:class:`Poison` has met a message that can never succeed: it goes to the queue's ``.dead``
queue at once, with the reason (and, for a message we did not write, without its body).
Any other exception is transient: the message is published again with its attempt count
raised, to the queue's retry queue for its backoff (``adapters/topology.py``: it expires
back to the work queue; nothing sleeps holding it), until ``max_attempts``, and then
dead-lettered with the reason "gave up after N attempts: <ExceptionClass>". An exception
that says the database or the broker is unreachable is not the message's fault: the
message goes round again after a pause, its attempt count unchanged.

We count attempts in our own header rather than trusting the broker: RabbitMQ ignores an
``x-death`` set by a client, and from RabbitMQ 4.3 a requeueing nack no longer counts
toward a quorum queue's delivery limit. The queue's ``x-delivery-limit`` stays as the
backstop for a message that kills the worker process before it can be settled.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from pydantic import BaseModel, ValidationError
from structlog.typing import FilteringBoundLogger

from encompass.adapters.broker import (
    Broker,
    Consumer,
    Delivery,
    Message,
    Parts,
    Poison,
    PublishError,
)
from encompass.adapters.unavailable import unavailable

ATTEMPTS_HEADER = "x-encompass-attempts"
DEAD_REASON_HEADER = "x-encompass-dead-reason"
# On a dead letter whose body and headers were dropped: how many bytes the body had.
DROPPED_HEADER = "x-encompass-dropped-bytes"

Handler = Callable[[Message], Awaitable[None]]
# Called with a batch of messages; returns once all are committed, or raises. It may
# instead return, for each message, None (done) or the exception that message met alone.
BatchHandler = Callable[[Sequence[Message]], Awaitable[Sequence[Exception | None] | None]]
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
    0.4, 0.8, 1.6 … capped at 5 (the retry queue rounds it to one of its delays)."""
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
        bound = log.bind(
            message_id=message.message_id, queue=queue, attempt=attempts_of(message) + 1
        )
        try:
            await handler(message)
        except Exception as exc:
            await _settle_failure(broker, queue, dead, delivery, exc, max_attempts, wait)
        else:
            await delivery.ack()
            bound.info("message.processed", outcome="acked")

    return await broker.consume(queue, on_delivery, prefetch=prefetch)


@dataclass(frozen=True, slots=True)
class _Route:
    """Where a failed message (or a part of one) goes, and with what."""

    target: str
    outcome: str
    headers: dict[str, Any]
    error: str | None = None
    keep_body: bool = True


def _route(
    broker: Broker,
    queue: str,
    dead: str,
    attempt: int,
    exc: Exception,
    max_attempts: int,
    wait: Callable[[int], float],
) -> _Route:
    """The policy: a dead letter for a poison message, a retry copy for a transient
    failure, a dead letter once attempts run out."""
    if isinstance(exc, Poison):
        return _Route(
            dead,
            "dead",
            {DEAD_REASON_HEADER: exc.reason, ATTEMPTS_HEADER: attempt},
            keep_body=exc.keep_body,
        )
    # Only the class: an exception's text may quote personal data from the body.
    error = type(exc).__name__
    if unavailable(exc) is not None:
        # The database or broker is away, not the message at fault: it goes round again
        # after a pause without counting an attempt, so an outage of any length
        # dead-letters nothing.
        return _Route(
            _later(broker, queue, UNAVAILABLE_PAUSE),
            "retry",
            {ATTEMPTS_HEADER: attempt - 1},
            error,
        )
    if attempt < max_attempts:
        # The retry copy waits out its backoff in a retry queue, which hands it back to
        # the end of the work queue: no consumer slot is held meanwhile. Order does not
        # matter: each message stands alone and is idempotent by its message_id.
        return _Route(
            _later(broker, queue, wait(attempt)), "retry", {ATTEMPTS_HEADER: attempt}, error
        )
    return _Route(
        dead,
        "dead",
        {
            DEAD_REASON_HEADER: f"gave up after {attempt} attempts: {error}",
            ATTEMPTS_HEADER: attempt,
        },
        error,
    )


async def _settle_failure(
    broker: Broker,
    queue: str,
    dead: str,
    delivery: Delivery,
    exc: Exception,
    max_attempts: int,
    wait: Callable[[int], float],
) -> None:
    """Settle one delivery whose handling raised ``exc`` (see :func:`_route`); for
    :class:`Parts`, each part as a copy of its own."""
    message = delivery.message
    attempt = attempts_of(message) + 1
    bound = log.bind(message_id=message.message_id, queue=queue, attempt=attempt)
    if isinstance(exc, Parts):
        await _forward_parts(
            broker,
            delivery,
            bound,
            [
                (body, _route(broker, queue, dead, attempt, part, max_attempts, wait))
                for body, part in exc.parts
            ],
        )
        return
    route = _route(broker, queue, dead, attempt, exc, max_attempts, wait)
    await _forward(
        broker,
        delivery,
        bound,
        route.target,
        outcome=route.outcome,
        headers=route.headers,
        error=route.error,
        keep_body=route.keep_body,
    )


def _later(broker: Broker, queue: str, seconds: float) -> str:
    """Where a message to be tried again in about ``seconds`` goes: the work queue itself
    when there is nothing to wait, else the retry queue for that delay."""
    if seconds <= 0:
        return queue
    return broker.topology.retry_queue(queue, seconds) or queue


async def _give_back(items: list[Delivery]) -> None:
    for delivery in items:
        with contextlib.suppress(Exception):
            await delivery.reject(requeue=True)


class _Batch:
    """The deliveries gathered for one call of a batch handler."""

    def __init__(self) -> None:
        self.items: list[Delivery] = []
        self.weight = 0
        self.full = asyncio.Event()
        self.done = asyncio.Event()


async def run_batch_consumer(
    broker: Broker,
    queue: str,
    handler: BatchHandler,
    *,
    batch_size: int = 64,
    batch_wait: float = 0.01,
    max_attempts: int = 5,
    backoff: Callable[[int], float] | None = None,
    prefetch: int | None = None,
    concurrency: int = 1,
    weight: Callable[[Message], int] | None = None,
) -> Consumer:
    """Consume ``queue`` in batches: up to ``batch_size`` messages, gathered for at most
    ``batch_wait`` seconds after the first, go to ``handler`` in one call, which commits
    them in one transaction or raises. Each message is acked only once the call returned.
    A handler that has already dealt with each message on its own (sent it somewhere: it
    must not be called again for the others) returns a result per message instead, and
    each failed message meets the policy of :func:`run_consumer` alone; a message naming
    several items whose fates differ gets :class:`Parts`, one copy per failing part.

    When the call raises, the batch is split in halves and each half tried again, down to
    single messages, which meet the policy of :func:`run_consumer` (poison, retry, dead
    letter): one bad message never fails the others. An outage (the database or broker
    unreachable) is waited out once for the whole batch, and every message goes round
    again uncounted. Up to ``concurrency`` batches run at once per consumer (one by
    default); ``prefetch`` (one batch more than that by default) lets the next batch
    gather meanwhile.

    ``weight`` counts the items a message names (one by default): a batch is full once
    its messages name ``batch_size`` items, so messages that each carry many items are
    not gathered into one oversized call.
    """
    dead = broker.topology.dead_letter_of(queue)
    if dead is None:
        raise ValueError(f"queue {queue!r} has no dead-letter queue to run a consumer on")
    if max_attempts < 1 or batch_size < 1 or concurrency < 1 or batch_wait < 0:
        raise ValueError(
            "max_attempts, batch_size and concurrency must be at least 1, batch_wait >= 0"
        )
    runner = _BatchRunner(
        broker,
        queue,
        dead,
        handler,
        batch_size=batch_size,
        batch_wait=batch_wait,
        max_attempts=max_attempts,
        wait=default_backoff if backoff is None else backoff,
        concurrency=concurrency,
        weight=weight,
    )
    size = prefetch if prefetch is not None else (concurrency + 1) * batch_size
    return await broker.consume(queue, runner.on_delivery, prefetch=size)


class _BatchRunner:
    def __init__(
        self,
        broker: Broker,
        queue: str,
        dead: str,
        handler: BatchHandler,
        *,
        batch_size: int,
        batch_wait: float,
        max_attempts: int,
        wait: Callable[[int], float],
        concurrency: int,
        weight: Callable[[Message], int] | None = None,
    ) -> None:
        self._weight = weight
        self._broker, self._queue, self._dead, self._handler = broker, queue, dead, handler
        self._size, self._wait_s = batch_size, batch_wait
        self._max_attempts, self._backoff = max_attempts, wait
        self._running = asyncio.Semaphore(concurrency)
        self._gathering: _Batch | None = None

    async def on_delivery(self, delivery: Delivery) -> None:
        leader = self._gathering is None
        if self._gathering is None:
            self._gathering = _Batch()
        mine = self._gathering
        mine.items.append(delivery)
        mine.weight += 1 if self._weight is None else max(self._weight(delivery.message), 1)
        if mine.weight >= self._size:
            mine.full.set()
            self._gathering = None
        if not leader:
            # The first delivery of the batch settles it; this one waits for that.
            await mine.done.wait()
            return
        settled = False
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(mine.full.wait(), self._wait_s)
            if self._gathering is mine:
                self._gathering = None
            async with self._running:
                await self._settle(mine.items)
            settled = True
        finally:
            if self._gathering is mine:
                # Cancelled while gathering: later deliveries must start a batch of their
                # own, not join one nobody will settle.
                self._gathering = None
            if not settled:
                # Cancelled or failed before every delivery was settled: give them all
                # back (settling twice is a no-op), never leave one held unsettled.
                await _give_back(mine.items)
            mine.done.set()

    async def _settle(self, items: list[Delivery]) -> None:
        try:
            outcomes = await self._handler([d.message for d in items])
        except Exception as exc:
            if len(items) == 1:
                await self._fail(items[0], exc)
            elif unavailable(exc) is not None:
                # The whole batch goes round again, uncounted, through the retry queue.
                await asyncio.gather(*(self._fail(delivery, exc) for delivery in items))
            else:
                log.info(
                    "batch.split", queue=self._queue, size=len(items), error=type(exc).__name__
                )
                half = len(items) // 2
                await self._settle(items[:half])
                await self._settle(items[half:])
            return
        if outcomes is None:
            for delivery in items:
                await delivery.ack()
            log.info("batch.processed", queue=self._queue, size=len(items), outcome="acked")
            return
        if len(outcomes) != len(items):
            raise RuntimeError("a batch handler returned a result count unlike its batch")
        await asyncio.gather(
            *(
                delivery.ack() if failure is None else self._fail(delivery, failure)
                for delivery, failure in zip(items, outcomes, strict=True)
            )
        )
        log.info("batch.processed", queue=self._queue, size=len(items))

    async def _fail(self, delivery: Delivery, exc: Exception) -> None:
        await _settle_failure(
            self._broker,
            self._queue,
            self._dead,
            delivery,
            exc,
            self._max_attempts,
            self._backoff,
        )


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


async def _forward_parts(
    broker: Broker,
    delivery: Delivery,
    bound: FilteringBoundLogger,
    parts: Sequence[tuple[bytes, _Route]],
) -> None:
    """Publish one copy per part, each with its own body and route, then ack the original;
    if any copy is not confirmed, give the original back (the copies already published
    are harmless: the handler does nothing twice)."""
    message = delivery.message
    try:
        for body, route in parts:
            headers = {**message.headers, **route.headers}
            if not route.keep_body:
                body, headers = b"", {**route.headers, DROPPED_HEADER: len(body)}
            await broker.publish(route.target, body, message_id=message.message_id, headers=headers)
    except PublishError as exc:
        await delivery.reject(requeue=True)
        bound.warning("message.requeued", outcome="requeued", publish_error=str(exc))
        return
    await delivery.ack()
    for _, route in parts:
        extra = {} if route.error is None else {"error": route.error}
        if route.outcome == "dead":
            bound.warning(
                "message.dead",
                outcome="dead",
                reason=route.headers[DEAD_REASON_HEADER],
                part=True,
                **extra,
            )
        else:
            bound.info("message.retry", outcome=route.outcome, part=True, **extra)
