"""The intake worker: consumes ``intake`` (fed by the police exchange ``encompass.incidents``)
and hands each report to the ingest use case, as ``POST /v1/incidents`` does.

Its policy differs from the runner (``runner.py``) on two points, both because the message comes
from outside and its sender is known only from the broker-set ``user_id``:

* A refused message (no ``message_id``, not a force's user, an invalid report, a version
  conflict) is dead-lettered to ``intake.dead`` as a small JSON record
  ``{"message_id", "user_id", "reason"}`` and NOT as the original body: a refused report
  would otherwise lie in a dead-letter queue, in clear and for as long as nobody looks,
  holding a child's details. The force still holds its report; the record tells the
  operator which message to ask it to correct and send again.
* A transient failure (database or broker down) gives the message back to the queue
  (``reject(requeue=True)``) after a pause, rather than publishing a retry copy: a copy
  published by the service would lose the broker-validated ``user_id``, and with it the
  only proof of who sent it. The queue's delivery limit dead-letters a message that keeps
  failing, body included, so that a valid report is never lost (on RabbitMQ 4.3 and later,
  where a requeue is no longer counted, it is retried until the fault is mended).

Run it with ``encompass worker intake`` or ``python -m workers.intake``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.broker import Broker, Consumer, Delivery, Message, PublishError
from encompass.adapters.topology import DEAD_SUFFIX, INTAKE
from encompass.bootstrap import Container
from encompass.clock import Clock
from encompass.services.intake.from_amqp import Refused, intake, shown_id
from encompass.services.intake.ingest import Accepted
from encompass.services.intake.ingest_batch import IngestBatcher
from encompass.workers.runner import DEAD_REASON_HEADER

log = structlog.get_logger()

# Seconds to wait before giving a transiently failed message back: it holds a prefetch
# slot meanwhile, which keeps a broken database from spinning the consumer.
RETRY_PAUSE = 1.0


def dead_record(message_id: str, user_id: str | None, reason: str) -> bytes:
    """The body of a refused message's dead letter: who, which message, why; no report."""
    return json.dumps(
        {
            "message_id": shown_id(message_id) if message_id else None,
            "user_id": user_id,
            "reason": reason,
        },
        sort_keys=True,
    ).encode()


def _dead_id(message_id: str) -> str:
    # The dead letter's own id: the original when it is a plain id, else a fresh one, so
    # that free text in a message_id is not carried along.
    return message_id if shown_id(message_id) == message_id else str(uuid.uuid4())


Ingest = Callable[[async_sessionmaker[AsyncSession], Broker, Clock, Message], Awaitable[Accepted]]


def batched_intake(container: Container, most: int) -> Ingest:
    """:func:`~encompass.services.intake.from_amqp.intake`, the reports of the messages
    handled at once (at most ``most``) stored together (``services/intake/ingest_batch.py``)."""
    batcher = IngestBatcher(
        container.sessions,
        container.broker,
        container.clock,
        max_batch=min(most, container.settings.batch_size),
        company_wait=container.settings.ingest_wait_ms / 1000,
    )

    async def ingest(
        sessions: async_sessionmaker[AsyncSession], broker: Broker, clock: Clock, message: Message
    ) -> Accepted:
        return await intake(sessions, broker, clock, message, reporter=batcher.report)

    return ingest


async def start(
    container: Container,
    *,
    retry_pause: float = RETRY_PAUSE,
    prefetch: int = 16,
    ingest: Ingest | None = None,
) -> Consumer:
    """Start consuming ``intake`` (each message through ``ingest``, by default
    :func:`batched_intake`); the returned consumer's ``cancel()`` stops it."""
    broker = container.broker
    ingest = ingest or batched_intake(container, prefetch)

    async def on_delivery(delivery: Delivery) -> None:
        message = delivery.message
        bound = log.bind(
            message_id=shown_id(message.message_id), queue=INTAKE, user_id=message.user_id
        )
        try:
            accepted = await ingest(container.sessions, broker, container.clock, message)
        except Refused as exc:
            try:
                await broker.publish(
                    INTAKE + DEAD_SUFFIX,
                    dead_record(message.message_id, message.user_id, exc.reason),
                    message_id=_dead_id(message.message_id),
                    headers={DEAD_REASON_HEADER: exc.reason},
                )
            except PublishError:
                await delivery.reject(requeue=True)
                bound.warning("message.requeued", outcome="requeued")
                return
            await delivery.ack()
            bound.warning("message.dead", outcome="dead", reason=exc.reason)
        except Exception as exc:
            # Only the class: an exception's text may quote personal data from the body.
            bound.warning("message.retry", outcome="requeued", error=type(exc).__name__)
            await asyncio.sleep(retry_pause)
            await delivery.reject(requeue=True)
        else:
            await delivery.ack()
            bound.info(
                "message.processed",
                outcome="acked",
                incident_id=accepted.incident_id,
                duplicate=accepted.duplicate,
            )

    return await broker.consume(INTAKE, on_delivery, prefetch=prefetch)
