"""Alerts for admins: list them, take one in hand (acknowledge), close it (resolve).

The list and its count come from one query, so the number on a page always agrees with
the rows under it. Only alerts meant for admins are listed (``audience = admins``): the
deputies' and the force's alerts go to them, not to this queue. An overdue alert closes
itself when its notice is answered (``close_answered``), so the count of open overdue
alerts never exceeds the notices still overdue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.db.tables import Admin, Alert, Notice, SettingRow
from encompass.clock import Clock
from encompass.services.admin.scope import ALL, Area
from encompass.services.records import audit

ADMINS: Final = "admins"
MAX_ALERTS: Final = 500


class AlertRefused(Exception):
    """The alert was not changed; ``status`` and ``code`` as for the HTTP answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


@dataclass(frozen=True)
class AlertView:
    alert_id: int
    kind: str
    notice_id: str | None
    setting_id: str | None
    setting_name: str | None
    message: str
    created_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    # ``acknowledged_by`` / ``resolved_by`` as a person reads them: the admin's name.
    names: dict[str, str] = field(default_factory=dict)

    def name_of(self, who: str | None) -> str:
        return "" if who is None else self.names.get(who, who)

    def as_json(self) -> dict[str, Any]:
        def iso(at: datetime | None) -> str | None:
            return at.isoformat() if at else None

        return {
            "alert_id": self.alert_id,
            "kind": self.kind,
            "notice_id": self.notice_id,
            "setting_id": self.setting_id,
            "setting_name": self.setting_name,
            "message": self.message,
            "created_at": self.created_at.isoformat(),
            "acknowledged_at": iso(self.acknowledged_at),
            "acknowledged_by": self.acknowledged_by,
            "resolved_at": iso(self.resolved_at),
            "resolved_by": self.resolved_by,
            "acknowledged_by_name": self.names.get(self.acknowledged_by or ""),
            "resolved_by_name": self.names.get(self.resolved_by or ""),
        }


@dataclass(frozen=True)
class AlertPage:
    total: int  # every alert matching, not only this page's
    alerts: list[AlertView]


def _query(area: Area, *, open_only: bool) -> Any:
    query = area.alerts(
        select(Alert, SettingRow.setting_id, SettingRow.name)
        .outerjoin(Notice, Notice.notice_id == Alert.notice_id)
        .outerjoin(SettingRow, SettingRow.setting_id == Notice.setting_id)
        .where(Alert.audience == ADMINS)
    )
    return query.where(Alert.resolved_at.is_(None)) if open_only else query


async def list_alerts(
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    actor: str,
    *,
    area: Area = ALL,
    open_only: bool = True,
    limit: int = 100,
    offset: int = 0,
) -> AlertPage:
    """The admins' alerts of ``area``, newest first (open ones only by default). Audited."""
    query = _query(area, open_only=open_only)
    async with sessions.begin() as session:
        total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = (
            await session.execute(
                query.order_by(Alert.created_at.desc(), Alert.alert_id.desc())
                .limit(max(1, min(limit, MAX_ALERTS)))
                .offset(max(0, offset))
            )
        ).all()
        names = await _admin_names(session, [a for a, _, _ in rows])
        await audit.record(
            session,
            actor=actor,
            action="admin.alerts.list",
            subject="alerts",
            detail={"area": area.code, "open_only": open_only, "count": len(rows)},
            at=clock.now(),
        )
    return AlertPage(int(total), [_view(a, sid, name, names) for a, sid, name in rows])


async def _admin_names(session: AsyncSession, alerts: list[Alert]) -> dict[str, str]:
    ids = {
        who.removeprefix("admin:")
        for a in alerts
        for who in (a.acknowledged_by, a.resolved_by)
        if who and who.startswith("admin:")
    }
    if not ids:
        return {}
    rows = await session.execute(select(Admin.admin_id, Admin.name).where(Admin.admin_id.in_(ids)))
    return {f"admin:{admin_id}": name for admin_id, name in rows}


def _view(
    alert: Alert,
    setting_id: str | None,
    setting_name: str | None,
    names: dict[str, str] | None = None,
) -> AlertView:
    return AlertView(
        alert.alert_id,
        alert.kind,
        alert.notice_id,
        setting_id,
        setting_name,
        alert.message,
        alert.created_at,
        alert.acknowledged_at,
        alert.acknowledged_by,
        alert.resolved_at,
        alert.resolved_by,
        names or {},
    )


async def act_on_alert(
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    actor: str,
    alert_id: int,
    action: str,
    *,
    area: Area = ALL,
) -> AlertView:
    """``acknowledge`` (someone is on it) or ``resolve`` (closed) one alert of ``area``,
    recording who and when. AlertRefused 404 (unknown or outside the area) or 409 (already
    resolved). Audited."""
    if action not in ("acknowledge", "resolve"):
        raise AlertRefused(400, "bad_request", "action must be acknowledge or resolve")
    now = clock.now()
    async with sessions.begin() as session:
        row = (
            await session.execute(
                _query(area, open_only=False)
                .where(Alert.alert_id == alert_id)
                .with_for_update(of=Alert)
            )
        ).first()
        if row is None:
            raise AlertRefused(404, "not_found", "no such alert")
        alert, setting_id, setting_name = row
        if alert.resolved_at is not None:
            raise AlertRefused(
                409, "already_resolved", f"resolved at {alert.resolved_at.isoformat()}"
            )
        if action == "acknowledge":
            if alert.acknowledged_at is None:
                alert.acknowledged_at, alert.acknowledged_by = now, actor
        else:
            alert.resolved_at, alert.resolved_by = now, actor
        await audit.record(
            session,
            actor=actor,
            action=f"alert.{action}d",
            subject=f"alert:{alert_id}",
            detail={"kind": alert.kind, "notice_id": alert.notice_id},
            at=now,
        )
        return _view(alert, setting_id, setting_name, await _admin_names(session, [alert]))


async def close_answered(session: AsyncSession, notice_id: str, who: str, now: datetime) -> None:
    """The notice was answered: its overdue alerts need nobody any more (caller's
    transaction)."""
    for alert in await session.scalars(
        select(Alert).where(
            Alert.notice_id == notice_id, Alert.kind == "overdue", Alert.resolved_at.is_(None)
        )
    ):
        alert.resolved_at, alert.resolved_by = now, who
