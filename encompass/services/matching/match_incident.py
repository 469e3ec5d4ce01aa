"""The matcher's use case: one stored incident version in, children matched, notices scheduled.

The message names the version only (:class:`~encompass.domain.queued.VersionQueued`); the
report and the force are read from the database row that ingest wrote, never from the
message, so a message published by anyone else can make us say nothing a force did not say.
A body that is not a version message, or names a version we do not hold, is dead-lettered
with a reason that quotes nothing of it, and without its body or headers (the message
id stays).

Everything for one version happens in one transaction (with the other versions of its
batch: the matcher takes messages in batches) and the version is marked processed in it,
so a redelivered message (or a copy naming a processed version) is a no-op. A later
version replaces the unsent notices of earlier ones; an earlier version arriving late is
kept for the audit trail only.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import structlog
from pydantic import ValidationError
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.broker import Message, Poison
from encompass.adapters.db.directory_repo import calendars_version, load_setting_calendar
from encompass.adapters.db.tables import Alert, Child, Incident, IncidentVersion, Notice
from encompass.clock import Clock
from encompass.domain.directory import SettingCalendar
from encompass.domain.incident import ChildReport, IncidentReport
from encompass.domain.match import Candidate, ChildQuery, Decision
from encompass.domain.queued import VersionQueued
from encompass.domain.status import UNSENT, NoticeStatus, values
from encompass.services.intake.ingest import load_report
from encompass.services.matching.roster import Roster
from encompass.services.records.at_rest import (
    DataUnavailable,
    preload_data_keys,
    seal_candidates,
)
from encompass.services.scheduling.notices import (
    NewNotice,
    create_notices,
    plan_notice,
    transition,
)

if TYPE_CHECKING:
    from sqlalchemy import Table

log = structlog.get_logger()

# Seconds between two reads of the calendars version: how long an import of calendars or
# settings may take to reach a running matcher.
CALENDARS_CHECK_EVERY = 1.0


def _query(ref: str, child: ChildReport) -> ChildQuery:
    return ChildQuery(
        ref=ref,
        given_name=child.given_name,
        family_name=child.family_name,
        date_of_birth=child.date_of_birth,
        postcode=child.postcode,
        upn=child.upn,
        gender=child.gender,
        school_hint=child.school_hint,
    )


def _candidates_json(candidates: Sequence[Candidate]) -> list[dict[str, object]]:
    return [
        {
            "setting_id": c.pupil.setting_id,
            "score": c.score,
            "reasons": list(c.reasons),
            "given_name": c.pupil.given_name,
            "family_name": c.pupil.family_name,
            "date_of_birth": c.pupil.date_of_birth.isoformat(),
            "postcode": c.pupil.postcode,
        }
        for c in candidates[:5]
    ]


def refuse_version(exc: ValidationError) -> Poison:
    """The dead-letter reason for a body that is not a :class:`VersionQueued`."""
    # Not ours, so it could hold anything (a whole forged report, a child's name): the
    # reason counts only, and the dead letter keeps neither body nor headers.
    return Poison(f"not a version message: {exc.error_count()} error(s)", keep_body=False)


def _parse(message: Message) -> VersionQueued:
    try:
        return VersionQueued.model_validate_json(message.body)
    except ValidationError as exc:
        raise refuse_version(exc) from None


_VERSIONS = cast("Table", IncidentVersion.__table__)
_INCIDENTS = cast("Table", Incident.__table__)
_CHILDREN = cast("Table", Child.__table__)
_MARK_PROCESSED = (
    update(_VERSIONS)
    .where(_VERSIONS.c.version_id == bindparam("vid"))
    .values(processed_at=bindparam("at"))
)
_MARK_MATCHED = (
    update(_INCIDENTS)
    .where(_INCIDENTS.c.incident_id == bindparam("iid"))
    .values(latest_version=bindparam("latest"), updated_at=bindparam("at"))
)


class _Pending:
    """What a batch has decided and not yet written, written by :meth:`write` in one
    statement per table (children before their notices), whatever the batch's size."""

    def __init__(self, latest: dict[str, int]) -> None:
        # Each incident's latest matched version, as this batch has left it so far.
        self.latest = latest
        self.done: set[str] = set()
        self.incidents: dict[str, dict[str, Any]] = {}
        self.children: list[dict[str, Any]] = []
        self.notices: list[NewNotice] = []
        self._processed: list[dict[str, Any]] = []

    def processed(self, version_id: str, at: datetime) -> None:
        self.done.add(version_id)
        self._processed.append({"vid": version_id, "at": at})

    def matched(self, incident_id: str, version: int, at: datetime) -> None:
        self.latest[incident_id] = version
        self.incidents[incident_id] = {"iid": incident_id, "latest": version, "at": at}

    async def write(self, session: AsyncSession) -> None:
        if self.children:
            await session.execute(insert(_CHILDREN), self.children)
        if self._processed:
            await session.execute(_MARK_PROCESSED, self._processed)
        if self.incidents:
            await session.execute(_MARK_MATCHED, list(self.incidents.values()))
        await create_notices(session, self.notices)
        self.incidents, self.children, self.notices, self._processed = {}, [], [], []


class MatchIncident:
    """The handler of the ``incidents`` queue: it receives the parsed message (the worker
    decodes it with :class:`VersionQueued`, refusing a bad body with
    :func:`refuse_version`)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        roster: Roster,
        clock: Clock,
        *,
        calendars_check_every: float = CALENDARS_CHECK_EVERY,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._roster = roster
        self._clock = clock
        self._calendars: dict[str, SettingCalendar] = {}
        self._calendars_version: str | None = None
        self._calendars_checked_at: float | None = None
        self._check_every, self._monotonic = calendars_check_every, monotonic

    async def __call__(self, queued: VersionQueued) -> None:
        await self._run([queued])

    async def batch(self, messages: Sequence[Message]) -> None:
        """Every message of ``messages`` in one transaction (the batched consumer's
        handler): all are committed together, or the call raises and none is. A poison
        message raises :class:`Poison`; the consumer then splits the batch to find it."""
        await self._run([_parse(message) for message in messages])

    async def _run(self, queued: Sequence[VersionQueued]) -> None:
        async with self._sessions.begin() as session:
            wanted = sorted({q.version_id for q in queued})
            versions: dict[str, IncidentVersion] = {}
            latest: dict[str, int] = {}
            # The versions with their incidents' latest matched version, in one query. The
            # versions are locked (in one order, so two batches never deadlock on each
            # other), so two copies handled at once by two matchers run one at a time and
            # the second sees the version processed.
            for stored, incident_latest in await session.execute(
                select(IncidentVersion, Incident.latest_version)
                .join(Incident, Incident.incident_id == IncidentVersion.incident_id)
                .where(IncidentVersion.version_id.in_(wanted))
                .order_by(IncidentVersion.version_id)
                .with_for_update(of=IncidentVersion)
            ):
                versions[stored.version_id] = stored
                latest[stored.incident_id] = incident_latest
            if len(versions) < len(wanted):
                # Its headers are not ours either: none of it is kept.
                raise Poison(
                    "unknown incident version: no stored version has this id", keep_body=False
                )
            # Every key the batch opens the reports with and seals candidates under, read
            # in one query (and held shared: see preload_data_keys).
            await preload_data_keys(
                session, {v.incident_id for v in versions.values()}, to_write=True
            )
            calendars = await self._calendars_now(session)
            pending = _Pending(latest)
            for q in queued:
                version = versions[q.version_id]
                if version.processed_at is not None or version.version_id in pending.done:
                    log.info("incident.already_processed", version_id=version.version_id)
                    continue
                try:
                    report = await load_report(session, version)
                except DataUnavailable as exc:
                    # Purged, or not sealed by us: nothing to match, nothing of it is kept.
                    raise Poison(
                        f"the stored version cannot be read ({type(exc).__name__})",
                        keep_body=False,
                    ) from None
                if version.incident_id in pending.incidents:
                    # A later version of an incident in this batch: the earlier one's
                    # notices must exist before it supersedes them.
                    await pending.write(session)
                await self._process(session, version, report, calendars, pending)
            await pending.write(session)

    async def _calendars_now(self, session: AsyncSession) -> dict[str, SettingCalendar]:
        """The calendars read so far, kept from batch to batch while the calendars version
        (changed by every calendars or settings import) stays the same. The version is
        read at most once every ``calendars_check_every`` seconds: an import reaches the
        matcher within that time, and a busy matcher saves a round trip per batch."""
        now = self._monotonic()
        checked = self._calendars_checked_at
        if checked is not None and now - checked < self._check_every:
            return self._calendars
        version = await calendars_version(session)
        self._calendars_checked_at = now
        if version != self._calendars_version:
            self._calendars, self._calendars_version = {}, version
        return self._calendars

    async def _process(
        self,
        session: AsyncSession,
        version: IncidentVersion,
        report: IncidentReport,
        calendars: dict[str, SettingCalendar],
        pending: _Pending,
    ) -> None:
        """Match every child of ``report``; the children and their notices join
        ``pending``, written for the whole batch at once."""
        incident_id = version.incident_id
        now = self._clock.now()
        pending.processed(version.version_id, now)
        latest = pending.latest[incident_id]
        if report.version < latest:
            log.info(
                "incident.stale_version",
                incident_id=incident_id,
                version=report.version,
                latest=latest,
            )
            return
        if latest > 0:
            # Only a version already matched can have notices to replace (a new incident's
            # latest_version is 0 until its first version is matched).
            await self._supersede(session, incident_id, report.version, now)
        pending.matched(incident_id, report.version, now)
        counts = {d: 0 for d in Decision}
        for position, child in enumerate(report.children):
            ref = f"{incident_id}/{report.version}/{position}"
            result = await self._roster.match(_query(ref, child))
            counts[result.decision] += 1
            child_id = str(uuid.uuid4())
            candidates = await seal_candidates(
                session,
                incident_id=incident_id,
                child_id=child_id,
                now=now,
                candidates=_candidates_json(result.candidates),
            )
            row: dict[str, Any] = {
                "child_id": child_id,
                "version_id": version.version_id,
                "position": position,
                "decision": result.decision.value,
                "score": result.score,
                "reasons": list(result.reasons),
                "candidates": candidates,
                "reported_at": version.received_at,
                "resolved_at": None,
                "resolved_by": None,
            }
            pending.children.append(row)
            for setting_id in result.setting_ids:
                calendar = calendars.get(setting_id)
                if calendar is None:
                    calendar = await load_setting_calendar(session, setting_id)
                    if calendar is None:
                        _no_calendar(session, row, incident_id, setting_id, now)
                        continue
                    calendars[setting_id] = calendar
                pending.notices.append(
                    plan_notice(
                        child_id=child_id,
                        incident_id=incident_id,
                        calendar=calendar,
                        reported_at=version.received_at,
                        now=now,
                        cause=f"matched ({result.score:.2f})",
                    )
                )
        log.info(
            "incident.matched",
            incident_id=incident_id,
            version=report.version,
            matched=counts[Decision.MATCH],
            review=counts[Decision.REVIEW],
            unmatched=counts[Decision.NONE],
        )

    async def _supersede(
        self, session: AsyncSession, incident_id: str, version: int, now: datetime
    ) -> None:
        """Cancel the unsent notices of earlier versions: the new version replaces them."""
        notices = (
            (
                await session.execute(
                    select(Notice)
                    .where(
                        Notice.incident_id == incident_id,
                        Notice.status.in_(values(UNSENT)),
                    )
                    # Locked, so a dispatcher releasing one of them at this moment is waited for
                    # and the status re-read, never overwritten behind the state machine's back.
                    .with_for_update()
                )
            )
            .scalars()
            .all()
        )
        for notice in notices:
            transition(
                session,
                notice,
                NoticeStatus.CANCELLED,
                at=now,
                cause=f"superseded by version {version}",
            )


def _no_calendar(
    session: AsyncSession, child: dict[str, Any], incident_id: str, setting_id: str, now: datetime
) -> None:
    """A matched setting with no calendar (the directory no longer holds it: removed since
    the roster was indexed) cannot be given a notice; say so rather than drop it: a reason
    on the child, an alert for the admins and a warning in the log (ids only)."""
    child["reasons"] = [
        *child["reasons"],
        f"matched setting {setting_id} has no calendar in the directory: no notice was made",
    ]
    session.add(
        Alert(
            notice_id=None,
            kind="no_calendar",
            audience="admins",
            message=f"Child {child['child_id']} of incident {incident_id} matched setting "
            f"{setting_id}, which has no calendar in the directory, so no notice was made. "
            "Import the setting with its calendar, then tell the setting by another route.",
            created_at=now,
            resolved_at=None,
        )
    )
    log.warning(
        "notice.no_calendar",
        incident_id=incident_id,
        child_id=child["child_id"],
        setting_id=setting_id,
    )
