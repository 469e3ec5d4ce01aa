"""Ingest: a force reports an incident (or a new version of one), over HTTP or AMQP.

The version is stored first, with an audit entry in the same transaction, then its id alone
(:class:`~encompass.domain.queued.VersionQueued`) is published to the ``incidents`` queue:
the report and the force that sent it stay in the database row, so the queue carries neither
trust nor personal data. The caller hears "accepted" only after the broker confirmed it, so
an accepted incident is never lost. Reporting the same force + ``incident_ref`` +
``version`` again is harmless: the stored version is returned, and published again only if
the first publish never confirmed.

The stored payload is written by :func:`canonical_payload`, sealed under the incident's data
key (``services/records/at_rest.py``); the matcher reads it back with :func:`load_report`.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal, cast

import structlog
from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.broker import Broker, PublishError
from encompass.adapters.db.tables import Incident, IncidentVersion
from encompass.adapters.topology import INCIDENTS
from encompass.clock import Clock
from encompass.domain.incident import IncidentReport
from encompass.domain.queued import VersionQueued
from encompass.domain.status import IncidentStatus
from encompass.services.delivery.notice_content import parse_stored_report
from encompass.services.records import audit
from encompass.services.records.at_rest import (
    DataPurged,
    incident_data_key,
    open_payload,
    seal_payload,
)

if TYPE_CHECKING:
    from sqlalchemy import Table

log = structlog.get_logger()

Channel = Literal["http", "amqp"]


class VersionConflict(Exception):
    """This version was already received with different content."""


class IncidentPurged(VersionConflict):
    """A new version of an incident whose data retention has already destroyed."""


class BrokerUnavailable(Exception):
    """The broker did not confirm the message; the caller should retry."""


@dataclass(frozen=True)
class Accepted:
    incident_id: str
    version_id: str
    duplicate: bool


def canonical_payload(report: IncidentReport) -> str:
    """The report as stored: normalised JSON, one form per content."""
    return report.model_dump_json()


async def load_report(session: AsyncSession, version: IncidentVersion) -> IncidentReport:
    """The report a stored version holds (opened with its incident's data key), checked
    again against the clock of the moment it was received (see :func:`parse_stored_report`).
    DataUnavailable when it cannot be opened (purged by retention, or not sealed by us)."""
    payload = await open_payload(
        session,
        incident_id=version.incident_id,
        version_id=version.version_id,
        stored=version.payload,
    )
    return parse_stored_report(payload, version.received_at)


async def record_version(
    session: AsyncSession, force_id: str, report: IncidentReport, payload: str, now_: datetime
) -> tuple[Incident, IncidentVersion, bool]:
    """Find or create the incident and this version; returns (incident, version, existed)."""
    digest = hashlib.sha256(payload.encode()).hexdigest()
    incident = (
        await session.execute(
            select(Incident).where(
                Incident.force_id == force_id, Incident.incident_ref == report.incident_ref
            )
        )
    ).scalar_one_or_none()
    if incident is None:
        incident = Incident(
            incident_id=str(uuid.uuid4()),
            force_id=force_id,
            incident_ref=report.incident_ref,
            latest_version=0,
            status=IncidentStatus.ACTIVE,
            created_at=now_,
            updated_at=now_,
        )
        session.add(incident)
        await session.flush()
    version = (
        await session.execute(
            select(IncidentVersion).where(
                IncidentVersion.incident_id == incident.incident_id,
                IncidentVersion.version == report.version,
            )
        )
    ).scalar_one_or_none()
    if version is not None:
        if version.payload_sha256 != digest:
            raise VersionConflict(
                f"version {report.version} of incident {report.incident_ref} was already "
                "received with different content; send it as a new version"
            )
        return incident, version, True
    try:
        await incident_data_key(session, incident.incident_id, create_at=now_)
    except DataPurged:
        raise IncidentPurged(
            f"incident {report.incident_ref} was closed and its data purged under the "
            "retention rule; report it as a new incident (a new incident_ref)"
        ) from None
    version_id = str(uuid.uuid4())
    version = IncidentVersion(
        version_id=version_id,
        incident_id=incident.incident_id,
        version=report.version,
        payload=await seal_payload(
            session,
            incident_id=incident.incident_id,
            version_id=version_id,
            payload=payload,
            now=now_,
        ),
        payload_sha256=digest,
        received_at=now_,
        queued_at=None,
        processed_at=None,
    )
    session.add(version)
    await session.flush()
    return incident, version, False


_VERSIONS = cast("Table", IncidentVersion.__table__)
_MARK_QUEUED = (
    update(_VERSIONS)
    .where(_VERSIONS.c.version_id == bindparam("vid"), _VERSIONS.c.queued_at.is_(None))
    .values(queued_at=bindparam("at"))
)


async def report_incident(
    sessions: async_sessionmaker[AsyncSession],
    broker: Broker,
    clock: Clock,
    force_id: str,
    report: IncidentReport,
    *,
    channel: Channel = "http",
) -> Accepted:
    """Store one incident version and audit the report (one transaction), then publish the
    version's id; return only once the broker confirmed it. Raises :class:`VersionConflict`
    (nothing stored) or :class:`BrokerUnavailable` (stored; report it again)."""
    payload = canonical_payload(report)
    async with sessions.begin() as session:
        now = clock.now()
        incident, version, existed = await record_version(session, force_id, report, payload, now)
        incident_id, version_id, queued = (
            incident.incident_id,
            version.version_id,
            version.queued_at is not None,
        )
        await audit.record(
            session,
            actor=f"force:{force_id}",
            action="incident.reported",
            subject=f"incident:{incident_id}",
            detail={
                "version": report.version,
                "version_id": version_id,
                "children_count": len(report.children),
                "channel": channel,
                "duplicate": existed,
            },
            at=now,
        )
    if queued:
        log.info("incident.duplicate", incident_id=incident_id, version_id=version_id)
        return Accepted(incident_id, version_id, duplicate=True)
    try:
        await broker.publish(
            INCIDENTS, VersionQueued(version_id=version_id).to_bytes(), message_id=version_id
        )
    except PublishError as exc:
        log.warning("incident.publish_failed", incident_id=incident_id, version_id=version_id)
        raise BrokerUnavailable("the message broker did not confirm; retry shortly") from exc
    async with sessions() as session:
        # One statement in autocommit: a round trip, where a transaction took four.
        connection = await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        await connection.execute(_MARK_QUEUED, {"vid": version_id, "at": clock.now()})
    log.info(
        "incident.accepted",
        incident_id=incident_id,
        version_id=version_id,
        version=report.version,
        children_count=len(report.children),
        duplicate=existed,
        channel=channel,
    )
    return Accepted(incident_id, version_id, duplicate=existed)
