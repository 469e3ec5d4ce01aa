"""The delivery handler of the ``deliveries`` queue: one envelope, one channel, one attempt.

Webhook: POST the envelope; 2xx delivers it (and the notice, on its first delivered
envelope); a timeout, connection error, 408, 429 or 5xx is retried with exponential backoff
and jitter (through a retry queue: nothing waits in a consumer) until the setting's day
starts, or for ``max_attempts`` attempts when released after that; any other answer, or
retries run out, fails the envelope. E-mail: send the pointer (delivery happens when the
portal serves the notice).
Every attempt is a ``delivery_attempts`` row, which is also the count that bounds retries.
When every envelope of a notice has failed and none was delivered, the notice is ``failed``
and the admins get an alert: failure is loud.

Idempotent: a message for an envelope whose channel already reached a final outcome is
acknowledged without doing anything, so a relay that publishes twice sends nothing twice.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import TYPE_CHECKING, Any, Final, cast

import structlog
from pydantic import ValidationError
from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.broker import Message, Parts, Poison
from encompass.adapters.channels import MailPort, WebhookPort
from encompass.adapters.data_keys import DataKeys, DataUnavailable
from encompass.adapters.db.tables import (
    DeliveryAttempt,
    KeyAdultRow,
    Notice,
    SealedEnvelope,
    SettingRow,
)
from encompass.adapters.webhook import WEBHOOK_KEY_PURPOSE
from encompass.clock import Clock
from encompass.domain.calendar import LONDON
from encompass.domain.queued import DeliveryQueued
from encompass.domain.status import DELIVERABLE, FINAL_OUTCOMES, NoticeStatus, values
from encompass.services.delivery.fail_notice import fail_if_undeliverable
from encompass.services.receiving.alert_mail import AlertMail
from encompass.services.records.at_rest import keys_of
from encompass.services.records.retention import PURGED_BODY
from encompass.services.scheduling.notices import Move, transition_many

if TYPE_CHECKING:
    from sqlalchemy import Table

log = structlog.get_logger()


class DeliveryRetry(Exception):
    """A transient failure, already recorded: the runner retries after a backoff."""


# Attempts at one envelope, at most, however long before the day starts it was released.
_HARD_LIMIT: Final = 200


def day_start(deliver_at: datetime | None, starts: time | None) -> datetime | None:
    """When the setting's day starts on the day the notice was released (UK time)."""
    if deliver_at is None or starts is None:
        return None
    day = deliver_at.astimezone(LONDON).date()
    return datetime.combine(day, starts, tzinfo=LONDON).astimezone(UTC)


def _retry_until(kind: str, deliver_at: datetime | None, starts: time | None) -> datetime | None:
    until = day_start(deliver_at, starts) if kind == "notice" else None
    return until if until is not None and deliver_at is not None and deliver_at < until else None


def delivery_backoff(
    attempt: int,
    *,
    base: float = 1.0,
    cap: float = 300.0,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds before retry number ``attempt`` (1-based): exponential (base, 2·base, 4·base
    … capped at ``cap``, five minutes) with "equal jitter" — half fixed, half random — so
    the receivers that failed together in a morning burst do not all come back at the
    same instant. Retries run until the setting's day starts (see ``_give_up``)."""
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
    # When the setting's day starts on the release day, for a notice released before
    # then: it is retried until that moment, then failed (and admins alerted).
    retry_until: datetime | None = None


# Built once: each runs for every batch, and building a statement costs more than
# running it (thousands of times in a morning burst).
_PLANS = (
    select(
        SealedEnvelope.envelope_id,
        SealedEnvelope.notice_id,
        SealedEnvelope.kind,
        SealedEnvelope.body,
        Notice.status,
        KeyAdultRow.webhook_url,
        KeyAdultRow.webhook_key_sealed,
        KeyAdultRow.email,
        SealedEnvelope.key_adult_id,
        Notice.deliver_at,
        SettingRow.day_starts,
    )
    .join(Notice, Notice.notice_id == SealedEnvelope.notice_id)
    .join(KeyAdultRow, KeyAdultRow.key_adult_id == SealedEnvelope.key_adult_id)
    .join(SettingRow, SettingRow.setting_id == Notice.setting_id)
    .where(SealedEnvelope.envelope_id.in_(bindparam("ids", expanding=True)))
)
# The (envelope, channel) pairs already done with.
_DONE = (
    select(DeliveryAttempt.envelope_id, DeliveryAttempt.channel)
    .where(
        DeliveryAttempt.envelope_id.in_(bindparam("ids", expanding=True)),
        DeliveryAttempt.outcome.in_(values(FINAL_OUTCOMES)),
    )
    .distinct()
)
# Attempts made so far per (envelope, channel): the count that bounds retries.
_MADE = (
    select(DeliveryAttempt.envelope_id, DeliveryAttempt.channel, func.count())
    .where(DeliveryAttempt.envelope_id.in_(bindparam("ids", expanding=True)))
    .group_by(DeliveryAttempt.envelope_id, DeliveryAttempt.channel)
)
_ATTEMPT = insert(DeliveryAttempt)
# The first channel to deliver is the one on record (the portal may have been first).
# On the table, not the mapped class: run with many rows (executemany) it must stay a
# plain UPDATE with its own WHERE, not the ORM's bulk update by primary key.
_ENVELOPES = cast("Table", SealedEnvelope.__table__)
_MARK_DELIVERED = (
    update(_ENVELOPES)
    .where(_ENVELOPES.c.envelope_id == bindparam("id"), _ENVELOPES.c.delivered_at.is_(None))
    .values(delivered_at=bindparam("at"), delivered_by=bindparam("by"))
)


def refuse_delivery(exc: ValidationError) -> Poison:
    """The dead-letter reason for a body that is not a :class:`DeliveryQueued`."""
    # Never quoted: a dead-letter reason repeats nothing of a body we did not write.
    errors = exc.errors()
    if [e["loc"] for e in errors] == [("channel",)] and errors[0]["type"] == "literal_error":
        return Poison("unknown delivery channel: expected webhook or email")
    return Poison("not a delivery message: expected JSON with envelope_id and channel")


def _parse(body: bytes) -> DeliveryQueued:
    try:
        return DeliveryQueued.model_validate_json(body)
    except ValidationError as exc:
        raise refuse_delivery(exc) from None


def _outcome(queued: DeliveryQueued, failures: Sequence[tuple[str, Exception]]) -> Exception | None:
    """What the runner does with a message whose envelopes met ``failures``: nothing (ack
    it) when none failed; the failure itself for a one-envelope message, or when every
    envelope met the same one; else :class:`Parts`, so that only the failing envelopes go
    round again (those that met the same kind of failure in one message) and each
    unusable envelope is dead-lettered alone, in the one-envelope form the dead-letter
    page reads."""
    if not failures:
        return None
    if len(queued.ids) == 1:
        return failures[0][1]
    first = failures[0][1]
    if len(failures) == len(queued.ids) and all(exc is first for _, exc in failures):
        return first
    parts: list[tuple[bytes, Exception]] = []
    transient: dict[type[Exception], list[tuple[str, Exception]]] = {}
    for envelope_id, exc in failures:
        if isinstance(exc, Poison):
            body = DeliveryQueued.of([envelope_id], queued.channel).to_bytes()
            parts.append((body, exc))
        else:
            transient.setdefault(type(exc), []).append((envelope_id, exc))
    for group in transient.values():
        body = DeliveryQueued.of([e for e, _ in group], queued.channel).to_bytes()
        parts.append((body, group[0][1]))
    return Parts(parts)


class DeliverEnvelope:
    """The handler: give :meth:`batch` to ``run_batch_consumer`` on the ``deliveries``
    queue (with :meth:`weight`), or the handler itself to ``run_consumer``."""

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

    async def __call__(self, queued: DeliveryQueued) -> None:
        """Make one attempt at each envelope named in ``queued``; raise what they met, as
        :meth:`batch` reports it (see :func:`_outcome`), for the runner to settle."""
        jobs = {n: _Job(e, queued.channel) for n, e in enumerate(dict.fromkeys(queued.ids))}
        results: list[Exception | None] = [None] * len(jobs)
        await self._attempt(jobs, results)
        failures = [(jobs[n].envelope_id, e) for n, e in enumerate(results) if e is not None]
        if (outcome := _outcome(queued, failures)) is not None:
            raise outcome

    @staticmethod
    def weight(message: Message) -> int:
        """How many envelopes ``message`` names (one for a body that does not parse)."""
        try:
            return len(DeliveryQueued.model_validate_json(message.body).ids)
        except ValidationError:
            return 1

    async def batch(self, messages: Sequence[Message]) -> list[Exception | None]:
        """One attempt at each envelope named in ``messages``: read in one query, sent
        side by side, recorded in one transaction. Returns, for each message, None (done:
        ack it) or what its envelopes met (see :func:`_outcome`: Poison, DeliveryRetry
        after recording, the error that kept the attempts from being recorded, or Parts
        when they differ), for the runner to settle that message alone. An envelope and
        channel already taken by an earlier message of the batch is not sent again (a
        relay that published twice)."""
        results: list[Exception | None] = [None] * len(messages)
        parsed: dict[int, tuple[DeliveryQueued, list[int]]] = {}
        jobs: dict[int, _Job] = {}
        taken: set[_Job] = set()
        for n, message in enumerate(messages):
            try:
                queued = _parse(message.body)
            except Poison as exc:
                results[n] = exc
                continue
            mine: list[int] = []
            for envelope_id in queued.ids:
                job = _Job(envelope_id, queued.channel)
                if job not in taken:
                    taken.add(job)
                    mine.append(len(jobs))
                    jobs[len(jobs)] = job
            parsed[n] = (queued, mine)
        outcomes: list[Exception | None] = [None] * len(jobs)
        await self._attempt(jobs, outcomes)
        for n, (queued, mine) in parsed.items():
            failures = [(jobs[j].envelope_id, e) for j in mine if (e := outcomes[j]) is not None]
            results[n] = _outcome(queued, failures)
        return results

    async def _attempt(self, jobs: dict[int, _Job], results: list[Exception | None]) -> None:
        """Send and record ``jobs``, writing each one's outcome into ``results``."""
        plans = await self._plans(jobs, results)
        if not plans:
            return
        unsigned = sum(
            1 for n, p in plans.items() if jobs[n].channel == "webhook" and p.hmac_key is None
        )
        if unsigned:
            # Once per batch, not per envelope: in a morning burst it would be most lines.
            log.info(
                "delivery.no_webhook_hmac",
                envelopes=unsigned,
                why="no webhook secret issued to the recipient: service signature only",
            )
        sent = await asyncio.gather(*(self._send(jobs[n], plan) for n, plan in plans.items()))
        attempts = [
            (jobs[n], plan, outcome, detail)
            for (n, plan), (outcome, detail) in zip(plans.items(), sent, strict=True)
        ]
        try:
            recorded = await self._record(attempts)
        except Exception as exc:
            # Sent but not recorded: each goes round again (the receiver dedupes by
            # envelope id), as one message would have.
            for n in plans:
                results[n] = exc
            return
        for n, (outcome, detail) in zip(plans, recorded, strict=True):
            if outcome == "retry":
                results[n] = DeliveryRetry(detail)

    async def _plans(
        self, jobs: dict[int, _Job], results: list[Exception | None]
    ) -> dict[int, _Plan]:
        """What to send for each job, read in one query; an unknown envelope's result is
        Poison, and a job with nothing to send (already done, purged, withdrawn) is left
        out."""
        if not jobs:
            return {}
        ids = sorted({job.envelope_id for job in jobs.values()})
        async with self._sessions() as session:
            # Reads only, no transaction around them: saves two round trips per batch.
            connection = await session.connection(
                execution_options={"isolation_level": "AUTOCOMMIT"}
            )
            rows = {row[0]: row for row in await connection.execute(_PLANS, {"ids": ids})}
            done = {(e, c) for e, c in await connection.execute(_DONE, {"ids": ids})}
            keys = keys_of(session)
        plans: dict[int, _Plan] = {}
        for n, job in jobs.items():
            row = rows.get(job.envelope_id)
            if row is None:
                results[n] = Poison("unknown envelope")
                continue
            plan = self._plan(job, row, (job.envelope_id, job.channel) in done, keys)
            if plan is not None:
                plans[n] = plan
        return plans

    @staticmethod
    def _plan(job: _Job, row: Sequence[Any], already: bool, keys: DataKeys) -> _Plan | None:
        (
            _,
            notice_id,
            kind,
            body,
            status,
            webhook_url,
            sealed_key,
            address,
            key_adult_id,
            deliver_at,
            day_starts,
        ) = row

        # Bound only when something is logged: most envelopes log nothing here.
        def bound() -> Any:
            return log.bind(envelope_id=job.envelope_id, channel=job.channel)

        hmac_key = None
        if sealed_key is not None and job.channel == "webhook":
            try:
                hmac_key = keys.open_secret(
                    sealed_key, purpose=WEBHOOK_KEY_PURPOSE, subject=key_adult_id
                )
            except DataUnavailable:
                # Sent with the service's signature only; the HMAC needs new credentials.
                bound().error("delivery.webhook_key_unreadable")
        if already:
            bound().info("delivery.duplicate", outcome="already done")
            return None
        if body == PURGED_BODY:
            bound().info("delivery.not_sent", notice_id=notice_id, why="purged by retention")
            return None
        if kind == "notice" and NoticeStatus(status) not in DELIVERABLE:
            # Withdrawn (or given up) meanwhile: the content must not go out any more.
            bound().info("delivery.not_sent", notice_id=notice_id, notice_status=status)
            return None
        return _Plan(
            envelope_id=job.envelope_id,
            notice_id=notice_id,
            kind=kind,
            body=body,
            webhook_url=webhook_url,
            hmac_key=hmac_key,
            email=address,
            retry_until=_retry_until(kind, deliver_at, day_starts),
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
        posted = await self._webhook.post(
            plan.webhook_url,
            plan.body.encode(),
            envelope_id=plan.envelope_id,
            kind=plan.kind,
            hmac_key=plan.hmac_key,
            timestamp=int(self._clock.now().timestamp()),
        )
        return posted.outcome, posted.detail

    async def _record(
        self, attempts: Sequence[tuple[_Job, _Plan, str, str]]
    ) -> list[tuple[str, str]]:
        """Store the attempts and their consequences in one transaction; returns each
        (outcome, detail) as recorded."""
        now = self._clock.now()
        recorded: list[tuple[str, str]] = []
        async with self._sessions.begin() as session:
            # Locked (in one order): two envelopes of one notice delivered at once, by
            # this batch or another dispatcher's, must not both move it.
            notices = {
                n.notice_id: n
                for n in await session.scalars(
                    select(Notice)
                    .where(Notice.notice_id.in_({plan.notice_id for _, plan, _, _ in attempts}))
                    .order_by(Notice.notice_id)
                    .with_for_update()
                )
            }
            made: dict[tuple[str, str], int] = {
                (envelope_id, channel): count
                for envelope_id, channel, count in await session.execute(
                    _MADE, {"ids": sorted({plan.envelope_id for _, plan, _, _ in attempts})}
                )
            }
            rows: list[dict[str, object]] = []
            delivered: list[tuple[Notice, _Plan, str]] = []
            failed: list[tuple[Notice, _Plan]] = []
            for job, plan, outcome, detail in attempts:
                number = made.get((plan.envelope_id, job.channel), 0) + 1
                if outcome == "retry" and self._give_up(plan, number, now):
                    outcome, detail = "failed", f"gave up after {number} attempts: {detail}"
                rows.append(
                    {
                        "envelope_id": plan.envelope_id,
                        "channel": job.channel,
                        "attempt": number,
                        "at": now,
                        "outcome": outcome,
                        "detail": detail[:500],
                    }
                )
                recorded.append((outcome, detail))
                notice = notices[plan.notice_id]
                if outcome == "delivered":
                    delivered.append((notice, plan, job.channel))
                elif outcome == "failed":
                    log.error(
                        "delivery.failed",
                        envelope_id=plan.envelope_id,
                        notice_id=plan.notice_id,
                        channel=job.channel,
                        detail=detail,
                        attempts=number,
                    )
                    if plan.kind == "notice":
                        failed.append((notice, plan))
                log.info(
                    "delivery.attempt",
                    envelope_id=plan.envelope_id,
                    channel=job.channel,
                    attempt=number,
                    outcome=outcome,
                    detail=detail,
                )
            await session.execute(_ATTEMPT, rows)
            await self._delivered(session, delivered, now)
            for notice, plan in failed:
                # The others of the setting and the admins hear of it by e-mail.
                await AlertMail(session, now).delivery_failed(notice, envelope_id=plan.envelope_id)
                await fail_if_undeliverable(session, notice, now)
        return recorded

    def _give_up(self, plan: _Plan, attempts: int, now: datetime) -> bool:
        """A notice released before its setting's day starts is retried until the day
        starts (the moment it was meant to arrive before), then failed, loudly; anything
        else (a retraction, a notice released once the day had begun) for
        ``max_attempts`` attempts."""
        if plan.retry_until is not None:
            return now >= plan.retry_until or attempts >= _HARD_LIMIT
        return attempts >= self._max_attempts

    @staticmethod
    async def _delivered(
        session: AsyncSession, delivered: Sequence[tuple[Notice, _Plan, str]], now: datetime
    ) -> None:
        """Mark the envelopes delivered (the first channel to deliver is the one on
        record) and move their notices to ``delivered``: those ``sending`` in one bulk
        transition, any still ``sealed`` through ``sending`` first."""
        if not delivered:
            return
        await session.execute(
            _MARK_DELIVERED,
            [{"id": plan.envelope_id, "at": now, "by": ch} for _, plan, ch in delivered],
        )
        paths: dict[str, tuple[Notice, list[Move]]] = {}
        for notice, plan, channel in delivered:
            if plan.kind != "notice" or notice.notice_id in paths:
                continue
            status = NoticeStatus(notice.status)
            moves: list[Move] = []
            if status is NoticeStatus.SEALED:
                moves.append((NoticeStatus.SENDING, "delivering"))
            if status in (NoticeStatus.SEALED, NoticeStatus.SENDING):
                moves.append(
                    (NoticeStatus.DELIVERED, f"delivered by {channel} to {plan.envelope_id}")
                )
                paths[notice.notice_id] = (notice, moves)
        for start in (NoticeStatus.SENDING, NoticeStatus.SEALED):
            await transition_many(
                session,
                [(n, m) for n, m in paths.values() if n.status == start.value],
                at=now,
            )
