"""Storing reported incident versions, many in one transaction: the write half of ingest.

Each report's incident is found (or created) by force + ``incident_ref``, then its version
by number: a version already stored is returned as it is, or refused when its content
differs; a new one is sealed under its incident's data key and inserted. Each step is one
statement for the whole batch (a multi-row select, a multi-row insert), and each refusal
is decided per report before anything is written, so a refused report never fails the
others nor leaves a row behind.

Give at most one report per incident in a batch (``ingest_batch.py`` sees to it): two
versions of one incident in one batch would each miss the other.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import insert, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from encompass.adapters.db.tables import Incident, IncidentVersion
from encompass.adapters.db.upsert import dialect_insert
from encompass.domain.incident import IncidentReport
from encompass.domain.status import IncidentStatus
from encompass.services.records.at_rest import (
    DataPurged,
    DataUnavailable,
    data_keys_to_write,
    sealed_payload,
)

if TYPE_CHECKING:
    from sqlalchemy import Table

_INCIDENTS = cast("Table", Incident.__table__)
_VERSIONS = cast("Table", IncidentVersion.__table__)
IncidentName = tuple[str, str]
"""An incident as a force names it: (force_id, incident_ref)."""


def canonical_payload(report: IncidentReport) -> str:
    """The report as stored: normalised JSON, one form per content."""
    return report.model_dump_json()


@dataclass(frozen=True)
class Received:
    """One report to store: who sent it, which incident and version, and its content."""

    force_id: str
    incident_ref: str
    version: int
    payload: str
    digest: str

    @classmethod
    def of(cls, force_id: str, report: IncidentReport) -> Received:
        payload = canonical_payload(report)
        return cls(
            force_id,
            report.incident_ref,
            report.version,
            payload,
            hashlib.sha256(payload.encode()).hexdigest(),
        )

    @property
    def incident(self) -> IncidentName:
        return (self.force_id, self.incident_ref)


@dataclass(frozen=True)
class Stored:
    """A report's version as stored: ``existed`` when an earlier report had stored it,
    ``queued`` when its id was already confirmed on the incidents queue."""

    incident_id: str
    version_id: str
    existed: bool
    queued: bool


class Refusal(Enum):
    """Why a report stores nothing."""

    CONFLICT = "conflict"  # this version is stored with other content
    PURGED = "purged"  # the incident's data key was destroyed under the retention rule


Outcome = Stored | Refusal | DataUnavailable


async def store_versions(
    session: AsyncSession, batch: Sequence[Received], now: datetime
) -> list[Outcome]:
    """Store ``batch`` (at most one report per incident) in the caller's transaction; one
    outcome per report, in order. DataUnavailable for a report whose incident's data key
    cannot be opened (wrapped under another data key file)."""
    incidents, created = await _incident_ids(session, {item.incident for item in batch}, now)
    # A version can only exist under an incident that did before this batch.
    known = {
        (incidents[item.incident], item.version)
        for item in batch
        if incidents[item.incident] not in created
    }
    existing = await _stored_versions(session, known) if known else {}
    outcomes: list[Outcome | None] = [None] * len(batch)
    fresh: list[int] = []
    for n, item in enumerate(batch):
        incident_id = incidents[item.incident]
        found = existing.get((incident_id, item.version))
        if found is None:
            fresh.append(n)
        elif found["payload_sha256"] != item.digest:
            outcomes[n] = Refusal.CONFLICT
        else:
            queued = found["queued_at"] is not None
            outcomes[n] = Stored(incident_id, found["version_id"], existed=True, queued=queued)
    keys = await data_keys_to_write(
        session,
        {incidents[batch[n].incident] for n in fresh},
        create_at=now,
        new=created,
    )
    rows: list[dict[str, Any]] = []
    for n in fresh:
        item, incident_id = batch[n], incidents[batch[n].incident]
        key = keys[incident_id]
        if isinstance(key, DataUnavailable):
            outcomes[n] = Refusal.PURGED if isinstance(key, DataPurged) else key
            continue
        version_id = str(uuid.uuid4())
        rows.append(
            {
                "version_id": version_id,
                "incident_id": incident_id,
                "version": item.version,
                "payload": sealed_payload(key, version_id=version_id, payload=item.payload),
                "payload_sha256": item.digest,
                "received_at": now,
                "queued_at": None,
                "processed_at": None,
                "requeues": 0,
            }
        )
        outcomes[n] = Stored(incident_id, version_id, existed=False, queued=False)
    if rows:
        # In incident order, as every writer inserts: two batches never wait on each other
        # in a circle.
        rows.sort(key=lambda row: (row["incident_id"], row["version"]))
        await session.execute(insert(_VERSIONS), rows)
    done = [outcome for outcome in outcomes if outcome is not None]
    assert len(done) == len(batch), "every report has its outcome"
    return done


async def _incident_ids(
    session: AsyncSession, wanted: Collection[IncidentName], now: datetime
) -> tuple[dict[IncidentName, str], set[str]]:
    """Every wanted incident's id, creating those that do not exist yet; and the ids this
    call created. Inserted first, then looked up only if some existed: most reports are
    of new incidents. Another writer creating the same incident meanwhile is not an
    error: its row is used."""
    rows = [
        {
            "incident_id": str(uuid.uuid4()),
            "force_id": force_id,
            "incident_ref": incident_ref,
            "latest_version": 0,
            "status": IncidentStatus.ACTIVE,
            "created_at": now,
            "updated_at": now,
        }
        for force_id, incident_ref in sorted(wanted)
    ]
    # A row whose key another writer has just stored is skipped, not an error.
    statement = (
        dialect_insert(session, _INCIDENTS)
        .on_conflict_do_nothing()
        .returning(_INCIDENTS.c.force_id, _INCIDENTS.c.incident_ref, _INCIDENTS.c.incident_id)
    )
    created = {
        (r.force_id, r.incident_ref): r.incident_id for r in await session.execute(statement, rows)
    }
    found = dict(created)
    if len(created) < len(rows):
        found.update(await _find_incidents(session, [k for k in wanted if k not in created]))
    return found, set(created.values())


async def _find_incidents(
    session: AsyncSession, wanted: Collection[IncidentName]
) -> dict[IncidentName, str]:
    c = _INCIDENTS.c
    rows = await session.execute(
        select(c.force_id, c.incident_ref, c.incident_id).where(
            tuple_(c.force_id, c.incident_ref).in_(list(wanted))
        )
    )
    return {(row.force_id, row.incident_ref): row.incident_id for row in rows}


async def _stored_versions(
    session: AsyncSession, wanted: Collection[tuple[str, int]]
) -> dict[tuple[str, int], dict[str, Any]]:
    c = _VERSIONS.c
    rows = await session.execute(
        select(c.incident_id, c.version, c.version_id, c.payload_sha256, c.queued_at).where(
            tuple_(c.incident_id, c.version).in_(list(wanted))
        )
    )
    return {(row.incident_id, row.version): dict(row._mapping) for row in rows}
