"""A signed-in browser's inbox: which notices it holds an envelope for, read or not.

Only what the page lists, never the content: the notice id, whether it is a notice or its
retraction, when it was sealed, whether this browser fetched it yet and how the setting
answered. The envelopes themselves are fetched one at a time (``services/receiving/portal.py``,
which records the handover) and opened in the browser.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.db.tables import Acknowledgement, Notice, SealedEnvelope
from encompass.clock import Clock
from encompass.services.receiving.portal import _SENT
from encompass.services.records import audit

MAX_ITEMS: Final = 200


@dataclass(frozen=True)
class InboxItem:
    notice_id: str
    kind: str  # notice | retraction
    sealed_at: datetime
    unread: bool
    answer: str | None  # received | not_our_pupil | child_absent, by anyone at the setting


async def inbox_items(
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    *,
    key_adult_id: str,
    device_id: str,
) -> list[InboxItem]:
    """This device's sent envelopes, newest first. Audited (ids only)."""
    async with sessions.begin() as session:
        rows = (
            await session.execute(
                select(
                    SealedEnvelope.notice_id,
                    SealedEnvelope.kind,
                    SealedEnvelope.created_at,
                    SealedEnvelope.delivered_at,
                )
                .join(Notice, Notice.notice_id == SealedEnvelope.notice_id)
                .where(
                    SealedEnvelope.key_adult_id == key_adult_id,
                    SealedEnvelope.device_id == device_id,
                    _SENT,
                )
                .order_by(SealedEnvelope.created_at.desc(), SealedEnvelope.envelope_id)
                .limit(MAX_ITEMS)
            )
        ).all()
        answers = await _answers(session, {r.notice_id for r in rows})
        await audit.record(
            session,
            actor=f"key_adult:{key_adult_id}",
            action="inbox.list",
            subject=f"device:{device_id}",
            detail={"count": len(rows)},
            at=clock.now(),
        )
    return [
        InboxItem(
            r.notice_id, r.kind, r.created_at, r.delivered_at is None, answers.get(r.notice_id)
        )
        for r in rows
    ]


async def _answers(session: AsyncSession, notice_ids: set[str]) -> dict[str, str]:
    if not notice_ids:
        return {}
    rows = await session.execute(
        select(Acknowledgement.notice_id, Acknowledgement.kind).where(
            Acknowledgement.notice_id.in_(notice_ids)
        )
    )
    return {notice_id: kind for notice_id, kind in rows}
