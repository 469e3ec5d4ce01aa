"""Ingest: a force reports an incident (or a new version of one), over HTTP or AMQP.

The version is stored first, with an audit entry in the same transaction, then its id alone
(:class:`~encompass.domain.queued.VersionQueued`) is published to the ``incidents`` queue:
the report and the force that sent it stay in the database row, so the queue carries neither
trust nor personal data. The caller hears "accepted" only after the broker confirmed it, so
an accepted incident is never lost. Reporting the same force + ``incident_ref`` +
``version`` again is harmless: the stored version is returned, and published again only if
the first publish never confirmed.

Reports that arrive together are handled together (:func:`report_incidents`, fed by
``ingest_batch.py``): their versions are stored and audited in one transaction, their ids
published at once, and the confirmed ones marked queued in one statement. Each report still
gets its own answer: a refusal or an unconfirmed publish is that report's alone.

The stored payload is written by :func:`canonical_payload`, sealed under the incident's data
key (``services/records/at_rest.py``); the matcher reads it back with :func:`load_report`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, cast

import structlog
from sqlalchemy import bindparam, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.broker import Broker, PublishError
from encompass.adapters.db.tables import IncidentVersion
from encompass.adapters.topology import INCIDENTS
from encompass.adapters.unavailable import unavailable
from encompass.clock import Clock
from encompass.domain.incident import IncidentReport
from encompass.domain.queued import VersionQueued
from encompass.services.delivery.notice_content import parse_stored_report
from encompass.services.intake.store_versions import (
    Received,
    Refusal,
    Stored,
    canonical_payload,
    store_versions,
)
from encompass.services.records import audit
from encompass.services.records.at_rest import open_payload

if TYPE_CHECKING:
    from sqlalchemy import Table

__all__ = [
    "Accepted",
    "BrokerUnavailable",
    "Channel",
    "IncidentPurged",
    "Reported",
    "Reporter",
    "VersionConflict",
    "canonical_payload",
    "load_report",
    "report_incident",
    "report_incidents",
]

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


@dataclass(frozen=True)
class Reported:
    """One report as a force sent it, over one channel."""

    force_id: str
    report: IncidentReport
    channel: Channel = "http"


class Reporter(Protocol):
    """What ingests one report: :func:`report_incident` bound to its adapters, or a
    batcher's ``report`` (``ingest_batch.py``)."""

    async def __call__(
        self, force_id: str, report: IncidentReport, *, channel: Channel
    ) -> Accepted: ...


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


_VERSIONS = cast("Table", IncidentVersion.__table__)


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
    (outcome,) = await report_incidents(
        sessions, broker, clock, [Reported(force_id, report, channel)]
    )
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


async def report_incidents(
    sessions: async_sessionmaker[AsyncSession],
    broker: Broker,
    clock: Clock,
    batch: Sequence[Reported],
) -> list[Accepted | Exception]:
    """:func:`report_incident` for many reports of different incidents at once: one
    transaction stores and audits them all, their ids are published together, and one
    statement marks the confirmed ones queued. One answer per report, in order: its
    Accepted, or the exception :func:`report_incident` would raise for it alone."""
    received = [Received.of(item.force_id, item.report) for item in batch]
    stored = await _store(sessions, clock, batch, received)
    answers = [_answer(outcome) for outcome in stored]
    unconfirmed = await _publish(broker, stored)
    for n, error in unconfirmed.items():
        answers[n] = error
    confirmed = [
        outcome.version_id
        for n, outcome in enumerate(stored)
        if isinstance(outcome, Stored) and not outcome.queued and n not in unconfirmed
    ]
    if confirmed:
        await _mark_queued(sessions, confirmed, clock)
    for item, outcome, answer in zip(batch, stored, answers, strict=True):
        if isinstance(answer, Accepted) and isinstance(outcome, Stored):
            _log_accepted(item, outcome)
    return answers


async def _publish(broker: Broker, stored: Sequence[Stored | Exception]) -> dict[int, Exception]:
    """Publish the id of every stored version not yet queued, all at once; the error of
    each (by position) that the broker did not confirm."""
    sending = [
        (n, outcome)
        for n, outcome in enumerate(stored)
        if isinstance(outcome, Stored) and not outcome.queued
    ]
    confirms = await asyncio.gather(
        *(
            broker.publish(
                INCIDENTS,
                VersionQueued(version_id=outcome.version_id).to_bytes(),
                message_id=outcome.version_id,
            )
            for _, outcome in sending
        ),
        return_exceptions=True,
    )
    errors: dict[int, Exception] = {}
    for (n, outcome), confirm in zip(sending, confirms, strict=True):
        if confirm is None:
            continue
        if not isinstance(confirm, Exception):
            raise confirm  # cancelled: not the broker's answer
        log.warning(
            "incident.publish_failed",
            incident_id=outcome.incident_id,
            version_id=outcome.version_id,
        )
        if isinstance(confirm, PublishError):
            refused = BrokerUnavailable("the message broker did not confirm; retry shortly")
            refused.__cause__ = confirm
            errors[n] = refused
        else:
            errors[n] = confirm
    return errors


async def _store(
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    batch: Sequence[Reported],
    received: Sequence[Received],
) -> list[Stored | Exception]:
    """Each report's stored version (or refusal), all in one transaction; if that fails
    for a reason that is no report's own (another writer storing the same incident first),
    each report again in a transaction of its own, so that none is lost or refused for
    another's sake. A database that does not answer fails them all at once."""
    try:
        return await _store_together(sessions, clock, batch, received)
    except Exception as exc:
        if len(batch) == 1 or unavailable(exc) is not None:
            return [exc] * len(batch)
        log.warning("incident.batch_split", size=len(batch), error=type(exc).__name__)
    alone: list[Stored | Exception] = []
    for item, one in zip(batch, received, strict=True):
        alone += await _store(sessions, clock, [item], [one])
    return alone


async def _store_together(
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    batch: Sequence[Reported],
    received: Sequence[Received],
) -> list[Stored | Exception]:
    async with sessions.begin() as session:
        now = clock.now()
        outcomes = await store_versions(session, received, now)
        await audit.record_many(
            session,
            [
                audit.Event(
                    actor=f"force:{item.force_id}",
                    action="incident.reported",
                    subject=f"incident:{outcome.incident_id}",
                    detail={
                        "version": item.report.version,
                        "version_id": outcome.version_id,
                        "children_count": len(item.report.children),
                        "channel": item.channel,
                        "duplicate": outcome.existed,
                    },
                    at=now,
                )
                for item, outcome in zip(batch, outcomes, strict=True)
                if isinstance(outcome, Stored)
            ],
        )
    return [_refused(item.report, outcome) for item, outcome in zip(batch, outcomes, strict=True)]


def _refused(report: IncidentReport, outcome: Stored | Refusal | Exception) -> Stored | Exception:
    if outcome is Refusal.CONFLICT:
        return VersionConflict(
            f"version {report.version} of incident {report.incident_ref} was already "
            "received with different content; send it as a new version"
        )
    if outcome is Refusal.PURGED:
        return IncidentPurged(
            f"incident {report.incident_ref} was closed and its data purged under the "
            "retention rule; report it as a new incident (a new incident_ref)"
        )
    assert not isinstance(outcome, Refusal)
    return outcome


def _answer(outcome: Stored | Exception) -> Accepted | Exception:
    if isinstance(outcome, Exception):
        return outcome
    return Accepted(outcome.incident_id, outcome.version_id, duplicate=outcome.existed)


# One row per version, as one prepared statement run for every row in one round trip: its
# text never changes with the batch's size, so it is prepared once per connection.
_MARK_QUEUED = (
    update(_VERSIONS)
    .where(_VERSIONS.c.version_id == bindparam("vid"), _VERSIONS.c.queued_at.is_(None))
    .values(queued_at=bindparam("at"))
)


async def _mark_queued(
    sessions: async_sessionmaker[AsyncSession], version_ids: list[str], clock: Clock
) -> None:
    now = clock.now()
    async with sessions() as session:
        # In autocommit: one round trip, where a transaction took three more.
        connection = await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        await connection.execute(_MARK_QUEUED, [{"vid": vid, "at": now} for vid in version_ids])


def _log_accepted(item: Reported, outcome: Stored) -> None:
    if outcome.queued:
        log.info(
            "incident.duplicate", incident_id=outcome.incident_id, version_id=outcome.version_id
        )
        return
    log.info(
        "incident.accepted",
        incident_id=outcome.incident_id,
        version_id=outcome.version_id,
        version=item.report.version,
        children_count=len(item.report.children),
        duplicate=outcome.existed,
        channel=item.channel,
    )
