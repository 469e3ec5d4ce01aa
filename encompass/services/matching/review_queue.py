"""The review queue: what a person must decide, and their decision (docs/http.md, "Admins").

Two kinds of item wait here, oldest first:

* ``child`` — a child of an incident's latest version whom the matcher could not place
  (decision ``review`` or ``none``) and nobody has resolved yet;
* ``notice`` — a notice in status ``review``: a setting answered ``not_our_pupil``, or
  the setting's calendar offered no day to release on.

Resolving names a setting, or the local authority's named contact for a child on no roll.
A notice made by a resolution is released by the rule from the moment the child was
*reported*, not the moment of the decision: a child reported on Friday night and resolved
on Monday at 10:00 goes at once, since the setting should have heard by Monday morning.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.db.tables import (
    Acknowledgement,
    Child,
    Incident,
    IncidentVersion,
    Notice,
    SealedEnvelope,
    SettingRow,
)
from encompass.clock import Clock
from encompass.domain.directory import SettingKind
from encompass.domain.status import IncidentStatus, NoticeStatus
from encompass.services.admin.scope import ALL, Area
from encompass.services.matching.review_decisions import (
    LA_CONTACT_REASON,
    ResolveRefused,
    Target,
    resolve_child,
    resolve_notice,
)
from encompass.services.records import audit
from encompass.services.records.at_rest import (
    DataPurged,
    DataUnavailable,
    open_candidates,
    open_payload,
    open_reply,
)

__all__ = [
    "LA_CONTACT_REASON",
    "QueueSummary",
    "Resolution",
    "ResolveRefused",
    "ReviewItem",
    "list_review",
    "queue_summary",
    "resolution_of",
    "resolve",
]

_UNPLACED: Final = ("review", "none")
# What the person deciding needs to compare with the candidates; nothing else of the report.
_REPORTED_FIELDS: Final = (
    "given_name",
    "family_name",
    "date_of_birth",
    "postcode",
    "upn",
    "gender",
    "school_hint",
)


def resolution_of(child: Child) -> str | None:
    """``local_authority_contact`` when the child was resolved to it, ``setting`` when
    resolved to a setting, None while unresolved or never in review."""
    if LA_CONTACT_REASON in child.reasons:
        return "local_authority_contact"
    return "setting" if child.resolved_at is not None else None


@dataclass(frozen=True)
class ReviewItem:
    """One thing to decide, with what the decision needs; ``age_seconds`` counts from
    ``waiting_since`` (the report for a child, the move to review for a notice)."""

    id: str
    type: str  # child | notice
    incident_id: str
    force_id: str
    child_id: str
    decision: str
    score: float
    reasons: list[Any]
    candidates: list[Any]
    reported: dict[str, Any]
    reported_at: datetime
    waiting_since: datetime
    age_seconds: float
    notice: dict[str, Any] | None
    # ``available``, or ``purged`` / ``unreadable`` when the personal fields (candidates,
    # reported child, reply) cannot be read: they are then empty, the rest stands.
    data: str = "available"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "incident_id": self.incident_id,
            "force_id": self.force_id,
            "child_id": self.child_id,
            "decision": self.decision,
            "score": self.score,
            "reasons": self.reasons,
            "candidates": self.candidates,
            "reported_child": self.reported,
            "reported_at": self.reported_at.isoformat(),
            "waiting_since": self.waiting_since.isoformat(),
            "age_seconds": round(self.age_seconds, 1),
            "notice": self.notice,
            "data": self.data,
        }


@dataclass(frozen=True)
class _Personal:
    candidates: list[Any]
    reported: dict[str, Any]
    data: str


async def _personal(session: AsyncSession, child: Child, version: IncidentVersion) -> _Personal:
    """What the person deciding compares: the candidates and the reported child."""
    try:
        payload = await open_payload(
            session,
            incident_id=version.incident_id,
            version_id=version.version_id,
            stored=version.payload,
        )
        candidates = await open_candidates(
            session,
            incident_id=version.incident_id,
            child_id=child.child_id,
            stored=child.candidates,
        )
    except DataUnavailable as exc:
        return _Personal([], {}, "purged" if isinstance(exc, DataPurged) else "unreadable")
    children = json.loads(payload).get("children", [])
    reported = children[child.position] if 0 <= child.position < len(children) else {}
    return _Personal(
        candidates, {name: reported.get(name) for name in _REPORTED_FIELDS}, "available"
    )


async def _item(
    session: AsyncSession,
    row: tuple[Child, IncidentVersion, Incident],
    item_id: str,
    kind: str,
    notice: Notice | None,
    now: datetime,
) -> ReviewItem:
    """A child waiting (``notice`` None: since it was reported) or a notice sent back to
    review (since it moved there), with what the person deciding compares."""
    child, version, incident = row
    personal = await _personal(session, child, version)
    waiting_since = child.reported_at if notice is None else notice.updated_at
    return ReviewItem(
        item_id,
        kind,
        incident.incident_id,
        incident.force_id,
        child.child_id,
        child.decision,
        child.score,
        list(child.reasons),
        personal.candidates,
        personal.reported,
        child.reported_at,
        waiting_since,
        (now - waiting_since).total_seconds(),
        None if notice is None else await _notice_detail(session, notice),
        personal.data,
    )


def _latest_active() -> Any:
    return (
        select(Child, IncidentVersion, Incident)
        .join(IncidentVersion, IncidentVersion.version_id == Child.version_id)
        .join(Incident, Incident.incident_id == IncidentVersion.incident_id)
    )


async def _notice_detail(session: AsyncSession, notice: Notice) -> dict[str, Any]:
    answer = await session.scalar(
        select(Acknowledgement)
        .where(Acknowledgement.notice_id == notice.notice_id)
        .order_by(Acknowledgement.at.desc())
        .limit(1)
    )
    reply = None
    if answer is not None:
        try:
            reply = await open_reply(
                session, incident_id=notice.incident_id, ack_id=answer.ack_id, stored=answer.reply
            )
        except DataUnavailable:
            reply = None
    sent = await session.scalar(
        select(func.count())
        .select_from(SealedEnvelope)
        .where(SealedEnvelope.notice_id == notice.notice_id, SealedEnvelope.kind == "notice")
    )
    return {
        "notice_id": notice.notice_id,
        "setting_id": notice.setting_id,
        "release_reason": notice.release_reason,
        "was_sent": bool(sent),
        "answer": None
        if answer is None
        else {
            "kind": answer.kind,
            "reply": reply,
            "at": answer.at.isoformat(),
            "key_adult_id": answer.key_adult_id,
        },
    }


def _candidates_in(area: Area, candidates: list[Any], codes: dict[str, str | None]) -> bool:
    """A child waiting for review lies in the areas of its candidate settings."""
    return area.covers_any(
        codes.get(str(c.get("setting_id")))
        for c in candidates
        if isinstance(c, dict) and c.get("setting_id")
    )


async def setting_codes(session: AsyncSession, area: Area) -> dict[str, str | None]:
    """Each setting's local authority, to place a child's candidates ({} for ``all``)."""
    if area.everywhere:
        return {}
    rows = await session.execute(select(SettingRow.setting_id, SettingRow.la_code))
    return {setting_id: la_code for setting_id, la_code in rows}


async def list_review(
    sessions: async_sessionmaker[AsyncSession], clock: Clock, actor: str, *, area: Area = ALL
) -> list[ReviewItem]:
    """Every open review item of ``area``, oldest first, with candidates, reasons and the
    reported child's identifying details (the person deciding must compare them). Audited."""
    now = clock.now()
    items: list[ReviewItem] = []
    async with sessions.begin() as session:
        codes = await setting_codes(session, area)
        children = (
            await session.execute(
                _latest_active().where(
                    Child.decision.in_(_UNPLACED),
                    Child.resolved_at.is_(None),
                    IncidentVersion.version == Incident.latest_version,
                    Incident.status == IncidentStatus.ACTIVE,
                )
            )
        ).all()
        for child, version, incident in children:
            personal = await _personal(session, child, version)
            if not _candidates_in(area, personal.candidates, codes):
                continue
            items.append(
                await _item(session, (child, version, incident), child.child_id, "child", None, now)
            )
        notices = (
            await session.execute(
                area.notices(
                    _latest_active()
                    .add_columns(Notice)
                    .join(Notice, Notice.child_id == Child.child_id)
                    .where(Notice.status == NoticeStatus.REVIEW.value)
                )
            )
        ).all()
        for child, version, incident, notice in notices:
            items.append(
                await _item(
                    session, (child, version, incident), notice.notice_id, "notice", notice, now
                )
            )
        items.sort(key=lambda item: item.waiting_since)
        await audit.record(
            session,
            actor=actor,
            action="review.list",
            subject="review_queue",
            detail={
                "count": len(items),
                "area": area.code,
                "items": [f"{i.type}:{i.id}" for i in items[:200]],
            },
            at=now,
        )
    return items


@dataclass(frozen=True)
class QueueSummary:
    items: int
    oldest_age_seconds: float


async def queue_summary(session: AsyncSession, now: datetime) -> QueueSummary:
    """How many review items wait and how long the oldest has (0 when none): the metric."""
    children = (
        await session.execute(
            select(func.count(), func.min(Child.reported_at))
            .join(IncidentVersion, IncidentVersion.version_id == Child.version_id)
            .join(Incident, Incident.incident_id == IncidentVersion.incident_id)
            .where(
                Child.decision.in_(_UNPLACED),
                Child.resolved_at.is_(None),
                IncidentVersion.version == Incident.latest_version,
                Incident.status == IncidentStatus.ACTIVE,
            )
        )
    ).one()
    notices = (
        await session.execute(
            select(func.count(), func.min(Notice.updated_at)).where(
                Notice.status == NoticeStatus.REVIEW.value
            )
        )
    ).one()
    oldest = [at for at in (children[1], notices[1]) if at is not None]
    age = max((now - _aware(at)).total_seconds() for at in oldest) if oldest else 0.0
    return QueueSummary(int(children[0]) + int(notices[0]), max(age, 0.0))


def _aware(at: datetime) -> datetime:
    # SQLite keeps no offset; an aggregate may skip the column type's conversion back.
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


@dataclass(frozen=True)
class Resolution:
    """What a resolution did: ``resolution`` is ``setting`` or ``local_authority_contact``;
    ``notice`` the notice now carrying the child to the setting (None for the LA contact)."""

    id: str
    type: str
    resolution: str
    notice: dict[str, Any] | None
    message: str

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "resolution": self.resolution,
            "notice": self.notice,
            "message": self.message,
        }


async def resolve(
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    actor: str,
    item_id: str,
    *,
    setting_id: str | None,
    local_authority_contact: bool,
    la_code: str | None = None,
    area: Area = ALL,
) -> Resolution:
    """Resolve one review item to ``setting_id`` or to the local authority's contact
    (exactly one; the authority ``la_code``, by default the admin's own area).
    ResolveRefused (404 unknown item or setting, or one outside ``area``; 409 no longer
    in review, already sent there, a notice for that setting exists) leaves everything
    unchanged."""
    if (setting_id is None) == (not local_authority_contact):
        raise ResolveRefused(
            400, "bad_request", "give either setting_id or local_authority_contact: true"
        )
    now = clock.now()
    async with sessions.begin() as session:
        # The item first: an unknown item is "not found" whatever the resolution names.
        notice = await session.get(Notice, item_id, with_for_update=True)
        child = None
        if notice is not None:
            if not area.covers(await session.get(SettingRow, notice.setting_id)):
                raise ResolveRefused(404, "not_found", "no such review item")
        else:
            child = await session.get(Child, item_id, with_for_update=True)
            if child is None or not await _child_in(session, area, child):
                raise ResolveRefused(404, "not_found", "no such review item")
        target = await _target(session, area, setting_id, la_code)
        if notice is not None:
            kind = "notice"
            done = await resolve_notice(session, notice, now, actor, target)
        else:
            assert child is not None
            kind = "child"
            done = await resolve_child(session, child, now, actor, target)
        await audit.record(
            session,
            actor=actor,
            action="review.resolved",
            subject=f"{kind}:{item_id}",
            detail={
                "resolution": done.resolution,
                "setting_id": target.setting_id,
                "notice_id": done.notice_id,
            },
            at=now,
        )
        return Resolution(item_id, kind, done.resolution, done.notice, done.message)


async def _child_in(session: AsyncSession, area: Area, child: Child) -> bool:
    if area.everywhere:
        return True
    version = await session.get(IncidentVersion, child.version_id)
    if version is None:
        return False
    personal = await _personal(session, child, version)
    return _candidates_in(area, personal.candidates, await setting_codes(session, area))


async def _target(
    session: AsyncSession, area: Area, setting_id: str | None, la_code: str | None
) -> Target:
    """The setting a resolution names, checked against ``area``: the setting itself, or
    the local authority's contact (a setting of kind ``local_authority``)."""
    if setting_id is not None:
        if not area.covers(await session.get(SettingRow, setting_id)):
            raise ResolveRefused(404, "unknown_setting", "no such setting in the directory")
        return Target(setting_id, local_authority=False)
    code = la_code or (None if area.everywhere else area.code)
    if code is None:
        raise ResolveRefused(
            400, "bad_request", "name the local authority: la_code (such as E06000020)"
        )
    if not area.everywhere and code != area.code:
        raise ResolveRefused(
            404, "no_local_authority_contact", "that local authority lies outside your area"
        )
    contact = await session.scalar(
        select(SettingRow.setting_id)
        .where(SettingRow.kind == SettingKind.LOCAL_AUTHORITY.value, SettingRow.la_code == code)
        .order_by(SettingRow.setting_id)
        .limit(1)
    )
    if contact is None:
        raise ResolveRefused(
            404,
            "no_local_authority_contact",
            f"the directory has no local_authority setting with la_code {code}: "
            "import the authority's contact in settings.csv",
        )
    return Target(contact, local_authority=True)
