"""Creating notices and moving them through the lifecycle, one state machine for every path."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import StaleDataError

from encompass.adapters.db.tables import Notice, NoticeEvent
from encompass.domain.calendar import NoReleaseDay, release_time
from encompass.domain.directory import SettingCalendar
from encompass.domain.status import NoticeStatus, check_transition

if TYPE_CHECKING:
    from sqlalchemy import Table

_NOTICES = cast("Table", Notice.__table__)
_EVENTS = cast("Table", NoticeEvent.__table__)


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


@dataclass(frozen=True)
class NewNotice:
    """A notice decided but not yet written: its row, and the event recording its first
    status (both as column values, for one multi-row insert of many)."""

    row: dict[str, Any]
    event: dict[str, Any]


def plan_notice(
    *,
    child_id: str,
    incident_id: str,
    calendar: SettingCalendar,
    reported_at: datetime,
    now: datetime,
    cause: str,
) -> NewNotice:
    """The notice for one child at one setting, with its release time and reason: pure.

    When the setting's calendar offers no day to release on, the notice goes to ``review``
    for an admin instead: it is never silently dropped.
    """
    try:
        release = release_time(calendar, reported_at)
    except NoReleaseDay as exc:
        status, deliver_at, recipient = NoticeStatus.REVIEW, None, "key_adults"
        reason, why = str(exc), f"{cause}; no release day: {exc}"
    else:
        status, deliver_at, recipient = NoticeStatus.SCHEDULED, release.at, release.recipient.value
        reason, why = release.reason, cause
    check_transition(None, status)
    notice_id = str(uuid.uuid4())
    row = {
        "notice_id": notice_id,
        "child_id": child_id,
        "incident_id": incident_id,
        "setting_id": calendar.setting.setting_id,
        "status": status.value,
        "deliver_at": deliver_at,
        "recipient": recipient,
        "release_reason": reason,
        "created_at": now,
        "updated_at": now,
        "overdue_at": None,
        "admins_alerted_at": None,
    }
    event = {"notice_id": notice_id, "from_status": None, "to_status": status.value}
    return NewNotice(row, {**event, "at": now, "cause": why})


async def create_notices(session: AsyncSession, planned: Sequence[NewNotice]) -> None:
    """Write planned notices and their first events: two multi-row inserts, whatever the
    count. Their children must be written already."""
    if not planned:
        return
    await session.execute(insert(_NOTICES), [p.row for p in planned])
    await session.execute(insert(_EVENTS), [p.event for p in planned])


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
    """Create the notice for one child at one setting (see :func:`plan_notice`) as an
    object in ``session``, for a caller that goes on to work with it."""
    planned = plan_notice(
        child_id=child_id,
        incident_id=incident_id,
        calendar=calendar,
        reported_at=reported_at,
        now=now,
        cause=cause,
    )
    notice = Notice(**planned.row)
    session.add(notice)
    session.add(NoticeEvent(**planned.event))
    return notice
