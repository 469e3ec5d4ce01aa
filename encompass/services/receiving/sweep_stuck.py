"""The sweeper: every notice reaches a final status, or a person, in bounded time.

Stuck deliveries: a notice ``sealed`` or ``sending`` whose envelope has seen nothing happen
for ``stuck_after`` (its message lost, dead-lettered while the database was down) gets a
fresh outbox entry, up to ``max_requeues`` times; then that envelope fails, and a notice
whose every envelope failed is ``failed`` with an admin alert. A notice still ``sending``
with nothing delivered ``expire_after`` after release (an e-mail pointer nobody followed)
is failed the same way. Each failure is e-mailed too (``alert_mail.py``). Overdue
acknowledgements are escalated by :mod:`.escalate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import ColumnElement, exists, func, not_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.db.tables import DeliveryAttempt, Notice, OutboxEntry, SealedEnvelope
from encompass.clock import Clock
from encompass.domain.status import FINAL_OUTCOMES, IN_FLIGHT, DeliveryOutcome, NoticeStatus, values
from encompass.services.delivery.fail_notice import fail_if_undeliverable, give_up
from encompass.services.receiving.alert_mail import AlertMail
from encompass.services.receiving.escalate_overdue import Escalated, escalate_overdue

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class SweepPolicy:
    """How long things may take. The defaults suit a morning: a lost message is noticed
    within minutes, escalation to admins comes an hour after the day starts."""

    stuck_after: timedelta = timedelta(minutes=10)
    max_requeues: int = 3
    expire_after: timedelta = timedelta(hours=72)
    ack_grace: timedelta = timedelta(hours=1)
    admins_after: timedelta = timedelta(hours=1)
    limit: int = 500


@dataclass(frozen=True, slots=True)
class Swept:
    requeued: int = 0
    gave_up: int = 0
    expired: int = 0
    escalated: Escalated = Escalated()  # noqa: RUF009 (frozen: one shared value is safe)


def _pending_envelope() -> ColumnElement[bool]:
    """A notice envelope whose channel has reached no final outcome yet."""
    final = exists().where(
        DeliveryAttempt.envelope_id == SealedEnvelope.envelope_id,
        DeliveryAttempt.outcome.in_(values(FINAL_OUTCOMES)),
    )
    return exists().where(
        SealedEnvelope.notice_id == Notice.notice_id,
        SealedEnvelope.kind == "notice",
        # Only envelopes with a delivery channel: a browser's waits in /inbox.
        exists().where(OutboxEntry.envelope_id == SealedEnvelope.envelope_id),
        SealedEnvelope.delivered_at.is_(None),
        not_(final),
    )


async def sweep(
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    signing_key: Ed25519PrivateKey,
    *,
    policy: SweepPolicy = SweepPolicy(),
) -> Swept:
    """One pass: re-queue or give up stuck deliveries, expire unfetched notices, escalate
    overdue ones. Safe to run from several dispatchers at once (rows are taken
    ``SKIP LOCKED`` on PostgreSQL) and after any crash (all state is in the database)."""
    now = clock.now()
    requeued, gave_up = await _unstick(sessions, now, policy)
    expired = await _expire(sessions, now, policy)
    escalated = await escalate_overdue(
        sessions,
        clock,
        signing_key,
        ack_grace=policy.ack_grace,
        admins_after=policy.admins_after,
        limit=policy.limit,
    )
    return Swept(requeued, gave_up, expired, escalated)


async def _unstick(
    sessions: async_sessionmaker[AsyncSession], now: datetime, policy: SweepPolicy
) -> tuple[int, int]:
    cutoff = now - policy.stuck_after
    no_envelope = not_(
        exists().where(
            SealedEnvelope.notice_id == Notice.notice_id, SealedEnvelope.kind == "notice"
        )
    )
    requeued = gave_up = 0
    async with sessions.begin() as session:
        notices = (
            await session.scalars(
                select(Notice)
                .where(
                    Notice.status.in_(values(IN_FLIGHT)),
                    Notice.updated_at <= cutoff,
                    or_(_pending_envelope(), no_envelope),
                )
                .order_by(Notice.updated_at)
                .limit(policy.limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
        for notice in notices:
            requeued += await _unstick_notice(session, notice, now, cutoff, policy)
            gave_up += int(await fail_if_undeliverable(session, notice, now))
    if requeued or gave_up:
        log.warning("sweep.unstuck", requeued=requeued, gave_up=gave_up)
    return requeued, gave_up


async def _unstick_notice(
    session: AsyncSession, notice: Notice, now: datetime, cutoff: datetime, policy: SweepPolicy
) -> int:
    """Re-queue the notice's quiet, unfinished envelopes; fail those out of re-queues.
    Returns how many entries were re-queued."""
    last_attempt = (
        select(func.max(DeliveryAttempt.at))
        .where(DeliveryAttempt.envelope_id == SealedEnvelope.envelope_id)
        .scalar_subquery()
    )
    final = exists().where(
        DeliveryAttempt.envelope_id == SealedEnvelope.envelope_id,
        DeliveryAttempt.outcome.in_(values(FINAL_OUTCOMES)),
    )
    envelopes = (
        await session.execute(
            select(SealedEnvelope.envelope_id, last_attempt).where(
                SealedEnvelope.notice_id == notice.notice_id,
                SealedEnvelope.kind == "notice",
                SealedEnvelope.delivered_at.is_(None),
                not_(final),
            )
        )
    ).all()
    requeued = 0
    for envelope_id, attempted_at in envelopes:
        entries = (
            await session.scalars(
                select(OutboxEntry)
                .where(OutboxEntry.envelope_id == envelope_id)
                .order_by(OutboxEntry.outbox_id)
            )
        ).all()
        latest = max(
            [e.created_at for e in entries] + ([attempted_at] if attempted_at is not None else []),
            default=None,
        )
        if latest is not None and latest > cutoff:
            continue  # something happened lately: not stuck (yet)
        if not entries:
            continue  # cannot happen (sealed with its entry); nothing to re-queue from
        if any(e.published_at is None for e in entries):
            continue  # the relay has not sent it yet: a broker outage, not a lost message
        if len(entries) <= policy.max_requeues:
            session.add(
                OutboxEntry(
                    envelope_id=envelope_id,
                    channel=entries[-1].channel,
                    created_at=now,
                    published_at=None,
                )
            )
            requeued += 1
            continue
        session.add(
            DeliveryAttempt(
                envelope_id=envelope_id,
                channel=entries[-1].channel,
                # 0: the sweeper's verdict, not a try of the channel
                attempt=0,
                at=now,
                outcome=DeliveryOutcome.FAILED,
                detail=f"gave up: not delivered after {len(entries)} queueings",
            )
        )
        log.error(
            "delivery.failed",
            envelope_id=envelope_id,
            notice_id=notice.notice_id,
            channel=entries[-1].channel,
            detail="stuck: out of re-queues",
        )
        await AlertMail(session, now).delivery_failed(notice, envelope_id=envelope_id)
    return requeued


async def _expire(
    sessions: async_sessionmaker[AsyncSession], now: datetime, policy: SweepPolicy
) -> int:
    delivered = exists().where(
        SealedEnvelope.notice_id == Notice.notice_id,
        SealedEnvelope.kind == "notice",
        SealedEnvelope.delivered_at.is_not(None),
    )
    async with sessions.begin() as session:
        notices = (
            await session.scalars(
                select(Notice)
                .where(
                    Notice.status == NoticeStatus.SENDING.value,
                    Notice.deliver_at <= now - policy.expire_after,
                    not_(delivered),
                )
                .limit(policy.limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
        hours = int(policy.expire_after.total_seconds() // 3600)
        mail = AlertMail(session, now)
        for notice in notices:
            give_up(session, notice, now, f"nobody fetched it within {hours} hours")
            await mail.delivery_failed(notice, envelope_id=None)
    return len(notices)
