"""Resolving review items, inside the caller's transaction (``review.resolve`` opens it).

Every status change goes through ``transition``; every new notice through
``schedule_notice`` from the child's ``reported_at``. A release moment already past (the
setting should have heard by now) becomes "at once": the decision's own time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from encompass.adapters.db.directory_repo import load_setting_calendar
from encompass.adapters.db.tables import (
    Child,
    Incident,
    IncidentVersion,
    Notice,
    SealedEnvelope,
)
from encompass.domain.calendar import NoReleaseDay, release_time
from encompass.domain.directory import SettingCalendar
from encompass.domain.status import IncidentStatus, NoticeStatus
from encompass.services.scheduling.notices import schedule_notice, transition

LA_CONTACT_REASON: Final = "resolved: to the local authority's named contact (child on no roll)"
LA_CONTACT_MESSAGE: Final = (
    "resolved to the local authority's named contact: a notice is scheduled to them "
    "and sealed and delivered like any other"
)


class ResolveRefused(Exception):
    """The item was not resolved; ``status`` is the HTTP status that fits, ``code`` stable,
    the message one line without personal data."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


@dataclass(frozen=True)
class Target:
    """Where a resolution sends the child: a setting, or (``local_authority``) the
    authority's named contact, itself a setting of kind ``local_authority``."""

    setting_id: str
    local_authority: bool


@dataclass(frozen=True)
class Done:
    resolution: str  # setting | local_authority_contact
    notice: dict[str, Any] | None
    notice_id: str | None
    message: str


def notice_json(notice: Notice) -> dict[str, Any]:
    """The scheduling facts of a notice, for the admin's reply (no personal data)."""
    return {
        "notice_id": notice.notice_id,
        "setting_id": notice.setting_id,
        "status": notice.status,
        "recipient": notice.recipient,
        "deliver_at": notice.deliver_at.isoformat() if notice.deliver_at else None,
        "release_reason": notice.release_reason,
    }


def _at_once_if_past(notice: Notice, now: datetime) -> None:
    if (
        notice.status == NoticeStatus.SCHEDULED
        and notice.deliver_at is not None
        and notice.deliver_at < now
    ):
        notice.deliver_at = now
        notice.release_reason += " Resolved from review after that moment: released at once."


async def _calendar(session: AsyncSession, setting_id: str) -> SettingCalendar:
    calendar = await load_setting_calendar(session, setting_id)
    if calendar is None:
        raise ResolveRefused(404, "unknown_setting", "no such setting in the directory")
    return calendar


async def _schedule(
    session: AsyncSession,
    child: Child,
    incident_id: str,
    setting_id: str,
    now: datetime,
    actor: str,
) -> Notice:
    calendar = await _calendar(session, setting_id)
    existing = await session.scalar(
        select(Notice.status).where(
            Notice.child_id == child.child_id, Notice.setting_id == setting_id
        )
    )
    if existing is not None:
        raise ResolveRefused(
            409,
            "notice_exists",
            f"this child already has a notice for that setting (status {existing})",
        )
    notice = schedule_notice(
        session,
        child_id=child.child_id,
        incident_id=incident_id,
        calendar=calendar,
        reported_at=child.reported_at,
        now=now,
        cause=f"review resolved by {actor}",
    )
    _at_once_if_past(notice, now)
    return notice


def _resolved_to(child: Child, target: Target, now: datetime, actor: str) -> None:
    child.resolved_at, child.resolved_by = now, actor
    reason = (
        LA_CONTACT_REASON
        if target.local_authority
        else f"resolved by {actor}: setting {target.setting_id}"
    )
    child.reasons = [*child.reasons, reason]


def _done(notice: Notice, target: Target) -> Done:
    if notice.status != NoticeStatus.SCHEDULED:
        message = (
            "the setting's calendar offers no day to release on: the new notice waits in review"
        )
    elif target.local_authority:
        message = LA_CONTACT_MESSAGE
    else:
        message = "scheduled by the release rule from the time the child was reported"
    resolution = "local_authority_contact" if target.local_authority else "setting"
    return Done(resolution, notice_json(notice), notice.notice_id, message)


async def resolve_child(
    session: AsyncSession, child: Child, now: datetime, actor: str, target: Target
) -> Done:
    """Place an unplaced child (decision review/none) at the target: a new notice to a
    setting or to the local authority's named contact."""
    if child.decision not in ("review", "none"):
        raise ResolveRefused(
            409,
            "not_in_review",
            "the child was matched: resolve its notice if a setting sent it back",
        )
    if child.resolved_at is not None:
        raise ResolveRefused(
            409, "already_resolved", f"already resolved at {child.resolved_at.isoformat()}"
        )
    version = await session.get(IncidentVersion, child.version_id)
    incident = None if version is None else await session.get(Incident, version.incident_id)
    if (
        version is None
        or incident is None
        or incident.status != IncidentStatus.ACTIVE
        or version.version != incident.latest_version
    ):
        raise ResolveRefused(
            409,
            "superseded",
            "the incident was withdrawn or replaced by "
            "a later version: resolve the child of the latest version",
        )
    notice = await _schedule(session, child, incident.incident_id, target.setting_id, now, actor)
    _resolved_to(child, target, now, actor)
    return _done(notice, target)


async def resolve_notice(
    session: AsyncSession, notice: Notice, now: datetime, actor: str, target: Target
) -> Done:
    """Send a notice in review to the target — the same setting when it was never sent
    there, otherwise a new notice (to a setting or the local authority's contact)
    replacing it."""
    if notice.status != NoticeStatus.REVIEW:
        raise ResolveRefused(409, "not_in_review", f"the notice is {notice.status}, not in review")
    child = await session.get(Child, notice.child_id, with_for_update=True)
    assert child is not None  # the notice's foreign key guarantees it
    setting_id = target.setting_id
    if setting_id != notice.setting_id:
        replacement = await _schedule(session, child, notice.incident_id, setting_id, now, actor)
        transition(
            session,
            notice,
            NoticeStatus.CANCELLED,
            at=now,
            cause=f"resolved by {actor} to setting {setting_id}",
        )
        _resolved_to(child, target, now, actor)
        return _done(replacement, target)
    sent = await session.scalar(
        select(func.count())
        .select_from(SealedEnvelope)
        .where(SealedEnvelope.notice_id == notice.notice_id)
    )
    if sent:
        raise ResolveRefused(
            409,
            "already_sent_there",
            "this setting already received the "
            "notice and answered; choose another setting or the local "
            "authority's contact, or call the setting",
        )
    try:
        release = release_time(await _calendar(session, setting_id), child.reported_at)
    except NoReleaseDay:
        raise ResolveRefused(
            409,
            "no_release_day",
            "the setting's calendar still offers no "
            "day to release on: fix its calendar or choose another "
            "setting",
        ) from None
    notice.deliver_at, notice.recipient = release.at, release.recipient.value
    notice.release_reason = release.reason
    transition(session, notice, NoticeStatus.SCHEDULED, at=now, cause=f"review resolved by {actor}")
    _at_once_if_past(notice, now)
    _resolved_to(child, target, now, actor)
    return _done(notice, target)
