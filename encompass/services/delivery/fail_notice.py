"""Giving up on a notice, loudly: ``failed``, an alert for the admins, an error in the log.

Shared by the delivery handler (an envelope's last attempt failed) and the sweeper (a
notice stuck or never fetched). The caller holds the notice's row lock.
"""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from encompass.adapters.db.tables import (
    Alert,
    DeliveryAttempt,
    Notice,
    OutboxEntry,
    SealedEnvelope,
)
from encompass.domain.status import IN_FLIGHT, DeliveryOutcome, NoticeStatus
from encompass.services.scheduling.notices import transition

log = structlog.get_logger()


def give_up(session: AsyncSession, notice: Notice, now: datetime, why: str) -> None:
    """Move a sealed or sending notice to ``failed`` with an admin alert and an error log
    line (ids only). Does nothing to a notice in any other status."""
    status = NoticeStatus(notice.status)
    if status not in IN_FLIGHT:
        return
    if status is NoticeStatus.SEALED:
        transition(session, notice, NoticeStatus.SENDING, at=now, cause="giving up")
    transition(session, notice, NoticeStatus.FAILED, at=now, cause=why)
    session.add(
        Alert(
            notice_id=notice.notice_id,
            kind="delivery_failed",
            audience="admins",
            message=f"Notice {notice.notice_id} for setting {notice.setting_id} "
            f"could not be delivered: {why}. Contact the setting by "
            "another route before the school day starts.",
            created_at=now,
            resolved_at=None,
        )
    )
    log.error("notice.failed", notice_id=notice.notice_id, setting_id=notice.setting_id, why=why)


async def fail_if_undeliverable(session: AsyncSession, notice: Notice, now: datetime) -> bool:
    """Give up on ``notice`` when none of its envelopes was delivered and every one has a
    failed attempt (or it has none at all). Returns whether it did."""
    if NoticeStatus(notice.status) not in IN_FLIGHT:
        return False
    envelopes = (
        await session.execute(
            select(SealedEnvelope.envelope_id, SealedEnvelope.delivered_at).where(
                SealedEnvelope.notice_id == notice.notice_id, SealedEnvelope.kind == "notice"
            )
        )
    ).all()
    if any(delivered is not None for _, delivered in envelopes):
        return False  # fetched by any device, browsers included
    # Only envelopes with a delivery channel can fail: a browser's waits in /inbox.
    ids = list(
        (
            await session.scalars(
                select(OutboxEntry.envelope_id).where(
                    OutboxEntry.envelope_id.in_([envelope_id for envelope_id, _ in envelopes])
                )
            )
        ).all()
    )
    failed = (
        set(
            (
                await session.scalars(
                    select(DeliveryAttempt.envelope_id).where(
                        DeliveryAttempt.envelope_id.in_(ids),
                        DeliveryAttempt.outcome == DeliveryOutcome.FAILED,
                    )
                )
            ).all()
        )
        if ids
        else set()
    )
    if failed != set(ids):
        return False
    why = "every recipient's delivery failed" if ids else "it has no sealed envelope to deliver"
    give_up(session, notice, now, why)
    return True
