"""The safety net under the incidents queue: a stored version is matched, whatever was lost.

A version's id reaches the matcher through RabbitMQ. Two gaps remain that no queue setting
closes: a publish that failed after the version was stored (the force was told to report
again, and may not), and a message lost between queues (a retry copy dead-lettered back at
the instant a node crashed: RabbitMQ dead-letters at most once). So the dispatcher looks,
every sweep, for versions still unprocessed long after they arrived and publishes their ids
again. The matcher makes a repeat a no-op, so a copy that was only slow costs nothing.

After ``max_requeues`` attempts the version is left alone and admins are alerted once: such a
version is most likely dead-lettered for a reason a person must read (the console's dead
letters).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import structlog
from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.broker import Broker, PublishError
from encompass.adapters.db.tables import Alert, IncidentVersion
from encompass.adapters.topology import INCIDENTS
from encompass.clock import Clock
from encompass.domain.queued import VersionQueued

log = structlog.get_logger()

# Far beyond a matcher's normal delay (seconds) and a broker restart (a minute), so that the
# net catches only what was lost.
STALE_AFTER: Final = timedelta(minutes=10)
MAX_REQUEUES: Final = 3
BATCH: Final = 100


@dataclass(frozen=True)
class Requeued:
    published: int = 0
    alerted: int = 0


async def requeue_stale(
    sessions: async_sessionmaker[AsyncSession],
    broker: Broker,
    clock: Clock,
    *,
    stale_after: timedelta = STALE_AFTER,
    max_requeues: int = MAX_REQUEUES,
    limit: int = BATCH,
) -> Requeued:
    """Publish again the ids of versions unprocessed ``stale_after`` after they were queued
    (or stored, when never queued); alert admins about those tried ``max_requeues`` times.
    Safe beside other dispatchers (rows taken with ``SKIP LOCKED``)."""
    now = clock.now()
    cutoff = now - stale_after
    published = alerted = 0
    async with sessions.begin() as session:
        versions = (
            await session.scalars(
                select(IncidentVersion)
                .where(
                    IncidentVersion.processed_at.is_(None),
                    IncidentVersion.requeues <= max_requeues,
                    or_(
                        IncidentVersion.queued_at < cutoff,
                        and_(
                            IncidentVersion.queued_at.is_(None),
                            IncidentVersion.received_at < cutoff,
                        ),
                    ),
                )
                .order_by(IncidentVersion.received_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        ).all()
        for version in versions:
            if version.requeues >= max_requeues:
                session.add(_alert(version, now))
                alerted += 1
            else:
                try:
                    await broker.publish(
                        INCIDENTS,
                        VersionQueued(version_id=version.version_id).to_bytes(),
                        message_id=version.version_id,
                    )
                except PublishError:
                    # The broker is away: what was published so far is recorded; the rest
                    # waits for the next sweep.
                    log.warning("incident.requeue_publish_failed", version_id=version.version_id)
                    break
                version.queued_at = now
                published += 1
            version.requeues += 1
    if published or alerted:
        log.warning("incident.requeued_stale", published=published, alerted=alerted)
    return Requeued(published, alerted)


def _alert(version: IncidentVersion, now: datetime) -> Alert:
    return Alert(
        notice_id=None,
        kind="incident_unprocessed",
        audience="admins",
        # Ids only: the report itself is personal data.
        message=(
            f"incident {version.incident_id} version {version.version} was not matched after "
            "being queued again several times; look for it among the incidents dead letters"
        ),
        created_at=now,
        resolved_at=None,
    )
