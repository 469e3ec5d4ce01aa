"""The matcher's use case: one incident version in, children matched, notices scheduled.

Everything for one version happens in one transaction and the version is marked processed
in it, so a redelivered message creates nothing twice. A later version replaces the unsent
notices of earlier ones; an earlier version arriving late is kept for the audit trail only.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import structlog
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.broker import Message
from encompass.adapters.db.directory_repo import load_setting_calendar
from encompass.adapters.db.tables import Child, Force, Incident, Notice
from encompass.clock import Clock
from encompass.domain.incident import ChildReport, IncidentReport, parse_report
from encompass.domain.match import Candidate, ChildQuery, Decision
from encompass.domain.status import UNSENT, NoticeStatus
from encompass.services.at_rest import seal_candidates
from encompass.services.ingest import FORCE_HEADER, canonical_payload, record_version
from encompass.services.notices import schedule_notice, transition
from encompass.services.roster import Roster
from workers.runner import Poison

log = structlog.get_logger()


def describe_invalid(exc: ValidationError) -> str:
    """Where and why a report is invalid, without quoting any of its values."""
    places = [".".join(str(part) for part in error["loc"]) or "body" for error in exc.errors()]
    return f"invalid incident report: {exc.error_count()} error(s) at {', '.join(places[:10])}"


def _query(ref: str, child: ChildReport) -> ChildQuery:
    return ChildQuery(ref=ref, given_name=child.given_name, family_name=child.family_name,
                      date_of_birth=child.date_of_birth, postcode=child.postcode,
                      upn=child.upn, gender=child.gender, school_hint=child.school_hint)


def _candidates_json(candidates: Sequence[Candidate]) -> list[dict[str, object]]:
    return [{"setting_id": c.pupil.setting_id, "score": c.score, "reasons": list(c.reasons),
             "given_name": c.pupil.given_name, "family_name": c.pupil.family_name,
             "date_of_birth": c.pupil.date_of_birth.isoformat(), "postcode": c.pupil.postcode}
            for c in candidates[:5]]


class MatchIncident:
    """The handler of the ``incidents`` queue."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], roster: Roster,
                 clock: Clock) -> None:
        self._sessions = sessions
        self._roster = roster
        self._clock = clock

    async def __call__(self, message: Message) -> None:
        force_id = message.headers.get(FORCE_HEADER)
        if not isinstance(force_id, str) or not force_id:
            raise Poison(f"no {FORCE_HEADER} header: the sending force is unknown")
        try:
            report = parse_report(message.body, now=self._clock.now())
        except ValidationError as exc:
            raise Poison(describe_invalid(exc)) from None
        async with self._sessions.begin() as session:
            if await session.get(Force, force_id) is None:
                raise Poison(f"force {force_id} is not registered")
            await self._process(session, force_id, report)

    async def _process(self, session: AsyncSession, force_id: str,
                       report: IncidentReport) -> None:
        now = self._clock.now()
        incident, version, _ = await record_version(session, force_id, report,
                                                    canonical_payload(report), now)
        if version.processed_at is not None:
            log.info("incident.already_processed", version_id=version.version_id)
            return
        version.processed_at = now
        if report.version < incident.latest_version:
            log.info("incident.stale_version", incident_id=incident.incident_id,
                     version=report.version, latest=incident.latest_version)
            return
        await self._supersede(session, incident, report.version, now)
        incident.latest_version = report.version
        incident.updated_at = now
        counts = {d: 0 for d in Decision}
        for position, child in enumerate(report.children):
            ref = f"{incident.incident_id}/{report.version}/{position}"
            result = await self._roster.match(session, _query(ref, child))
            counts[result.decision] += 1
            child_id = str(uuid.uuid4())
            candidates = await seal_candidates(session, incident_id=incident.incident_id,
                                               child_id=child_id, now=now,
                                               candidates=_candidates_json(result.candidates))
            row = Child(child_id=child_id, version_id=version.version_id,
                        position=position, decision=result.decision.value,
                        score=result.score, reasons=list(result.reasons),
                        candidates=candidates,
                        reported_at=version.received_at, resolved_at=None, resolved_by=None)
            session.add(row)
            await session.flush()
            for setting_id in result.setting_ids:
                calendar = await load_setting_calendar(session, setting_id)
                if calendar is None:
                    continue
                schedule_notice(session, child_id=row.child_id,
                                incident_id=incident.incident_id, calendar=calendar,
                                reported_at=version.received_at, now=now,
                                cause=f"matched ({result.score:.2f})")
        log.info("incident.matched", incident_id=incident.incident_id, version=report.version,
                 matched=counts[Decision.MATCH], review=counts[Decision.REVIEW],
                 unmatched=counts[Decision.NONE])

    async def _supersede(self, session: AsyncSession, incident: Incident, version: int,
                         now: datetime) -> None:
        """Cancel the unsent notices of earlier versions: the new version replaces them."""
        notices = (await session.execute(
            select(Notice).where(Notice.incident_id == incident.incident_id,
                                 Notice.status.in_([s.value for s in UNSENT]))
            # Locked, so a dispatcher releasing one of them at this moment is waited for
            # and the status re-read, never overwritten behind the state machine's back.
            .with_for_update()
        )).scalars().all()
        for notice in notices:
            transition(session, notice, NoticeStatus.CANCELLED, at=now,
                       cause=f"superseded by version {version}")
