"""Dead letters: what each work queue gave up on, and replaying one.

A dead letter is shown by its queue, message id, reason, attempts and size, never its
body (an incident's body holds children's details). Reading a dead-letter queue takes its
messages and puts confirmed copies back before letting the originals go: the broker has
no "peek", and giving a message back unsettled would count toward a quorum queue's
delivery limit, which could drop it. Replaying publishes the message, without our retry
and dead-letter headers, to its work queue, where it is handled afresh (and comes back
here, with its new reason, if it fails again).

A delivery's dead letter names its envelope, hence a notice and a setting: it is shown with
the setting's name, to admins of that setting's area. An incident's dead letter belongs to
no area yet (nothing was matched), so only admins of ``all`` see it or replay it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.broker import Broker, Delivery, PublishError
from encompass.adapters.db.tables import Notice, SealedEnvelope, SettingRow
from encompass.adapters.topology import DEAD_SUFFIX, WORK_QUEUES
from encompass.clock import Clock
from encompass.services.admin.scope import ALL, Area
from encompass.services.records import audit

# Our own headers on a dead letter (workers/runner.py): read for the page, dropped on replay.
DEAD_REASON_HEADER: Final = "x-encompass-dead-reason"
ATTEMPTS_HEADER: Final = "x-encompass-attempts"
DROPPED_HEADER: Final = "x-encompass-dropped-bytes"
MAX_SHOWN: Final = 200
DELIVERIES: Final = "deliveries"


class DeadLetterRefused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


@dataclass(frozen=True)
class DeadLetter:
    queue: str  # the work queue it came from
    message_id: str
    reason: str
    attempts: int | None
    size_bytes: int
    envelope_id: str | None = None  # a delivery's: which envelope it was to carry
    setting_id: str | None = None
    setting_name: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "message_id": self.message_id,
            "reason": self.reason,
            "attempts": self.attempts,
            "size_bytes": self.size_bytes,
            "setting_id": self.setting_id,
            "setting_name": self.setting_name,
        }


def _int(value: object) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, (str, bytes)) and value.isdigit():
        return int(value)
    return None


def _letter(queue: str, delivery: Delivery) -> DeadLetter:
    message = delivery.message
    reason = message.headers.get(DEAD_REASON_HEADER)
    if isinstance(reason, bytes):
        reason = reason.decode("utf-8", "replace")
    dropped = _int(message.headers.get(DROPPED_HEADER))
    envelope_id = None
    if queue == DELIVERIES:
        # A delivery message is {"envelope_id", "channel"} or {"envelope_ids": [...],
        # "channel"}: ids only, no personal data. A letter naming many is placed by its first.
        try:
            data = json.loads(message.body)
        except ValueError:
            data = None
        if isinstance(data, dict):
            named = data.get("envelope_id")
            many = data.get("envelope_ids")
            if not isinstance(named, str) and isinstance(many, list) and many:
                named = many[0]
            if isinstance(named, str):
                envelope_id = named[:64]
    return DeadLetter(
        queue,
        message.message_id,
        # A message the broker dead-lettered itself (delivery limit) carries no reason of ours.
        str(reason) if reason else "dead-lettered by the broker (delivery limit reached)",
        _int(message.headers.get(ATTEMPTS_HEADER)),
        dropped if dropped is not None else len(message.body),
        envelope_id,
    )


async def _placed(session: AsyncSession, letters: list[DeadLetter], area: Area) -> list[DeadLetter]:
    """The letters of ``area``, each with its setting when it has one."""
    ids = {d.envelope_id for d in letters if d.envelope_id}
    where: dict[str, tuple[str, str, str | None]] = {}
    if ids:
        rows = await session.execute(
            select(
                SealedEnvelope.envelope_id,
                SettingRow.setting_id,
                SettingRow.name,
                SettingRow.la_code,
            )
            .join(Notice, Notice.notice_id == SealedEnvelope.notice_id)
            .join(SettingRow, SettingRow.setting_id == Notice.setting_id)
            .where(SealedEnvelope.envelope_id.in_(ids))
        )
        where = {envelope_id: (sid, name, code) for envelope_id, sid, name, code in rows}
    placed = []
    for letter in letters:
        found = where.get(letter.envelope_id or "")
        if found is not None:
            letter = replace(letter, setting_id=found[0], setting_name=found[1])
        if area.everywhere or (found is not None and found[2] == area.code):
            placed.append(letter)
    return placed


def _check(queue: str) -> str:
    if queue not in WORK_QUEUES:
        raise DeadLetterRefused(404, "not_found", "no such queue: one of " + ", ".join(WORK_QUEUES))
    return queue + DEAD_SUFFIX


async def _drain(broker: Broker, queue: str, limit: int) -> list[Delivery]:
    taken: list[Delivery] = []
    while len(taken) < limit:
        delivery = await broker.get(_check(queue), timeout=0.0)
        if delivery is None:
            break
        taken.append(delivery)
    return taken


async def _put_back(broker: Broker, queue: str, deliveries: list[Delivery]) -> None:
    for delivery in deliveries:
        message = delivery.message
        try:
            await broker.publish(
                queue + DEAD_SUFFIX,
                message.body,
                message_id=message.message_id,
                headers=message.headers,
            )
        except PublishError:
            # No confirmed copy: give the original back rather than hold it unsettled.
            await delivery.reject(requeue=True)
        else:
            await delivery.ack()


async def list_dead_letters(
    sessions: async_sessionmaker[AsyncSession],
    broker: Broker,
    clock: Clock,
    actor: str,
    *,
    limit: int = 50,
    area: Area = ALL,
) -> dict[str, list[DeadLetter]]:
    """Each work queue's dead letters of ``area`` (of up to ``limit`` read per queue),
    oldest first. Audited."""
    found: dict[str, list[DeadLetter]] = {}
    for queue in WORK_QUEUES:
        if not area.everywhere and queue != DELIVERIES:
            continue
        taken = await _drain(broker, queue, max(1, min(limit, MAX_SHOWN)))
        try:
            found[queue] = [_letter(queue, d) for d in taken]
        finally:
            await _put_back(broker, queue, taken)
    async with sessions.begin() as session:
        found = {queue: await _placed(session, letters, area) for queue, letters in found.items()}
        await audit.record(
            session,
            actor=actor,
            action="admin.dead_letters.list",
            subject="dead_letters",
            detail={queue: len(letters) for queue, letters in found.items()},
            at=clock.now(),
        )
    return found


async def replay(
    sessions: async_sessionmaker[AsyncSession],
    broker: Broker,
    clock: Clock,
    actor: str,
    queue: str,
    message_id: str,
    *,
    area: Area = ALL,
) -> DeadLetter:
    """Send the dead letter ``message_id`` of ``queue`` (one of ``area``) back to ``queue``,
    its attempts counted afresh. DeadLetterRefused 404 when it is not there (replayed
    already) or lies outside the area. Audited."""
    taken = await _drain(broker, queue, MAX_SHOWN * 5)
    chosen = next((d for d in taken if d.message.message_id == message_id), None)
    try:
        if chosen is None:
            raise DeadLetterRefused(404, "not_found", "no such dead letter (replayed already?)")
        async with sessions() as session:
            placed = await _placed(session, [_letter(queue, chosen)], area)
        if not placed:
            chosen = None
            raise DeadLetterRefused(404, "not_found", "no such dead letter (replayed already?)")
        letter = placed[0]
        ours = (DEAD_REASON_HEADER, ATTEMPTS_HEADER, DROPPED_HEADER)
        message = chosen.message
        await broker.publish(
            queue,
            message.body,
            message_id=message.message_id,
            headers={k: v for k, v in message.headers.items() if k not in ours},
        )
        await chosen.ack()
    finally:
        await _put_back(broker, queue, [d for d in taken if d is not chosen])
    async with sessions.begin() as session:
        await audit.record(
            session,
            actor=actor,
            action="dead_letter.replayed",
            subject=f"message:{message_id}",
            detail={"queue": queue, "reason": letter.reason},
            at=clock.now(),
        )
    return letter
