"""A force withdraws an incident: unsent notices are cancelled, sent ones retracted.

All in one transaction with the incident marked ``withdrawn``. The notices are locked (and
waited for), so a notice being released at this very moment is seen after its release and
retracted rather than missed. Retractions are sealed like notices (``kind="retraction"``,
naming the same child and incident, repeating none of its details) and go through the
same outbox to the recipients who hold the notice. The audit entry naming the force that
withdrew is written in the same transaction: a withdrawal is never without its record.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.db.tables import Alert, Incident, KeyAdultRow, Notice, SealedEnvelope
from encompass.clock import Clock
from encompass.domain.status import RETRACTABLE, UNSENT, IncidentStatus, NoticeStatus
from encompass.services.delivery.notice_content import build_retraction_content
from encompass.services.delivery.sealing import (
    KeyCache,
    Sealed,
    channel_for,
    load_sources,
    seal_to,
    store,
)
from encompass.services.records import audit
from encompass.services.scheduling.notices import transition

log = structlog.get_logger()


class IncidentNotFound(LookupError):
    """No such incident for this force (another force's incident looks the same)."""


async def withdraw_incident(
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    signing_key: Ed25519PrivateKey,
    force_id: str,
    incident_id: str,
) -> dict[str, Any]:
    """Withdraw ``incident_id`` of ``force_id``; raise IncidentNotFound when the force has
    no such incident. Idempotent: withdrawing again changes nothing and says so.

    Returns ``{"incident_id", "status": "withdrawn", "already_withdrawn": bool,
    "cancelled": n, "retracted": n, "retractions_sealed": n}`` — ``cancelled`` and
    ``retracted`` count notices, ``retractions_sealed`` the retraction envelopes queued.
    """
    now = clock.now()
    async with sessions.begin() as session:
        incident = (
            await session.scalars(
                select(Incident)
                .where(Incident.incident_id == incident_id, Incident.force_id == force_id)
                .with_for_update()
            )
        ).one_or_none()
        if incident is None:
            raise IncidentNotFound(f"no incident {incident_id[:64]!r} for this force")
        already = incident.status == IncidentStatus.WITHDRAWN
        incident.status, incident.updated_at = IncidentStatus.WITHDRAWN, now
        notices = (
            await session.scalars(
                select(Notice)
                .where(Notice.incident_id == incident_id)
                .order_by(Notice.notice_id)
                .with_for_update()
            )
        ).all()
        cancelled, retracted, sealed = await _withdraw_notices(session, notices, now, signing_key)
        counts = {
            "status": IncidentStatus.WITHDRAWN.value,
            "already_withdrawn": already,
            "cancelled": cancelled,
            "retracted": retracted,
            "retractions_sealed": sealed,
        }
        await audit.record(
            session,
            actor=f"force:{force_id}",
            action="incident.withdrawn",
            subject=f"incident:{incident_id}",
            detail=counts,
            at=now,
        )
    log.info(
        "incident.withdrawn",
        incident_id=incident_id,
        cancelled=cancelled,
        retracted=retracted,
        retractions=sealed,
        already_withdrawn=already,
    )
    return {"incident_id": incident_id, **counts}


async def _withdraw_notices(
    session: AsyncSession, notices: Sequence[Notice], now: datetime, signing_key: Ed25519PrivateKey
) -> tuple[int, int, int]:
    sent = [n for n in notices if NoticeStatus(n.status) in RETRACTABLE | {NoticeStatus.SENDING}]
    sent_ids = {n.notice_id for n in sent}
    holders = await _holders(session, [n.notice_id for n in sent])
    sources = await load_sources(session, sent)
    keys, made = KeyCache(), []
    await keys.load_devices(session, [p for ps in holders.values() for p in ps])
    cancelled = retracted = 0
    for notice in notices:
        status = NoticeStatus(notice.status)
        if status in UNSENT:
            transition(
                session,
                notice,
                NoticeStatus.CANCELLED,
                at=now,
                cause="incident withdrawn by the force before sending",
            )
            cancelled += 1
            continue
        if notice.notice_id not in sent_ids:
            continue  # already final: cancelled, retracted or failed
        people = holders.get(notice.notice_id, [])
        if status is NoticeStatus.SENDING:
            # Nothing was delivered yet, but a webhook POST may be in flight: whoever could
            # receive one gets the retraction. E-mail recipients hold only a pointer, and
            # the portal stops showing a cancelled notice, so they need nothing.
            people = [p for p in people if channel_for(p) == "webhook"]
        source = sources.get(notice.notice_id)
        sealed = Sealed([], [])
        if people and source is not None:
            content = build_retraction_content(
                source.report,
                position=source.position,
                notice_id=notice.notice_id,
                setting_id=notice.setting_id,
            )
            sealed = seal_to(content, people, keys=keys, signing_key=signing_key, now=now)
            made.append(sealed)
        if len(sealed.envelopes) < len(people) or (people and source is None):
            _alert_unretracted(session, notice, now)
        if status is NoticeStatus.SENDING:
            # Nothing was delivered, so the notice is cancelled (the portal never shows it).
            transition(
                session,
                notice,
                NoticeStatus.CANCELLED,
                at=now,
                cause=f"incident withdrawn by the force while sending; "
                f"{len(sealed.envelopes)} retraction(s) sealed",
            )
            cancelled += 1
        else:
            transition(
                session,
                notice,
                NoticeStatus.RETRACTED,
                at=now,
                cause=f"incident withdrawn by the force; "
                f"{len(sealed.envelopes)} retraction(s) sealed",
            )
            retracted += 1
    await store(session, made)
    return cancelled, retracted, sum(len(s.envelopes) for s in made)


async def _holders(session: AsyncSession, notice_ids: list[str]) -> dict[str, list[KeyAdultRow]]:
    """The recipients holding a notice envelope of each notice (deputies included)."""
    found: dict[str, list[KeyAdultRow]] = defaultdict(list)
    if notice_ids:
        rows = (
            await session.execute(
                select(SealedEnvelope.notice_id, KeyAdultRow)
                .join(KeyAdultRow, KeyAdultRow.key_adult_id == SealedEnvelope.key_adult_id)
                .where(SealedEnvelope.notice_id.in_(notice_ids), SealedEnvelope.kind == "notice")
                .order_by(SealedEnvelope.key_adult_id)
            )
        ).all()
        for notice_id, person in rows:
            # One envelope per device, so a person can appear more than once.
            if person not in found[notice_id]:
                found[notice_id].append(person)
    return found


def _alert_unretracted(session: AsyncSession, notice: Notice, now: datetime) -> None:
    log.error(
        "withdraw.retraction_incomplete", notice_id=notice.notice_id, setting_id=notice.setting_id
    )
    session.add(
        Alert(
            notice_id=notice.notice_id,
            kind="retraction_failed",
            audience="admins",
            message=f"Notice {notice.notice_id} for setting {notice.setting_id} was "
            "withdrawn but a retraction could not be sealed to every "
            "recipient. Tell the setting by another route.",
            created_at=now,
            resolved_at=None,
        )
    )
