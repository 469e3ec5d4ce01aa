"""Overdue and failed-delivery e-mails: decided with the event, sent by the mail relay.

The step that decides an event (the escalation sweep flagging a notice overdue or alerting
the admins, the delivery handler or the sweeper failing a delivery) calls
:class:`AlertMail` in its own transaction, under the notice's row lock; it writes one
``mail_outbox`` row per person to e-mail (``domain/alert_mail.py`` says who). A person
already on record for that notice and event is not written again, and the table's unique
(notice, event, address) backs that up, so dispatchers side by side and restarts never
e-mail anybody twice for one event.

:func:`relay_mail` sends pending rows (taken ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
relays side by side share them) and records the outcome in the same transaction. A crash
after the SMTP server took a message but before that commit sends it again on the next
pass: e-mail is at least once, and that window is one SMTP round trip.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Final, Protocol

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.channels import SendResult
from encompass.adapters.db.tables import (
    Admin,
    KeyAdultRow,
    MailOutboxRow,
    Notice,
    SealedEnvelope,
)
from encompass.clock import Clock
from encompass.domain import alert_mail
from encompass.domain.alert_mail import AdminContact, MailKind, MailText, MailTo, Person
from encompass.domain.status import AWAITING_ACK, DeliveryOutcome

log = structlog.get_logger()

# An overdue e-mail still pending when the notice was acknowledged meanwhile is not sent.
_OVERDUE: Final = frozenset({"overdue_deputies", "overdue_admins"})
MAX_ATTEMPTS: Final = 6
_BATCH: Final = 50


class MailSender(Protocol):
    """What the relay needs of the SMTP adapter."""

    @property
    def portal_url(self) -> str: ...

    async def send_mail(self, to: str, text: MailText) -> SendResult: ...


def retry_after(attempts: int) -> timedelta:
    """Wait before the next try of an e-mail: 30 s, 1 min, 2 min … capped at 15 min."""
    return timedelta(seconds=min(900, 30 * 2 ** max(attempts - 1, 0)))


class AlertMail:
    """Queues the e-mails of events decided in ``session`` (one per transaction)."""

    def __init__(self, session: AsyncSession, now: datetime) -> None:
        self._session, self._now = session, now
        self._admins: list[AdminContact] | None = None

    async def overdue_deputies(self, notice: Notice) -> int:
        people = await self._people(notice.setting_id)
        return await self._queue(notice, "overdue_deputies", alert_mail.overdue_deputies(people))

    async def overdue_admins(self, notice: Notice) -> int:
        mails = alert_mail.overdue_admins(await self._admin_contacts(), _area(notice))
        return await self._queue(notice, "overdue_admins", mails)

    async def delivery_failed(self, notice: Notice, *, envelope_id: str | None) -> int:
        """A delivery of ``notice`` failed: ``envelope_id``'s, or (None) the notice's as a
        whole. Its other recipients and the admins are e-mailed."""
        failed = None
        if envelope_id is not None:
            failed = await self._session.scalar(
                select(SealedEnvelope.key_adult_id).where(SealedEnvelope.envelope_id == envelope_id)
            )
        holders = set(
            (
                await self._session.scalars(
                    select(SealedEnvelope.key_adult_id).where(
                        SealedEnvelope.notice_id == notice.notice_id,
                        SealedEnvelope.kind == "notice",
                    )
                )
            ).all()
        )
        recipients = [p for p in await self._people(notice.setting_id) if p.key_adult_id in holders]
        mails = alert_mail.delivery_failed(
            recipients, failed, await self._admin_contacts(), _area(notice)
        )
        return await self._queue(notice, "delivery_failed", mails)

    async def _people(self, setting_id: str) -> list[Person]:
        rows = await self._session.execute(
            select(KeyAdultRow.key_adult_id, KeyAdultRow.role, KeyAdultRow.email)
            .where(KeyAdultRow.setting_id == setting_id)
            .order_by(KeyAdultRow.key_adult_id)
        )
        return [Person(ident, role, email) for ident, role, email in rows]

    async def _admin_contacts(self) -> list[AdminContact]:
        if self._admins is None:
            rows = await self._session.execute(
                select(Admin.admin_id, Admin.area, Admin.email)
                .where(Admin.revoked_at.is_(None), Admin.email.is_not(None))
                .order_by(Admin.created_at)
            )
            self._admins = [AdminContact(ident, area, email) for ident, area, email in rows]
        return self._admins

    async def _queue(self, notice: Notice, kind: MailKind, mails: Iterable[MailTo]) -> int:
        already = (
            await self._session.scalars(
                select(MailOutboxRow.address).where(
                    MailOutboxRow.notice_id == notice.notice_id, MailOutboxRow.kind == kind
                )
            )
        ).all()
        fresh = alert_mail.unsent(mails, already)
        for mail in fresh:
            self._session.add(
                MailOutboxRow(
                    notice_id=notice.notice_id,
                    kind=kind,
                    audience=mail.audience,
                    recipient_id=mail.recipient_id,
                    address=mail.address.strip(),
                    status="pending",
                    attempts=0,
                    created_at=self._now,
                    next_at=self._now,
                    sent_at=None,
                    detail="",
                )
            )
        if fresh:
            log.info("mail.queued", notice_id=notice.notice_id, kind=kind, count=len(fresh))
        return len(fresh)


def _area(notice: Notice) -> str | None:
    """The local authority of the notice's setting, once the directory names one; until
    then only admins of area ``all`` are e-mailed (as only they are served)."""
    return None


async def relay_mail(
    sessions: async_sessionmaker[AsyncSession],
    mailer: MailSender | None,
    clock: Clock,
    *,
    limit: int = _BATCH,
    max_attempts: int = MAX_ATTEMPTS,
) -> int:
    """Send up to ``limit`` pending e-mails that are due; returns how many were sent.
    Without a mailer (no ``ENCOMPASS_SMTP_HOST``) each is recorded as skipped."""
    now = clock.now()
    async with sessions.begin() as session:
        rows = (
            await session.execute(
                select(MailOutboxRow, Notice.status)
                .join(Notice, Notice.notice_id == MailOutboxRow.notice_id)
                .where(MailOutboxRow.status == "pending", MailOutboxRow.next_at <= now)
                .order_by(MailOutboxRow.mail_id)
                .limit(limit)
                .with_for_update(of=MailOutboxRow, skip_locked=True)
            )
        ).all()
        if not rows:
            return 0
        to_send: list[MailOutboxRow] = []
        for row, status in rows:
            if mailer is None:
                _finish(row, "skipped", "no SMTP server configured", now)
            elif row.kind in _OVERDUE and status not in AWAITING_ACK:
                _finish(row, "skipped", f"notice {status} meanwhile", now)
            else:
                to_send.append(row)
        if mailer is not None and to_send:
            results = await asyncio.gather(*(_send(mailer, row) for row in to_send))
            for row, result in zip(to_send, results, strict=True):
                _record(row, result, now, max_attempts)
    sent = sum(1 for row, _ in rows if row.status == "sent")
    log.debug("mail.relayed", sent=sent, considered=len(rows))
    return sent


async def _send(mailer: MailSender, row: MailOutboxRow) -> SendResult:
    kind: MailKind = row.kind  # type: ignore[assignment]  # written only from MailKind
    audience: alert_mail.Audience = row.audience  # type: ignore[assignment]  # likewise
    text = alert_mail.compose(kind, audience, row.notice_id, mailer.portal_url)
    return await mailer.send_mail(row.address, text)


def _record(row: MailOutboxRow, result: SendResult, now: datetime, max_attempts: int) -> None:
    row.attempts += 1
    if result.outcome == DeliveryOutcome.RETRY and row.attempts < max_attempts:
        row.next_at = now + retry_after(row.attempts)
        row.detail = result.detail[:500]
        log.warning(
            "mail.retry", mail_id=row.mail_id, notice_id=row.notice_id, detail=result.detail
        )
        return
    if result.outcome == DeliveryOutcome.SENT:
        _finish(row, "sent", result.detail, now)
        log.info("mail.sent", mail_id=row.mail_id, notice_id=row.notice_id, kind=row.kind)
        return
    _finish(row, "failed", result.detail, now)
    log.error(
        "mail.failed",
        mail_id=row.mail_id,
        notice_id=row.notice_id,
        kind=row.kind,
        detail=result.detail,
        attempts=row.attempts,
    )


def _finish(row: MailOutboxRow, status: str, detail: str, now: datetime) -> None:
    row.status, row.detail = status, detail[:500]
    if status == "sent":
        row.sent_at = now
