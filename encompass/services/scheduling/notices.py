"""Creating notices and moving them through the lifecycle, one state machine for every path."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from encompass.adapters.db.tables import Notice, NoticeEvent
from encompass.domain.calendar import NoReleaseDay, release_time
from encompass.domain.directory import SettingCalendar
from encompass.domain.status import NoticeStatus, check_transition


def transition(
    session: AsyncSession, notice: Notice, new: NoticeStatus, *, at: datetime, cause: str
) -> None:
    """Move ``notice`` to ``new`` (refused by the state machine if illegal), recording why."""
    current = NoticeStatus(notice.status) if notice.status else None
    check_transition(current, new)
    session.add(
        NoticeEvent(
            notice_id=notice.notice_id,
            from_status=notice.status or None,
            to_status=new.value,
            at=at,
            cause=cause,
        )
    )
    notice.status = new.value
    notice.updated_at = at


def schedule_notice(
    session: AsyncSession,
    *,
    child_id: str,
    incident_id: str,
    calendar: SettingCalendar,
    reported_at: datetime,
    now: datetime,
    cause: str,
) -> Notice:
    """Create the notice for one child at one setting, with its release time and reason.

    When the setting's calendar offers no day to release on, the notice goes to ``review``
    for an admin instead: it is never silently dropped.
    """
    notice = Notice(
        notice_id=str(uuid.uuid4()),
        child_id=child_id,
        incident_id=incident_id,
        setting_id=calendar.setting.setting_id,
        status="",
        deliver_at=None,
        recipient="key_adults",
        release_reason="",
        created_at=now,
        updated_at=now,
    )
    session.add(notice)
    try:
        release = release_time(calendar, reported_at)
    except NoReleaseDay as exc:
        notice.release_reason = str(exc)
        transition(
            session, notice, NoticeStatus.REVIEW, at=now, cause=f"{cause}; no release day: {exc}"
        )
        return notice
    notice.deliver_at = release.at
    notice.recipient = release.recipient.value
    notice.release_reason = release.reason
    transition(session, notice, NoticeStatus.SCHEDULED, at=now, cause=cause)
    return notice
