"""The delivery handler of the ``deliveries`` queue: one envelope, one channel, one attempt.

Webhook: POST the envelope; 2xx delivers it (and the notice, on its first delivered
envelope); a timeout, connection error, 408, 429 or 5xx is retried with exponential backoff
and jitter by the worker runner; any other answer, or too many attempts, fails the
envelope. E-mail: send the pointer (delivery happens when the portal serves the notice).
Every attempt is a ``delivery_attempts`` row, which is also the count that bounds retries.
When every envelope of a notice has failed and none was delivered, the notice is ``failed``
and the admins get an alert: failure is loud.

Idempotent: a message for an envelope whose channel already reached a final outcome is
acknowledged without doing anything, so a relay that publishes twice sends nothing twice.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol

import structlog
from sqlalchemy import bindparam, exists, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.broker import Message
from encompass.adapters.data_keys import DataUnavailable
from encompass.adapters.db.tables import DeliveryAttempt, KeyAdultRow, Notice, SealedEnvelope
from encompass.adapters.smtp import SendResult
from encompass.adapters.webhook import WEBHOOK_KEY_PURPOSE, PostResult
from encompass.clock import Clock
from encompass.domain.status import NoticeStatus
from encompass.services.delivery.fail_notice import fail_if_undeliverable
from encompass.services.receiving.alert_mail import AlertMail
from encompass.services.records.at_rest import keys_of
from encompass.services.records.retention import PURGED_BODY
from encompass.services.scheduling.notices import transition
from workers.runner import Poison

log = structlog.get_logger()

# Outcomes after which a channel is done with an envelope (``retry`` is the only other).
FINAL_OUTCOMES: Final = ("delivered", "failed", "sent", "skipped")
# A notice envelope is delivered only while its notice still stands.
_DELIVERABLE: Final = frozenset(
    {NoticeStatus.SEALED, NoticeStatus.SENDING, NoticeStatus.DELIVERED, NoticeStatus.ACKNOWLEDGED}
)


class DeliveryRetry(Exception):
    """A transient failure, already recorded: the runner retries after a backoff."""


class WebhookPort(Protocol):
    async def post(
        self,
        url: str,
        body: bytes,
        *,
        envelope_id: str,
        kind: str,
        hmac_key: bytes | None,
        timestamp: int,
    ) -> PostResult: ...


class MailPort(Protocol):
    async def send_pointer(self, to: str, notice_id: str) -> SendResult: ...


def delivery_backoff(
    attempt: int, *, base: float = 1.0, cap: float = 30.0, rng: Callable[[], float] = random.random
) -> float:
    """Seconds before retry number ``attempt`` (1-based): exponential (base, 2·base, 4·base
    … capped at ``cap``) with "equal jitter" — half fixed, half random — so the receivers
    that failed together in a morning burst do not all come back at the same instant."""
    ceiling = min(cap, base * 2.0 ** max(attempt - 1, 0))
    return ceiling / 2 + rng() * ceiling / 2


@dataclass(frozen=True, slots=True)
class _Job:
    envelope_id: str
    channel: str


@dataclass(frozen=True, slots=True)
class _Plan:
    envelope_id: str
    notice_id: str
    kind: str
    body: str
    webhook_url: str | None
    hmac_key: bytes | None
    email: str


# Built once: each runs for every delivery, and building a statement costs more than
# running it (thousands of times in a morning burst).
_PLAN = (
    select(
        SealedEnvelope.notice_id,
        SealedEnvelope.kind,
        SealedEnvelope.body,
        Notice.status,
        KeyAdultRow.webhook_url,
        KeyAdultRow.webhook_key_sealed,
        KeyAdultRow.email,
        SealedEnvelope.key_adult_id,
        exists().where(
            DeliveryAttempt.envelope_id == SealedEnvelope.envelope_id,
            DeliveryAttempt.channel == bindparam("channel"),
            DeliveryAttempt.outcome.in_(FINAL_OUTCOMES),
        ),
    )
    .join(Notice, Notice.notice_id == SealedEnvelope.notice_id)
    .join(KeyAdultRow, KeyAdultRow.key_adult_id == SealedEnvelope.key_adult_id)
    .where(SealedEnvelope.envelope_id == bindparam("envelope_id"))
)
_LOCK = (
    select(
        Notice,
        select(func.count())
        .where(
            DeliveryAttempt.envelope_id == bindparam("envelope_id"),
            DeliveryAttempt.channel == bindparam("channel"),
        )
        .scalar_subquery(),
    )
    .where(Notice.notice_id == bindparam("notice_id"))
    .with_for_update(of=Notice)
)
_ATTEMPT = insert(DeliveryAttempt)
# The first channel to deliver is the one on record (the portal may have been first).
_MARK_DELIVERED = (
    update(SealedEnvelope)
    .where(SealedEnvelope.envelope_id == bindparam("id"), SealedEnvelope.delivered_at.is_(None))
    .values(delivered_at=bindparam("at"), delivered_by=bindparam("by"))
    .execution_options(synchronize_session=False)
)


def _parse(body: bytes) -> _Job:
    try:
        data = json.loads(body)
        job = _Job(str(data["envelope_id"]), str(data["channel"]))
    except (ValueError, KeyError, TypeError):
        raise Poison("not a delivery message: expected JSON with envelope_id and channel") from None
    if job.channel not in ("webhook", "email"):
        # Never quoted: a dead-letter reason repeats nothing of a body we did not write.
        raise Poison("unknown delivery channel: expected webhook or email")
    return job


class DeliverEnvelope:
    """The handler: give it to ``run_consumer`` on the ``deliveries`` queue."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        webhook: WebhookPort,
        mail: MailPort | None,
        *,
        max_attempts: int,
    ) -> None:
        self._sessions, self._clock = sessions, clock
        self._webhook, self._mail = webhook, mail
        self._max_attempts = max_attempts

    async def __call__(self, message: Message) -> None:
        """Make one attempt at the envelope named in ``message``; raise DeliveryRetry (after
        recording the attempt) when the runner should try again later."""
        job = _parse(message.body)
        plan = await self._plan(job)
        if plan is None:
            return
        outcome, detail = await self._send(job, plan)
        if await self._record(job, plan, outcome, detail) == "retry":
            raise DeliveryRetry(detail)

    async def _plan(self, job: _Job) -> _Plan | None:
        async with self._sessions() as session:
            # One read, no transaction around it: saves two round trips per delivery.
            connection = await session.connection(
                execution_options={"isolation_level": "AUTOCOMMIT"}
            )
            row = (
                await connection.execute(
                    _PLAN, {"envelope_id": job.envelope_id, "channel": job.channel}
                )
            ).one_or_none()
            keys = keys_of(session)
        if row is None:
            raise Poison("unknown envelope")
        (notice_id, kind, body, status, webhook_url, sealed_key, address, key_adult_id, already) = (
            row
        )
        bound = log.bind(envelope_id=job.envelope_id, channel=job.channel)
        hmac_key = None
        if sealed_key is not None and job.channel == "webhook":
            try:
                hmac_key = keys.open_secret(
                    sealed_key, purpose=WEBHOOK_KEY_PURPOSE, subject=key_adult_id
                )
            except DataUnavailable:
                # Sent with the service's signature only; the HMAC needs new credentials.
                bound.error("delivery.webhook_key_unreadable")
        if already:
            bound.info("delivery.duplicate", outcome="already done")
            return None
        if body == PURGED_BODY:
            bound.info("delivery.not_sent", notice_id=notice_id, why="purged by retention")
            return None
        if kind == "notice" and NoticeStatus(status) not in _DELIVERABLE:
            # Withdrawn (or given up) meanwhile: the content must not go out any more.
            bound.info("delivery.not_sent", notice_id=notice_id, notice_status=status)
            return None
        return _Plan(
            envelope_id=job.envelope_id,
            notice_id=notice_id,
            kind=kind,
            body=body,
            webhook_url=webhook_url,
            hmac_key=hmac_key,
            email=address,
        )

    async def _send(self, job: _Job, plan: _Plan) -> tuple[str, str]:
        """One attempt through the channel: (outcome, detail)."""
        if job.channel == "email":
            if self._mail is None:
                return "skipped", "no SMTP server configured"
            sent = await self._mail.send_pointer(plan.email, plan.notice_id)
            return sent.outcome, sent.detail
        if not plan.webhook_url:
            return "failed", "no webhook URL for the recipient any more"
        if plan.hmac_key is None:
            log.info(
                "delivery.no_webhook_hmac",
                envelope_id=plan.envelope_id,
                why="no webhook secret issued to the recipient: service signature only",
            )
        posted = await self._webhook.post(
            plan.webhook_url,
            plan.body.encode(),
            envelope_id=plan.envelope_id,
            kind=plan.kind,
            hmac_key=plan.hmac_key,
            timestamp=int(self._clock.now().timestamp()),
        )
        return posted.outcome, posted.detail

    async def _record(self, job: _Job, plan: _Plan, outcome: str, detail: str) -> str:
        """Store the attempt and its consequences; returns the outcome as recorded."""
        now = self._clock.now()
        async with self._sessions.begin() as session:
            # Locked: two envelopes of one notice delivered at once must not both move it.
            notice, made = (
                await session.execute(
                    _LOCK,
                    {
                        "notice_id": plan.notice_id,
                        "envelope_id": plan.envelope_id,
                        "channel": job.channel,
                    },
                )
            ).one()
            if outcome == "retry" and made + 1 >= self._max_attempts:
                outcome, detail = "failed", f"gave up after {made + 1} attempts: {detail}"
            await session.execute(
                _ATTEMPT,
                {
                    "envelope_id": plan.envelope_id,
                    "channel": job.channel,
                    "attempt": made + 1,
                    "at": now,
                    "outcome": outcome,
                    "detail": detail[:500],
                },
            )
            if outcome == "delivered":
                await self._delivered(session, notice, plan, job.channel, now)
            elif outcome == "failed":
                log.error(
                    "delivery.failed",
                    envelope_id=plan.envelope_id,
                    notice_id=plan.notice_id,
                    channel=job.channel,
                    detail=detail,
                    attempts=made + 1,
                )
                if plan.kind == "notice":
                    # The others of the setting and the admins hear of it by e-mail.
                    await AlertMail(session, now).delivery_failed(
                        notice, envelope_id=plan.envelope_id
                    )
                    await fail_if_undeliverable(session, notice, now)
        log.info(
            "delivery.attempt",
            envelope_id=plan.envelope_id,
            channel=job.channel,
            attempt=made + 1,
            outcome=outcome,
            detail=detail,
        )
        return outcome

    @staticmethod
    async def _delivered(
        session: AsyncSession, notice: Notice, plan: _Plan, channel: str, now: datetime
    ) -> None:
        await session.execute(_MARK_DELIVERED, {"id": plan.envelope_id, "at": now, "by": channel})
        if plan.kind != "notice":
            return
        status = NoticeStatus(notice.status)
        if status is NoticeStatus.SEALED:
            transition(session, notice, NoticeStatus.SENDING, at=now, cause="delivering")
            status = NoticeStatus.SENDING
        if status is NoticeStatus.SENDING:
            transition(
                session,
                notice,
                NoticeStatus.DELIVERED,
                at=now,
                cause=f"delivered by {channel} to {plan.envelope_id}",
            )
