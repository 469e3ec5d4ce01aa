"""An incident's timeline, found by force and incident reference, for an admin.

Everything that happened, in order: each version received (and when it was matched),
each child's decision and resolution, each notice's transitions, each delivery attempt and
each acknowledgement. Nothing of a child's details: children are shown by their position
in the report and their id. An admin of one area sees the incident only when one of its
notices is for a setting of that area, and then only those notices and their children.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.db.tables import (
    Acknowledgement,
    Child,
    DeliveryAttempt,
    Incident,
    IncidentVersion,
    Notice,
    NoticeEvent,
    SealedEnvelope,
    SettingRow,
)
from encompass.clock import Clock
from encompass.services.admin.scope import ALL, Area
from encompass.services.records import audit


@dataclass(frozen=True)
class Event:
    at: datetime
    what: str  # version | child | notice | delivery | acknowledgement | incident
    subject: str  # an id
    setting_id: str | None
    setting_name: str | None
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "what": self.what,
            "subject": self.subject,
            "setting_id": self.setting_id,
            "setting_name": self.setting_name,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Timeline:
    incident_id: str
    force_id: str
    incident_ref: str
    status: str
    events: list[Event] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "incident_id": self.incident_id,
            "force_id": self.force_id,
            "incident_ref": self.incident_ref,
            "status": self.status,
            "events": [e.as_json() for e in self.events],
        }


async def _notices(
    session: AsyncSession, incident_id: str, area: Area
) -> dict[str, tuple[Notice, str]]:
    rows = await session.execute(
        area.notices(
            select(Notice, SettingRow.name)
            .join(SettingRow, SettingRow.setting_id == Notice.setting_id)
            .where(Notice.incident_id == incident_id)
        )
    )
    return {n.notice_id: (n, name) for n, name in rows}


async def incident_timeline(
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    actor: str,
    *,
    force_id: str,
    incident_ref: str,
    area: Area = ALL,
) -> Timeline | None:
    """The timeline of the force's incident ``incident_ref``, or None when there is no such
    incident in ``area``. Audited."""
    async with sessions.begin() as session:
        incident = await session.scalar(
            select(Incident).where(
                Incident.force_id == force_id, Incident.incident_ref == incident_ref
            )
        )
        notices = {} if incident is None else await _notices(session, incident.incident_id, area)
        if incident is None or (not area.everywhere and not notices):
            return None
        events = await _events(session, incident, notices, area)
        await audit.record(
            session,
            actor=actor,
            action="admin.incident.timeline",
            subject=f"incident:{incident.incident_id}",
            detail={"area": area.code, "events": len(events)},
            at=clock.now(),
        )
    events.sort(key=lambda e: (e.at, _ORDER.get(e.what, 9)))
    return Timeline(
        incident.incident_id, incident.force_id, incident.incident_ref, incident.status, events
    )


_ORDER = {"version": 0, "child": 1, "notice": 2, "delivery": 3, "acknowledgement": 4}


async def _events(
    session: AsyncSession,
    incident: Incident,
    notices: dict[str, tuple[Notice, str]],
    area: Area,
) -> list[Event]:
    events: list[Event] = []
    versions = (
        await session.scalars(
            select(IncidentVersion).where(IncidentVersion.incident_id == incident.incident_id)
        )
    ).all()
    number = {v.version_id: v.version for v in versions}
    for v in versions:
        events.append(
            Event(
                v.received_at, "version", v.version_id, None, None, f"version {v.version} received"
            )
        )
        if v.processed_at is not None:
            events.append(
                Event(
                    v.processed_at,
                    "version",
                    v.version_id,
                    None,
                    None,
                    f"version {v.version} matched",
                )
            )
    children_with_notices = {n.child_id for n, _ in notices.values()}
    children = (
        await session.scalars(select(Child).where(Child.version_id.in_(number.keys())))
    ).all()
    for child in children:
        if not area.everywhere and child.child_id not in children_with_notices:
            continue
        label = f"child {child.position + 1} of version {number[child.version_id]}"
        events.append(
            Event(
                child.reported_at,
                "child",
                child.child_id,
                None,
                None,
                f"{label}: decision {child.decision} (score {child.score:.2f})",
            )
        )
        if child.resolved_at is not None:
            events.append(
                Event(
                    child.resolved_at,
                    "child",
                    child.child_id,
                    None,
                    None,
                    f"{label}: resolved by {child.resolved_by}",
                )
            )
    await _notice_events(session, notices, events)
    if incident.status == "withdrawn":
        events.append(
            Event(
                incident.updated_at,
                "incident",
                incident.incident_id,
                None,
                None,
                "withdrawn by the force",
            )
        )
    return events


async def _notice_events(
    session: AsyncSession, notices: dict[str, tuple[Notice, str]], events: list[Event]
) -> None:
    ids = list(notices)
    if not ids:
        return

    def named(notice_id: str) -> tuple[str, str]:
        notice, name = notices[notice_id]
        return notice.setting_id, name

    for notice, name in notices.values():
        if notice.overdue_at is not None:
            events.append(
                Event(
                    notice.overdue_at,
                    "notice",
                    notice.notice_id,
                    notice.setting_id,
                    name,
                    "overdue: not acknowledged by the start of the setting's day",
                )
            )
        if notice.admins_alerted_at is not None:
            events.append(
                Event(
                    notice.admins_alerted_at,
                    "notice",
                    notice.notice_id,
                    notice.setting_id,
                    name,
                    "still not acknowledged: admins alerted",
                )
            )
    for e in await session.scalars(select(NoticeEvent).where(NoticeEvent.notice_id.in_(ids))):
        sid, name = named(e.notice_id)
        events.append(
            Event(
                e.at,
                "notice",
                e.notice_id,
                sid,
                name,
                f"{e.from_status or 'new'} → {e.to_status}: {e.cause}",
            )
        )
    attempts = await session.execute(
        select(DeliveryAttempt, SealedEnvelope.notice_id, SealedEnvelope.key_adult_id)
        .join(SealedEnvelope, SealedEnvelope.envelope_id == DeliveryAttempt.envelope_id)
        .where(SealedEnvelope.notice_id.in_(ids))
    )
    for a, notice_id, key_adult_id in attempts:
        sid, name = named(notice_id)
        events.append(
            Event(
                a.at,
                "delivery",
                notice_id,
                sid,
                name,
                f"{a.channel} attempt {a.attempt} to {key_adult_id}: {a.outcome} ({a.detail})",
            )
        )
    for ack in await session.scalars(
        select(Acknowledgement).where(Acknowledgement.notice_id.in_(ids))
    ):
        sid, name = named(ack.notice_id)
        events.append(
            Event(
                ack.at,
                "acknowledgement",
                ack.notice_id,
                sid,
                name,
                f"{ack.kind} by {ack.key_adult_id}",
            )
        )
