"""A force follows its incident: versions, children, notices, deliveries and answers.

Everything the force may see of one of its own incidents, read in one transaction and
audited (``incident.read``). Another force's incident is not found: its existence is not
ours to reveal. The Key Adults' replies are opened here; the incident's personal data is
``available``, ``purged`` (retention destroyed its key) or ``unreadable``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.db.tables import (
    Acknowledgement,
    Alert,
    Child,
    DeliveryAttempt,
    Incident,
    IncidentKey,
    IncidentVersion,
    Notice,
    SealedEnvelope,
)
from encompass.clock import Clock
from encompass.domain.status import DeliveryOutcome
from encompass.services.admin.monitoring import is_overdue
from encompass.services.matching.review_queue import resolution_of
from encompass.services.records import audit
from encompass.services.records.at_rest import DataPurged, DataUnavailable, open_reply


async def _notice_facts(
    session: AsyncSession, notice_ids: list[str]
) -> tuple[
    dict[str, list[dict[str, Any]]], dict[str, Acknowledgement], dict[str, list[dict[str, Any]]]
]:
    """Per notice: delivery failures, the Key Adult's answer, and the force's alerts."""
    failures: dict[str, list[dict[str, Any]]] = {}
    attempts = (
        await session.execute(
            select(SealedEnvelope.notice_id, DeliveryAttempt)
            .join(DeliveryAttempt, DeliveryAttempt.envelope_id == SealedEnvelope.envelope_id)
            .where(
                SealedEnvelope.notice_id.in_(notice_ids),
                DeliveryAttempt.outcome != DeliveryOutcome.DELIVERED,
            )
            .order_by(DeliveryAttempt.at)
        )
    ).all()
    for notice_id, attempt in attempts:
        failures.setdefault(notice_id, []).append(
            {
                "channel": attempt.channel,
                "attempt": attempt.attempt,
                "outcome": attempt.outcome,
                "detail": attempt.detail,
                "at": attempt.at.isoformat(),
            }
        )
    answers: dict[str, Acknowledgement] = {}
    for ack in (
        await session.scalars(
            select(Acknowledgement)
            .where(Acknowledgement.notice_id.in_(notice_ids))
            .order_by(Acknowledgement.at)
        )
    ).all():
        answers.setdefault(ack.notice_id, ack)
    alerts: dict[str, list[dict[str, Any]]] = {}
    for alert in (
        await session.scalars(
            select(Alert)
            .where(Alert.notice_id.in_(notice_ids), Alert.audience == "force")
            .order_by(Alert.created_at)
        )
    ).all():
        alerts.setdefault(alert.notice_id or "", []).append(
            {
                "kind": alert.kind,
                "message": alert.message,
                "created_at": alert.created_at.isoformat(),
            }
        )
    return failures, answers, alerts


async def _replies(
    session: AsyncSession, incident_id: str, answers: dict[str, Acknowledgement]
) -> tuple[dict[str, str | None], str]:
    """Each answer's reply in clear, and whether the incident's personal data is
    ``available``, ``purged`` (retention destroyed its key) or ``unreadable``."""
    replies: dict[str, str | None] = {}
    state = "available"
    for notice_id, answer in answers.items():
        try:
            replies[notice_id] = await open_reply(
                session, incident_id=incident_id, ack_id=answer.ack_id, stored=answer.reply
            )
        except DataUnavailable as exc:
            replies[notice_id] = None
            state = "purged" if isinstance(exc, DataPurged) else "unreadable"
    return replies, state


def _notice_json(
    n: Notice,
    failures: list[dict[str, Any]],
    answer: Acknowledgement | None,
    reply: str | None,
    alerts: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "notice_id": n.notice_id,
        "setting_id": n.setting_id,
        "status": n.status,
        "recipient": n.recipient,
        "deliver_at": n.deliver_at.isoformat() if n.deliver_at else None,
        "overdue": is_overdue(n),
        "overdue_at": n.overdue_at.isoformat() if n.overdue_at else None,
        "failures": failures,
        "acknowledgement": None
        if answer is None
        else {
            "kind": answer.kind,
            "at": answer.at.isoformat(),
            "reply": reply,
            "key_adult_id": answer.key_adult_id,
        },
        "returned": answer is not None and answer.kind == "not_our_pupil",
        "alerts": alerts,
    }


async def incident_for_force(
    sessions: async_sessionmaker[AsyncSession], clock: Clock, force_id: str, incident_id: str
) -> dict[str, Any] | None:
    """The JSON of ``GET /v1/incidents/{id}`` for ``force_id``, or None when the force has
    no such incident (another force's incident included)."""
    async with sessions.begin() as session:
        incident = await session.get(Incident, incident_id)
        # Another force's incident is "not found": its existence is not ours to reveal.
        if incident is None or incident.force_id != force_id:
            return None
        versions = (
            (
                await session.execute(
                    select(IncidentVersion)
                    .where(IncidentVersion.incident_id == incident.incident_id)
                    .order_by(IncidentVersion.version)
                )
            )
            .scalars()
            .all()
        )
        latest = next((v for v in versions if v.version == incident.latest_version), None)
        children = (
            []
            if latest is None
            else (
                await session.execute(
                    select(Child)
                    .where(Child.version_id == latest.version_id)
                    .order_by(Child.position)
                )
            )
            .scalars()
            .all()
        )
        notices = (
            (
                await session.execute(
                    select(Notice)
                    .where(Notice.incident_id == incident.incident_id)
                    .order_by(Notice.created_at, Notice.notice_id)
                )
            )
            .scalars()
            .all()
        )
        failures, answers, alerts = await _notice_facts(session, [n.notice_id for n in notices])
        replies, data = await _replies(session, incident.incident_id, answers)
        key = await session.get(IncidentKey, incident.incident_id)
        if key is not None and key.wrapped_key is None:
            data = "purged"
        await audit.record(
            session,
            actor=f"force:{force_id}",
            action="incident.read",
            subject=f"incident:{incident.incident_id}",
            detail={"notices": len(notices)},
            at=clock.now(),
        )
    by_child: dict[str, list[Notice]] = {}
    for notice in notices:
        by_child.setdefault(notice.child_id, []).append(notice)
    return {
        "incident_id": incident.incident_id,
        "incident_ref": incident.incident_ref,
        "status": incident.status,
        "latest_version": incident.latest_version,
        # Personal data: ``available``, or ``purged`` once retention destroyed its key
        # (statuses, times and ids remain).
        "data": data,
        "purged_at": key.purged_at.isoformat() if key and key.purged_at else None,
        "versions": [
            {
                "version": v.version,
                "received_at": v.received_at.isoformat(),
                "processed": v.processed_at is not None,
            }
            for v in versions
        ],
        "children": [
            {
                "position": child.position,
                "decision": child.decision,
                "resolved": child.resolved_at is not None,
                "resolution": resolution_of(child),
                "notices": [
                    _notice_json(
                        n,
                        failures.get(n.notice_id, []),
                        answers.get(n.notice_id),
                        replies.get(n.notice_id),
                        alerts.get(n.notice_id, []),
                    )
                    for n in by_child.get(child.child_id, [])
                ],
            }
            for child in children
        ],
    }
