"""What admins watch: notices with their flags, filtered, and as CSV.

Nothing here names a child: notices are shown by id, setting and times. Every read is
audited. The overdue flag (docs/http.md, the status lifecycle) is "set by the escalation
sweep and the notice still not acknowledged": ``overdue_at`` stays as history once the
notice is answered.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, time, timedelta
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.db.tables import Incident, Notice, SettingRow
from encompass.clock import Clock
from encompass.domain.calendar import LONDON
from encompass.domain.status import AWAITING_ACK, NoticeStatus, values
from encompass.services.admin.scope import ALL, Area
from encompass.services.records import audit

MAX_NOTICES: Final = 1_000
# Overdue only while still waiting for an answer.


def is_overdue(notice: Notice) -> bool:
    """The overdue flag: escalated for want of an acknowledgement and still unanswered."""
    return notice.overdue_at is not None and notice.status in AWAITING_ACK


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=LONDON)


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


async def admin_notices(
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    actor: str,
    *,
    status: NoticeStatus | None = None,
    overdue: bool | None = None,
    setting_id: str | None = None,
    since: date | None = None,
    until: date | None = None,
    limit: int = 200,
    offset: int = 0,
    area: Area = ALL,
) -> list[dict[str, Any]]:
    """Notices of ``area``, most recently changed first, optionally of one ``status``, one
    setting, and/or with the overdue flag set (``overdue=True``) or clear; no child's
    data. ``since`` / ``until``: first and last day (UK time) the notice was made. Audited."""
    query = area.notices(
        select(Notice, SettingRow.name, Incident.force_id)
        .join(SettingRow, SettingRow.setting_id == Notice.setting_id)
        .join(Incident, Incident.incident_id == Notice.incident_id)
    )
    if setting_id is not None:
        query = query.where(Notice.setting_id == setting_id)
    if since is not None:
        query = query.where(Notice.created_at >= _midnight(since))
    if until is not None:
        query = query.where(Notice.created_at < _midnight(until + timedelta(days=1)))
    if status is not None:
        query = query.where(Notice.status == status.value)
    flagged = Notice.overdue_at.is_not(None) & Notice.status.in_(values(AWAITING_ACK))
    if overdue is not None:
        query = query.where(flagged if overdue else ~flagged)
    query = (
        query.order_by(Notice.updated_at.desc(), Notice.notice_id)
        .limit(max(1, min(limit, MAX_NOTICES)))
        .offset(max(0, offset))
    )
    async with sessions.begin() as session:
        rows = (await session.execute(query)).all()
        await audit.record(
            session,
            actor=actor,
            action="admin.notices.list",
            subject="notices",
            detail={
                "status": status.value if status else None,
                "overdue": overdue,
                "setting_id": setting_id,
                "since": since.isoformat() if since else None,
                "until": until.isoformat() if until else None,
                "area": area.code,
                "count": len(rows),
            },
            at=clock.now(),
        )
    return [
        {
            "notice_id": n.notice_id,
            "incident_id": n.incident_id,
            "force_id": force_id,
            "setting_id": n.setting_id,
            "setting_name": setting_name,
            "status": n.status,
            "recipient": n.recipient,
            "deliver_at": _iso(n.deliver_at),
            "overdue": is_overdue(n),
            "overdue_at": _iso(n.overdue_at),
            "admins_alerted_at": _iso(n.admins_alerted_at),
            "created_at": n.created_at.isoformat(),
            "updated_at": n.updated_at.isoformat(),
        }
        for n, setting_name, force_id in rows
    ]


CSV_COLUMNS: Final = (
    "notice_id",
    "incident_id",
    "force_id",
    "setting_id",
    "setting_name",
    "status",
    "recipient",
    "deliver_at",
    "overdue",
    "overdue_at",
    "created_at",
    "updated_at",
)


def notices_csv(notices: list[dict[str, Any]]) -> str:
    """The notices as CSV (a header row, one line per notice; no child's data)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for notice in notices:
        writer.writerow([_cell(notice.get(column)) for column in CSV_COLUMNS])
    return out.getvalue()


def _cell(value: object) -> str:
    text = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    # A cell a spreadsheet would run as a formula is quoted as text (CSV injection).
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
