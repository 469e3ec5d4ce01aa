"""Releasing due notices: a schedule kept in the database, never in a broker delay plugin.

Each call takes the ``scheduled`` notices whose ``deliver_at`` has come, seals each to its
recipients, writes an outbox entry per envelope and moves the notice scheduled → sealed →
sending, all in one transaction (a transactional outbox): after a crash a notice is either
still scheduled or sealed with its deliveries queued, never in between. On PostgreSQL the
notices are taken ``FOR UPDATE SKIP LOCKED``, so dispatchers can run side by side and none
releases a notice another has taken; SQLite has one writer and ignores the clause.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError
from sqlalchemy import ColumnElement, and_, exists, not_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.db.tables import Alert, Notice
from encompass.clock import Clock
from encompass.domain.envelope import NoticeContent
from encompass.domain.status import NoticeStatus
from encompass.services.delivery.notice_content import build_notice_content
from encompass.services.delivery.seal_pool import MIN_POOLED, SealJob, SealPool
from encompass.services.delivery.sealing import (
    KeyCache,
    Sealed,
    Target,
    load_sources,
    people_by_setting,
    recipients_for,
    rows_for,
    seal_targets,
    store,
    targets_for,
)
from encompass.services.scheduling.notices import transition_many

log = structlog.get_logger()

# Alerts that hold a notice back from release until an admin fixes the cause (or the
# recheck interval passes: the directory may have been fixed without resolving the alert).
HOLD_KINDS: Final = ("no_recipient", "seal_failed")
RECHECK_HELD: Final = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class ReleasePass:
    """What one call did: notices released, envelopes sealed, notices held back."""

    notices: int = 0
    envelopes: int = 0
    held: int = 0


def _not_held(now: datetime) -> ColumnElement[bool]:
    open_hold = exists().where(
        Alert.notice_id == Notice.notice_id, Alert.kind.in_(HOLD_KINDS), Alert.resolved_at.is_(None)
    )
    # A held notice is retried only every RECHECK_HELD, so a handful that cannot be sealed
    # never starve the rest of the batch.
    return or_(not_(open_hold), Notice.updated_at <= now - RECHECK_HELD)


async def release_due(
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    signing_key: Ed25519PrivateKey,
    *,
    limit: int = 200,
    sealer: SealPool | None = None,
) -> ReleasePass:
    """Release up to ``limit`` due notices (earliest first) in one transaction.

    Promises: each released notice ends ``sending`` with one signed envelope per
    recipient and one outbox entry per envelope; no notice is released twice, even by
    dispatchers running side by side. A notice that cannot be sealed (no recipient with a
    readable key, content that does not validate) stays ``scheduled`` and raises one open
    admin alert, logged at error level; it is tried again every few minutes.

    With a ``sealer`` the batch's envelopes are sealed in its worker processes, off the
    event loop; the outcome is the same.
    """
    now = clock.now()
    async with sessions.begin() as session:
        notices = list(
            (
                await session.scalars(
                    select(Notice)
                    .where(
                        Notice.status == NoticeStatus.SCHEDULED.value,
                        Notice.deliver_at <= now,
                        _not_held(now),
                    )
                    .order_by(Notice.deliver_at, Notice.notice_id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()
        )
        if not notices:
            return ReleasePass()
        sources = await load_sources(session, notices)
        people = await people_by_setting(session, {n.setting_id for n in notices})
        keys = KeyCache()
        await keys.load_devices(session, [p for ps in people.values() for p in ps])
        ready: list[tuple[Notice, NoticeContent, list[Target]]] = []
        held = 0
        for notice in notices:
            chosen = recipients_for(people[notice.setting_id], notice.recipient)
            source = sources.get(notice.notice_id)
            try:
                if source is None:
                    raise LookupError("its incident version is missing or unreadable")
                content = build_notice_content(
                    source.report,
                    position=source.position,
                    notice_id=notice.notice_id,
                    setting_id=notice.setting_id,
                )
            except (LookupError, ValidationError) as exc:
                # Only the class: a validation message may quote the child's details.
                await _hold(
                    session,
                    notice,
                    "seal_failed",
                    now,
                    f"content could not be built ({type(exc).__name__})",
                )
                held += 1
                continue
            targets = targets_for(chosen, keys)
            if not targets:
                await _hold(
                    session,
                    notice,
                    "no_recipient",
                    now,
                    f"no {notice.recipient.replace('_', ' ')} with a readable key at the setting",
                )
                held += 1
                continue
            ready.append((notice, content, targets))
        sealed = await _seal(ready, signing_key, now, sealer)
        await store(session, [made for _, made in sealed])
        # One bulk UPDATE guarded by status = 'scheduled' and one insert of the events,
        # rather than a versioned UPDATE per notice.
        await transition_many(
            session,
            [
                (
                    notice,
                    (
                        (
                            NoticeStatus.SEALED,
                            f"released: sealed to {len(made.envelopes)} recipient(s)",
                        ),
                        (NoticeStatus.SENDING, "queued for delivery"),
                    ),
                )
                for notice, made in sealed
            ],
            at=now,
        )
        await _resolve_holds(session, [n.notice_id for n, _ in sealed], now)
    envelopes = sum(len(made.envelopes) for _, made in sealed)
    if sealed:
        log.info("dispatch.released", notices=len(sealed), envelopes=envelopes, held=held)
    return ReleasePass(notices=len(sealed), envelopes=envelopes, held=held)


async def _seal(
    ready: list[tuple[Notice, NoticeContent, list[Target]]],
    signing_key: Ed25519PrivateKey,
    now: datetime,
    sealer: SealPool | None,
) -> list[tuple[Notice, Sealed]]:
    """Each notice's rows, sealed in the process or, given a ``sealer`` and a batch large
    enough, in its workers."""
    count = sum(len(targets) for _, _, targets in ready)
    envelopes: list[tuple[str, str]] = []
    if sealer is not None and count >= MIN_POOLED:
        jobs = [
            SealJob.of(content, t.person.key_adult_id, t.key)
            for _, content, targets in ready
            for t in targets
        ]
        envelopes = await sealer.seal(jobs, now)
    else:
        for _, content, targets in ready:
            envelopes.extend(seal_targets(content, targets, signing_key, now))
    sealed: list[tuple[Notice, Sealed]] = []
    start = 0
    for notice, content, targets in ready:
        mine = envelopes[start : start + len(targets)]
        start += len(targets)
        sealed.append((notice, rows_for(content, targets, mine, now)))
    return sealed


async def _hold(session: AsyncSession, notice: Notice, kind: str, now: datetime, why: str) -> None:
    """Keep ``notice`` scheduled and make sure an admin hears of it, once."""
    # Touching updated_at starts the recheck interval (see _not_held); it is no transition.
    notice.updated_at = now
    log.error(
        "dispatch.held",
        notice_id=notice.notice_id,
        setting_id=notice.setting_id,
        kind=kind,
        why=why,
    )
    already = await session.scalar(
        select(Alert.alert_id)
        .where(
            Alert.notice_id == notice.notice_id,
            Alert.kind.in_(HOLD_KINDS),
            Alert.resolved_at.is_(None),
        )
        .limit(1)
    )
    if already is None:
        session.add(
            Alert(
                notice_id=notice.notice_id,
                kind=kind,
                audience="admins",
                message=f"Notice {notice.notice_id} for setting "
                f"{notice.setting_id} is due but cannot be released: "
                f"{why}. Fix the directory; it is retried every "
                f"{int(RECHECK_HELD.total_seconds() // 60)} minutes.",
                created_at=now,
                resolved_at=None,
            )
        )


async def _resolve_holds(session: AsyncSession, notice_ids: list[str], now: datetime) -> None:
    """A notice released after being held: its hold alert is resolved."""
    if not notice_ids:
        return
    for alert in await session.scalars(
        select(Alert).where(
            and_(
                Alert.notice_id.in_(notice_ids),
                Alert.kind.in_(HOLD_KINDS),
                Alert.resolved_at.is_(None),
            )
        )
    ):
        alert.resolved_at = now
