"""The outbox relay: hands pending deliveries from the database to the broker.

Entries go out many to a message (``ENVELOPES_PER_MESSAGE``, grouped by channel: the list
form of :class:`DeliveryQueued`); a lone entry goes in the one-envelope form. An entry is
marked published only after the broker confirmed its message. A crash between the two
publishes it again on the next pass, and that is harmless: the message id names the
entries (``outbox-<id>``, or ``outbox-<first>..<last>`` for many) and the delivery handler
does nothing for an envelope already delivered through that channel. Messages carry ids
only — never personal data.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, cast

import structlog
from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.broker import Broker, PublishError
from encompass.adapters.db.tables import OutboxEntry
from encompass.adapters.topology import DELIVERIES
from encompass.clock import Clock
from encompass.domain.queued import DeliveryChannel, DeliveryQueued

log = structlog.get_logger()

# Confirms awaited together: one at a time would cap the relay at one round trip each.
_WINDOW: Final = 128
# Envelope ids in one broker message, at most: one delivery batch's worth (the consumer
# gathers messages until they name that many envelopes), so a morning burst costs the
# broker one message per batch rather than one per envelope.
ENVELOPES_PER_MESSAGE: Final = 64

_PENDING = (
    select(OutboxEntry.outbox_id, OutboxEntry.envelope_id, OutboxEntry.channel)
    .where(OutboxEntry.published_at.is_(None))
    .order_by(OutboxEntry.outbox_id)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)


@dataclass(frozen=True, slots=True)
class Pending:
    """An outbox entry not yet confirmed by the broker."""

    outbox_id: int
    envelope_id: str
    channel: DeliveryChannel


def delivery_messages(
    entries: Sequence[Pending], *, per_message: int = ENVELOPES_PER_MESSAGE
) -> list[tuple[bytes, str, list[int]]]:
    """The broker messages for ``entries``: (body, message id, outbox ids it carries).
    Entries are grouped by channel, ``per_message`` at most in one message; a lone entry
    is published in the one-envelope form, with its outbox id."""
    by_channel: dict[DeliveryChannel, list[Pending]] = {}
    for entry in entries:
        by_channel.setdefault(entry.channel, []).append(entry)
    messages: list[tuple[bytes, str, list[int]]] = []
    for channel, group in by_channel.items():
        for start in range(0, len(group), per_message):
            chunk = group[start : start + per_message]
            ids = [e.outbox_id for e in chunk]
            if len(chunk) == 1:
                # The one-envelope form names its outbox entry too, as the message id does.
                queued = DeliveryQueued(
                    outbox_id=ids[0], envelope_id=chunk[0].envelope_id, channel=channel
                )
                message_id = f"outbox-{ids[0]}"
            else:
                queued = DeliveryQueued.of([e.envelope_id for e in chunk], channel)
                message_id = f"outbox-{ids[0]}..{ids[-1]}"
            messages.append((queued.to_bytes(), message_id, ids))
    return messages


async def relay_outbox(
    sessions: async_sessionmaker[AsyncSession], broker: Broker, clock: Clock, *, limit: int = 1000
) -> int:
    """Publish up to ``limit`` pending entries (oldest first) to ``deliveries``, many to a
    message, and mark those the broker confirmed; returns how many were published.
    Entries whose message the broker did not confirm stay pending for the next call. On
    PostgreSQL the entries are locked ``SKIP LOCKED`` while publishing, so relays running
    side by side share the work."""
    async with sessions.begin() as session:
        entries = [
            # Only these two channels are ever written (sealing.py).
            Pending(outbox_id, envelope_id, cast(DeliveryChannel, channel))
            for outbox_id, envelope_id, channel in await session.execute(_PENDING, {"limit": limit})
        ]
        if not entries:
            return 0
        messages = delivery_messages(entries)
        confirmed: list[int] = []
        failed = 0
        for start in range(0, len(messages), _WINDOW):
            chunk = messages[start : start + _WINDOW]
            results = await asyncio.gather(
                *(broker.publish(DELIVERIES, body, message_id=mid) for body, mid, _ in chunk),
                return_exceptions=True,
            )
            for (_, _, ids), result in zip(chunk, results, strict=True):
                if result is None:
                    confirmed.extend(ids)
                elif isinstance(result, PublishError):
                    failed += len(ids)
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
    log.debug("outbox.relayed", published=len(confirmed), messages=len(messages))
    return len(confirmed)
