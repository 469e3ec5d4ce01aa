"""What admins watch: notices by status with their flags, and the dashboard's figures.

Nothing here names a child: notices are shown by id, setting and times. Every read is
audited. The overdue flag (docs/http.md, the status lifecycle) is "set by the escalation
sweep and the notice still not acknowledged": ``overdue_at`` stays as history once the
notice is answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.db.tables import Alert, Incident, Notice, SettingRow
from encompass.clock import Clock
from encompass.domain.status import NoticeStatus
from encompass.services.matching.review_queue import (
    QueueSummary,
    ReviewItem,
    list_review,
    queue_summary,
)
from encompass.services.records import audit

MAX_NOTICES: Final = 1_000
# Overdue only while still waiting for an answer.
AWAITING: Final = (NoticeStatus.SENDING.value, NoticeStatus.DELIVERED.value)


def is_overdue(notice: Notice) -> bool:
    """The overdue flag: escalated for want of an acknowledgement and still unanswered."""
    return notice.overdue_at is not None and notice.status in AWAITING


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


async def admin_notices(
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    actor: str,
    *,
    status: NoticeStatus | None = None,
    overdue: bool | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    """Notices, most recently changed first, optionally of one ``status`` and/or with the
    overdue flag set (``overdue=True``) or clear; no child's data. Audited."""
    query = (
        select(Notice, SettingRow.name, Incident.force_id)
        .join(SettingRow, SettingRow.setting_id == Notice.setting_id)
        .join(Incident, Incident.incident_id == Notice.incident_id)
    )
    if status is not None:
        query = query.where(Notice.status == status.value)
    flagged = Notice.overdue_at.is_not(None) & Notice.status.in_(AWAITING)
    if overdue is not None:
        query = query.where(flagged if overdue else ~flagged)
    query = query.order_by(Notice.updated_at.desc(), Notice.notice_id).limit(
        max(1, min(limit, MAX_NOTICES))
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


@dataclass(frozen=True)
class Dashboard:
    """The dashboard's figures, read in one go."""

    at: datetime
    by_status: dict[str, int]
    overdue: int
    failed: int
    review: QueueSummary
    review_items: list[ReviewItem]
    alerts: list[dict[str, Any]]


async def dashboard(
    sessions: async_sessionmaker[AsyncSession], clock: Clock, actor: str, *, alerts_shown: int = 50
) -> Dashboard:
    """Counts per status, overdue and failed notices, the review queue and the newest
    unresolved alerts. Audited (the review queue's read separately, as it is one)."""
    now = clock.now()
    items = await list_review(sessions, clock, actor)
    async with sessions.begin() as session:
        counts = dict(
            (
                await session.execute(select(Notice.status, func.count()).group_by(Notice.status))
            ).all()
        )
        overdue = (
            await session.scalar(
                select(func.count())
                .select_from(Notice)
                .where(Notice.overdue_at.is_not(None), Notice.status.in_(AWAITING))
            )
            or 0
        )
        summary = await queue_summary(session, now)
        alerts = (
            await session.scalars(
                select(Alert)
                .where(Alert.resolved_at.is_(None))
                .order_by(Alert.created_at.desc())
                .limit(alerts_shown)
            )
        ).all()
        await audit.record(
            session,
            actor=actor,
            action="admin.dashboard",
            subject="dashboard",
            detail={"alerts": len(alerts)},
            at=now,
        )
    return Dashboard(
        at=now,
        by_status={s.value: int(counts.get(s.value, 0)) for s in NoticeStatus},
        overdue=int(overdue),
        failed=int(counts.get(NoticeStatus.FAILED.value, 0)),
        review=summary,
        review_items=items,
        alerts=[
            {
                "alert_id": a.alert_id,
                "kind": a.kind,
                "audience": a.audience,
                "notice_id": a.notice_id,
                "message": a.message,
                "created_at": a.created_at.isoformat(),
            }
            for a in alerts
        ],
    )
