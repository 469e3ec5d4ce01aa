"""The outbox relay: hands pending deliveries from the database to the broker.

An entry is marked published only after the broker confirmed it. A crash between the two
publishes it again on the next pass, and that is harmless: the message id is the entry's
(``outbox-<id>``) and the delivery handler does nothing for an envelope already delivered
through that channel. Messages carry ids only — never personal data.
"""

from __future__ import annotations

import asyncio
from typing import Final

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.broker import Broker, PublishError
from encompass.adapters.db.tables import OutboxEntry
from encompass.adapters.topology import DELIVERIES
from encompass.clock import Clock
from encompass.domain.queued import DeliveryQueued

log = structlog.get_logger()

# Confirms awaited together: one at a time would cap the relay at one round trip each.
_WINDOW: Final = 128


def delivery_message(entry: OutboxEntry) -> tuple[bytes, str]:
    """The body and message id of the broker message for ``entry``."""
    queued = DeliveryQueued(
        outbox_id=entry.outbox_id,
        envelope_id=entry.envelope_id,
        channel=entry.channel,
    )
    return queued.to_bytes(), f"outbox-{entry.outbox_id}"


async def relay_outbox(
    sessions: async_sessionmaker[AsyncSession], broker: Broker, clock: Clock, *, limit: int = 1000
) -> int:
    """Publish up to ``limit`` pending entries (oldest first) to ``deliveries`` and mark
    those the broker confirmed; returns how many were published. Entries the broker did
    not confirm stay pending for the next call. On PostgreSQL the entries are locked
    ``SKIP LOCKED`` while publishing, so relays running side by side share the work."""
    async with sessions.begin() as session:
        entries = list(
            (
                await session.scalars(
                    select(OutboxEntry)
                    .where(OutboxEntry.published_at.is_(None))
                    .order_by(OutboxEntry.outbox_id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()
        )
        if not entries:
            return 0
        confirmed: list[int] = []
        failed = 0
        for start in range(0, len(entries), _WINDOW):
            chunk = entries[start : start + _WINDOW]
            results = await asyncio.gather(
                *(_publish(broker, e) for e in chunk), return_exceptions=True
            )
            for entry, result in zip(chunk, results, strict=True):
                if result is None:
                    confirmed.append(entry.outbox_id)
                elif isinstance(result, PublishError):
                    failed += 1
                elif isinstance(result, BaseException):
                    raise result
        if confirmed:
            await session.execute(
                update(OutboxEntry)
                .where(OutboxEntry.outbox_id.in_(confirmed))
                .values(published_at=clock.now())
                .execution_options(synchronize_session=False)
            )
    if failed:
        log.warning("outbox.publish_failed", entries=failed, outcome="retried next pass")
    log.debug("outbox.relayed", published=len(confirmed))
    return len(confirmed)


async def _publish(broker: Broker, entry: OutboxEntry) -> None:
    body, message_id = delivery_message(entry)
    await broker.publish(DELIVERIES, body, message_id=message_id)
