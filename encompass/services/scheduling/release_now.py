"""An admin's urgent release: a held notice goes now instead of at its release time.

Only a ``scheduled`` notice can be released: it stays ``scheduled`` with ``deliver_at`` set
to now, so the dispatcher takes it on its next pass exactly as any due notice — there is no
second delivery path to get wrong. The release is audited with the admin who asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.db.tables import Notice
from encompass.clock import Clock
from encompass.domain.status import NoticeStatus
from encompass.services.records import audit


class ReleaseRefused(Exception):
    """The notice was not released; the message is one line saying why."""


@dataclass(frozen=True)
class UrgentRelease:
    notice_id: str
    setting_id: str
    was_due_at: datetime | None
    deliver_at: datetime


async def release_now(
    sessions: async_sessionmaker[AsyncSession], clock: Clock, notice_id: str, *, actor: str
) -> UrgentRelease:
    """Set a scheduled notice's ``deliver_at`` to now (audited as ``actor``).
    ReleaseRefused for an unknown notice or one that is not ``scheduled``."""
    now = clock.now()
    async with sessions.begin() as session:
        notice = await session.get(Notice, notice_id, with_for_update=True)
        if notice is None:
            raise ReleaseRefused(f"no notice {notice_id!r}")
        if notice.status != NoticeStatus.SCHEDULED:
            raise ReleaseRefused(
                f"notice {notice_id} is {notice.status}; only a scheduled "
                "notice can be released now"
            )
        was = notice.deliver_at
        if was is not None and was <= now:
            raise ReleaseRefused(
                f"notice {notice_id} is already due (since "
                f"{was.isoformat()}); the dispatcher will send it"
            )
        notice.deliver_at, notice.updated_at = now, now
        notice.release_reason += f" UrgentRelease early by {actor} at {now.isoformat()}."
        await audit.record(
            session,
            actor=actor,
            action="notice.released_now",
            subject=f"notice:{notice_id}",
            detail={"was_due_at": was.isoformat() if was else None},
            at=now,
        )
        return UrgentRelease(notice_id, notice.setting_id, was, now)
