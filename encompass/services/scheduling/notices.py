"""Creating notices and moving them through the lifecycle, one state machine for every path."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import StaleDataError

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


Move = tuple[NoticeStatus, str]
"""One step of a notice's path: the status it moves to, and why."""


async def transition_many(
    session: AsyncSession, paths: Sequence[tuple[Notice, Sequence[Move]]], *, at: datetime
) -> None:
    """Move many notices along their paths in two statements: every step is checked by the
    state machine (an illegal one raises before anything is written) and recorded as an
    event, then one bulk ``UPDATE … WHERE notice_id IN (…) AND status = <where they
    start>`` writes where they end. The status guard keeps the version check of a single
    transition: a notice moved by someone else meanwhile fails the whole transaction
    (StaleDataError) rather than being overwritten. Every notice must start in one status
    and end in one status; the notices in ``session`` are kept in step."""
    if not paths:
        return
    starts = {notice.status for notice, _ in paths}
    if len(starts) != 1:
        raise ValueError("transition_many: the notices must start in one status")
    events: list[dict[str, object]] = []
    ends: set[NoticeStatus] = set()
    for notice, moves in paths:
        current = NoticeStatus(notice.status)
        for new, cause in moves:
            check_transition(current, new)
            events.append(
                {
                    "notice_id": notice.notice_id,
                    "from_status": current.value,
                    "to_status": new.value,
                    "at": at,
                    "cause": cause,
                }
            )
            current = new
        ends.add(current)
    if len(ends) != 1:
        raise ValueError("transition_many: the notices must end in one status")
    (start,), (end,) = starts, ends
    ids = [notice.notice_id for notice, _ in paths]
    result = await session.execute(
        update(Notice)
        .where(Notice.notice_id.in_(ids), Notice.status == start)
        .values(status=end.value, updated_at=at)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != len(ids):  # type: ignore[attr-defined]
        raise StaleDataError(f"{len(ids) - result.rowcount} notice(s) moved meanwhile")  # type: ignore[attr-defined]
    await session.execute(insert(NoticeEvent), events)
    for notice, _ in paths:
        # As the database now holds them, so a later change is checked against this.
        set_committed_value(notice, "status", end.value)
        set_committed_value(notice, "updated_at", at)


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
