"""Retention by crypto-shredding: an incident's data key is destroyed once it is closed.

An incident is closed when every notice of it is final — acknowledged, failed, cancelled
or retracted — and no version of it waits for the matcher. ``retention_days`` after the
last of those moments (the latest change of its notices or of the incident itself), its
wrapped data key is set to NULL: the report, the candidates and the replies sealed under
it can never be read again, by us or by anyone holding a copy of the database. The sealed
envelopes kept for delivery are cleared too (their hashes stay, for the receipts). Ids,
statuses, times, events and the hash-chained audit log remain, and each purge is itself
an audit entry.

Run by ``encompass purge`` and daily by the dispatcher worker; dispatchers side by side
share the work (the key rows are locked ``SKIP LOCKED``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import structlog
from sqlalchemy import ColumnElement, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.db.engine import forget_old_versions
from encompass.adapters.db.tables import (
    Incident,
    IncidentKey,
    IncidentVersion,
    Notice,
    SealedEnvelope,
)
from encompass.clock import Clock
from encompass.domain.status import FINAL, values
from encompass.services.records import audit
from encompass.services.records.at_rest import forget_cached_key

log = structlog.get_logger()

PURGED_BODY: Final = ""
"""What a purged envelope's ``body`` holds: nothing to serve or deliver."""
_BATCH: Final = 500


@dataclass(frozen=True, slots=True)
class Purge:
    """One incident whose data key is (or, in a dry run, would be) destroyed."""

    incident_id: str
    force_id: str
    closed_at: datetime


def _aware(at: Any) -> datetime:
    # An aggregate over a date-time column comes back as text or naive on SQLite.
    value = datetime.fromisoformat(at) if isinstance(at, str) else at
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def closed_at(incident_updated_at: datetime, last_notice_change: datetime | None) -> datetime:
    """When an incident whose notices are all final was closed: the later of its own last
    change (a withdrawal, a new version) and its notices' last change."""
    if last_notice_change is None:
        return incident_updated_at
    return max(incident_updated_at, last_notice_change)


def _eligible(cutoff: datetime) -> ColumnElement[bool]:
    open_notice = exists().where(
        Notice.incident_id == Incident.incident_id,
        Notice.status.not_in(values(FINAL)) | (Notice.updated_at > cutoff),
    )
    # A version waiting for the matcher needs its report; one the matcher gave up on long
    # ago (dead-lettered, never processed) must not keep the data for ever.
    waiting = exists().where(
        IncidentVersion.incident_id == Incident.incident_id,
        IncidentVersion.processed_at.is_(None),
        IncidentVersion.received_at > cutoff,
    )
    return (
        ~open_notice
        & ~waiting
        & (Incident.updated_at <= cutoff)
        & IncidentKey.wrapped_key.is_not(None)
    )


def _query(cutoff: datetime) -> Any:
    last_change = (
        select(func.max(Notice.updated_at))
        .where(Notice.incident_id == Incident.incident_id)
        .scalar_subquery()
    )
    return (
        select(Incident.incident_id, Incident.force_id, Incident.updated_at, last_change)
        .join(IncidentKey, IncidentKey.incident_id == Incident.incident_id)
        .where(_eligible(cutoff))
        .order_by(Incident.incident_id)
    )


async def _due(
    session: AsyncSession, cutoff: datetime, ids: list[str] | None, limit: int
) -> list[Purge]:
    query = _query(cutoff)
    if ids is not None:
        query = query.where(Incident.incident_id.in_(ids))
    found = []
    for incident_id, force_id, updated_at, last in (
        await session.execute(query.limit(limit))
    ).all():
        closed = closed_at(_aware(updated_at), None if last is None else _aware(last))
        if closed <= cutoff:
            found.append(Purge(incident_id, force_id, closed))
    return found


async def purge_due(
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    *,
    retention_days: int,
    dry_run: bool = False,
    actor: str = "system",
    limit: int = _BATCH,
    vacuum: bool = True,
) -> list[Purge]:
    """Destroy the data keys of up to ``limit`` incidents closed more than
    ``retention_days`` ago, clear their envelopes and audit each purge, in one
    transaction; with ``dry_run`` only say which. Returns them, oldest id first. With
    ``vacuum`` the old row versions are then cleared (:func:`forget_purged`); a caller
    purging batch after batch passes False and calls that once at the end."""
    now = clock.now()
    cutoff = now - timedelta(days=retention_days)
    async with sessions.begin() as session:
        candidates = await _due(session, cutoff, None, limit)
        if dry_run or not candidates:
            return candidates
        locked = list(
            (
                await session.scalars(
                    select(IncidentKey.incident_id)
                    .where(
                        IncidentKey.incident_id.in_([c.incident_id for c in candidates]),
                        IncidentKey.wrapped_key.is_not(None),
                    )
                    .with_for_update(skip_locked=True)
                )
            ).all()
        )
        # Checked again under the lock: a new version or an answer may have come meanwhile.
        purged = await _due(session, cutoff, locked, limit) if locked else []
        for item in purged:
            await _destroy(session, item, now)
        for item in purged:
            await audit.record(
                session,
                actor=actor,
                action="incident.purged",
                subject=f"incident:{item.incident_id}",
                detail={"closed_at": item.closed_at.isoformat(), "retention_days": retention_days},
                at=now,
            )
    for item in purged:
        log.info("retention.purged", incident_id=item.incident_id, force_id=item.force_id)
    if purged and vacuum:
        await forget_purged(sessions)
    return purged


async def forget_purged(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Clear the old versions of the rows a purge overwrote from the database's files
    (``forget_old_versions``): the destroyed wrapped keys and the cleared envelopes."""
    await forget_old_versions(sessions, ["incident_keys", "envelopes"])


async def _destroy(session: AsyncSession, item: Purge, now: datetime) -> None:
    await session.execute(
        update(IncidentKey)
        .where(IncidentKey.incident_id == item.incident_id)
        .values(wrapped_key=None, purged_at=now)
        .execution_options(synchronize_session=False)
    )
    notices = select(Notice.notice_id).where(Notice.incident_id == item.incident_id)
    await session.execute(
        update(SealedEnvelope)
        .where(SealedEnvelope.notice_id.in_(notices))
        .values(body=PURGED_BODY)
        .execution_options(synchronize_session=False)
    )
    forget_cached_key(session, item.incident_id)
