"""Shared pieces of the receiving-side tests (portal, acknowledgements, review, CLI).

Children are placed directly in the database (an incident, its version with a real report,
the child row with the matcher's decision), so review cases do not depend on the matcher's
thresholds; notices are scheduled by ``schedule_notice`` and released by the dispatcher's
own ``release_due``, so the envelopes are the real thing.
"""

from __future__ import annotations

import uuid
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.db.directory_repo import load_setting_calendar
from encompass.adapters.db.tables import Child, Incident, IncidentVersion
from encompass.bootstrap import Container
from encompass.domain.incident import IncidentReport
from encompass.services.intake.ingest import canonical_payload
from encompass.services.records.at_rest import seal_candidates, seal_payload
from encompass.services.scheduling.notices import schedule_notice
from encompass.services.scheduling.release_due import ReleasePass, release_due
from tests.databases import scratch_database

AMELIA = {
    "given_name": "Amelia",
    "family_name": "Smith",
    "date_of_birth": "2015-03-02",
    "postcode": "TF3 4NT",
}
FREDDIE = {
    "given_name": "Freddie",
    "family_name": "Smith",
    "date_of_birth": "2022-02-14",
    "postcode": "TF3 4NT",
}
NOBODY = {
    "given_name": "Zephyrine",
    "family_name": "Quillfeather",
    "date_of_birth": "2016-04-05",
    "postcode": "ZZ9 9ZZ",
}
PERSONAL = (
    "Amelia",
    "Freddie",
    "Zephyrine",
    "Quillfeather",
    "2015-03-02",
    "TF3 4NT",
    "ZZ9 9ZZ",
    "scared",
)


def own_database(admin_pg_url: str, label: str) -> AbstractAsyncContextManager[str]:
    """A fresh PostgreSQL database for one test module (its own audit chain and queue)."""
    return scratch_database(admin_pg_url, f"encompass_rcv_{label}_{uuid.uuid4().hex[:8]}")


def report(child: dict[str, Any], occurred_at: str = "2026-11-20T22:10:00+00:00") -> IncidentReport:
    return IncidentReport.model_validate(
        {
            "incident_ref": f"RCV-{uuid.uuid4().hex[:12]}",
            "version": 1,
            "occurred_at": occurred_at,
            "location": "the family home",
            "circumstances": "Argument between adults.",
            "police_actions": "Officers attended.",
            "officer": {"name": "PC 1234 Jones", "contact": "0300 000 0000"},
            "children": [
                {
                    **child,
                    "upn": None,
                    "gender": None,
                    "present": True,
                    "where_during": "upstairs bedroom",
                    "voice": "said she was scared",
                    "injured": False,
                    "school_hint": None,
                }
            ],
        },
        context={"now": datetime.fromisoformat("2030-01-01T00:00:00+00:00")},
    )


@dataclass(frozen=True)
class Placed:
    incident_id: str
    child_id: str
    reported_at: datetime


async def add_child(
    sessions: async_sessionmaker[AsyncSession],
    *,
    force_id: str,
    reported_at: datetime,
    child: dict[str, Any] = AMELIA,
    decision: str = "match",
    score: float = 0.99,
    candidates: list[dict[str, Any]] | None = None,
    reasons: list[str] | None = None,
    occurred_at: str = "2026-11-20T22:10:00+00:00",
) -> Placed:
    """An incident of ``force_id`` reported at ``reported_at`` naming one child, with the
    matcher's ``decision`` as given."""
    incident_id, version_id, child_id = (str(uuid.uuid4()) for _ in range(3))
    body = report(child, occurred_at)
    async with sessions.begin() as session:
        session.add(
            Incident(
                incident_id=incident_id,
                force_id=force_id,
                incident_ref=body.incident_ref,
                latest_version=1,
                status="active",
                created_at=reported_at,
                updated_at=reported_at,
            )
        )
        await session.flush()
        payload = await seal_payload(
            session,
            incident_id=incident_id,
            version_id=version_id,
            payload=canonical_payload(body),
            now=reported_at,
        )
        session.add(
            IncidentVersion(
                version_id=version_id,
                incident_id=incident_id,
                version=1,
                payload=payload,
                payload_sha256="0" * 64,
                received_at=reported_at,
                queued_at=reported_at,
                processed_at=reported_at,
            )
        )
        await session.flush()
        session.add(
            Child(
                child_id=child_id,
                version_id=version_id,
                position=0,
                decision=decision,
                score=score,
                reasons=reasons or [],
                candidates=await seal_candidates(
                    session,
                    incident_id=incident_id,
                    child_id=child_id,
                    candidates=candidates or [],
                    now=reported_at,
                ),
                reported_at=reported_at,
                resolved_at=None,
                resolved_by=None,
            )
        )
    return Placed(incident_id, child_id, reported_at)


async def add_notice(
    sessions: async_sessionmaker[AsyncSession], placed: Placed, setting_id: str, now: datetime
) -> str:
    """The child's notice for ``setting_id``, scheduled by the release rule."""
    async with sessions.begin() as session:
        calendar = await load_setting_calendar(session, setting_id)
        assert calendar is not None
        notice = schedule_notice(
            session,
            child_id=placed.child_id,
            incident_id=placed.incident_id,
            calendar=calendar,
            reported_at=placed.reported_at,
            now=now,
            cause="test",
        )
        return notice.notice_id


async def send_due(container: Container) -> ReleasePass:
    """Release every due notice now, as the dispatcher does (sealed, ``sending``)."""
    return await release_due(container.sessions, container.clock, container.signing_key)
