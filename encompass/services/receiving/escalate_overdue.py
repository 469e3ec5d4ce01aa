"""Escalating unacknowledged notices: deputies at the day's start, admins an hour later.

A notice ``sending`` or ``delivered`` and not acknowledged by its deadline — the setting's
``day_starts`` (Europe/London) on the release day, or, for a notice released after that
moment, ``ack_grace`` after release — is flagged overdue: ``overdue_at`` is set, each
deputy who holds no envelope of it gets one sealed and queued, and an alert goes to the
deputies. Still unacknowledged ``admins_after`` later, ``admins_alerted_at`` is set and an
alert goes to the admins. Each alert is also e-mailed, in the same transaction
(``alert_mail.py``). Overdue is a flag, not a status: the lifecycle is untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError
from sqlalchemy import ColumnElement, exists, not_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.db.tables import Acknowledgement, Alert, Notice, SealedEnvelope, SettingRow
from encompass.clock import Clock
from encompass.domain.calendar import LONDON
from encompass.domain.directory import KeyAdultRole
from encompass.domain.status import AWAITING_ACK, values
from encompass.services.delivery.notice_content import build_notice_content
from encompass.services.delivery.sealing import (
    KeyCache,
    Sealed,
    load_sources,
    people_by_setting,
    seal_to,
    store,
)
from encompass.services.receiving.alert_mail import AlertMail

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class Escalated:
    overdue: int = 0
    deputies_sealed: int = 0
    admins: int = 0


def ack_deadline(deliver_at: datetime, day_starts: time, grace: timedelta) -> datetime:
    """When a notice released at ``deliver_at`` must be acknowledged by: the setting's
    day start (London time) on the release day, or ``grace`` after a release that came
    after it (a notice sent at once during the school day)."""
    local = deliver_at.astimezone(LONDON)
    start = datetime.combine(local.date(), day_starts, tzinfo=LONDON)
    return start if deliver_at < start else deliver_at + grace


def _unacknowledged() -> ColumnElement[bool]:
    return not_(exists().where(Acknowledgement.notice_id == Notice.notice_id))


async def escalate_overdue(
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    signing_key: Ed25519PrivateKey,
    *,
    ack_grace: timedelta,
    admins_after: timedelta,
    limit: int = 500,
) -> Escalated:
    """Flag overdue notices (deputies sealed in, alert to deputies) and alert the admins
    about those overdue for ``admins_after``; each step happens once per notice."""
    now = clock.now()
    async with sessions() as session:
        candidates = (
            await session.execute(
                select(Notice.notice_id, Notice.deliver_at, SettingRow.day_starts)
                .join(SettingRow, SettingRow.setting_id == Notice.setting_id)
                .where(
                    Notice.status.in_(values(AWAITING_ACK)),
                    Notice.overdue_at.is_(None),
                    Notice.deliver_at <= now,
                    _unacknowledged(),
                )
            )
        ).all()
    # The deadline depends on London's clock on each release day: worked out here, not in SQL.
    due = [
        notice_id
        for notice_id, deliver_at, starts in candidates
        if deliver_at is not None and ack_deadline(deliver_at, starts, ack_grace) <= now
    ]
    overdue = sealed = 0
    if due:
        async with sessions.begin() as session:
            overdue, sealed = await _flag_overdue(session, due[:limit], now, signing_key)
    admins = await _alert_admins(sessions, now, admins_after, limit)
    return Escalated(overdue, sealed, admins)


async def _flag_overdue(
    session: AsyncSession, due: list[str], now: datetime, signing_key: Ed25519PrivateKey
) -> tuple[int, int]:
    notices = (
        await session.scalars(
            select(Notice)
            .where(
                Notice.notice_id.in_(due),
                Notice.status.in_(values(AWAITING_ACK)),
                Notice.overdue_at.is_(None),
                _unacknowledged(),
            )
            .with_for_update(skip_locked=True)
        )
    ).all()
    if not notices:
        return 0, 0
    people = await people_by_setting(session, {n.setting_id for n in notices})
    holders = set(
        (
            await session.execute(
                select(SealedEnvelope.notice_id, SealedEnvelope.key_adult_id).where(
                    SealedEnvelope.notice_id.in_([n.notice_id for n in notices]),
                    SealedEnvelope.kind == "notice",
                )
            )
        ).all()
    )
    sources = await load_sources(session, notices)
    keys, made = KeyCache(), []
    await keys.load_devices(session, [p for ps in people.values() for p in ps])
    mail = AlertMail(session, now)
    for notice in notices:
        notice.overdue_at = now
        await mail.overdue_deputies(notice)
        deputies = [
            p
            for p in people[notice.setting_id]
            if p.role == KeyAdultRole.DEPUTY and (notice.notice_id, p.key_adult_id) not in holders
        ]
        source = sources.get(notice.notice_id)
        sealed = Sealed([], [])
        if deputies and source is not None:
            try:
                content = build_notice_content(
                    source.report,
                    position=source.position,
                    notice_id=notice.notice_id,
                    setting_id=notice.setting_id,
                )
            except (LookupError, ValidationError) as exc:
                # The alerts still go out: a person can reach the deputies another way.
                log.error(
                    "notice.overdue_unsealable",
                    notice_id=notice.notice_id,
                    error=type(exc).__name__,
                )
            else:
                sealed = seal_to(content, deputies, keys=keys, signing_key=signing_key, now=now)
                made.append(sealed)
        session.add(
            Alert(
                notice_id=notice.notice_id,
                kind="overdue",
                audience="deputies",
                message=f"Notice {notice.notice_id} for setting {notice.setting_id} "
                "was not acknowledged by the start of the school day. "
                "A deputy please open and acknowledge it now.",
                created_at=now,
                resolved_at=None,
            )
        )
        log.warning(
            "notice.overdue",
            notice_id=notice.notice_id,
            setting_id=notice.setting_id,
            deputies_sealed=len(sealed.envelopes),
        )
    await store(session, made)
    return len(notices), sum(len(s.envelopes) for s in made)


async def _alert_admins(
    sessions: async_sessionmaker[AsyncSession], now: datetime, admins_after: timedelta, limit: int
) -> int:
    async with sessions.begin() as session:
        notices = (
            await session.scalars(
                select(Notice)
                .where(
                    Notice.status.in_(values(AWAITING_ACK)),
                    Notice.overdue_at <= now - admins_after,
                    Notice.admins_alerted_at.is_(None),
                    _unacknowledged(),
                )
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
        mail = AlertMail(session, now)
        for notice in notices:
            notice.admins_alerted_at = now
            await mail.overdue_admins(notice)
            session.add(
                Alert(
                    notice_id=notice.notice_id,
                    kind="overdue",
                    audience="admins",
                    message=f"Notice {notice.notice_id} for setting "
                    f"{notice.setting_id} is still not acknowledged, "
                    f"{int(admins_after.total_seconds() // 60)} minutes "
                    "after its deputies were alerted. Contact the setting.",
                    created_at=now,
                    resolved_at=None,
                )
            )
            log.error(
                "notice.overdue_admins", notice_id=notice.notice_id, setting_id=notice.setting_id
            )
    return len(notices)
