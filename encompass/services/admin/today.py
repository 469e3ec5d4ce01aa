"""*Today*: what needs a person now, for one admin's area, then the figures.

At the top, each as a list a person can act on: notices overdue for an acknowledgement
(setting, Key Adult, how late), failed deliveries with their last error, the review queue,
notices held back (due but cannot be released), settings where no recipient can open a
notice. Then notices by status, and the delivery failure rate of the last seven days
against a threshold of 3% (GOV.UK Notify's mark). Every count is the length of the list
shown, so the two never disagree. No child's details: notices by id and setting.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.db.tables import (
    Alert,
    DeliveryAttempt,
    KeyAdultRow,
    Notice,
    SealedEnvelope,
    SettingRow,
)
from encompass.clock import Clock
from encompass.domain.status import NoticeStatus
from encompass.services.admin.alerts import ADMINS
from encompass.services.admin.scope import ALL, Area
from encompass.services.matching.review_queue import ReviewItem, list_review
from encompass.services.receiving.devices import settings_without_openable_device
from encompass.services.receiving.escalate_overdue import ack_deadline
from encompass.services.records import audit

FAILURE_THRESHOLD: Final = 0.03
RATE_WINDOW: Final = timedelta(days=7)
SHOWN: Final = 100
_AWAITING: Final = (NoticeStatus.SENDING.value, NoticeStatus.DELIVERED.value)
_HOLD_KINDS: Final = ("no_recipient", "seal_failed")

# Settings of the area where no recipient could open a notice: (setting_id, name) pairs.
UnreachableCheck = Callable[[AsyncSession, Area], Awaitable[list[tuple[str, str]]]]


async def settings_without_openable_device_in(
    session: AsyncSession, area: Area
) -> list[tuple[str, str]]:
    """Settings of ``area`` where no Key Adult or deputy holds a device that can open a
    notice (a readable directory key or a browser not revoked): a notice due there would be
    held, so admins see them before any is due."""
    unreachable = await settings_without_openable_device(session)
    if not unreachable:
        return []
    rows = await session.execute(
        area.settings(select(SettingRow.setting_id, SettingRow.name))
        .where(SettingRow.setting_id.in_(unreachable))
        .order_by(SettingRow.name)
        .limit(SHOWN)
    )
    return [(setting_id, name) for setting_id, name in rows]


@dataclass(frozen=True)
class NoticeLine:
    notice_id: str
    setting_id: str
    setting_name: str
    status: str
    since: datetime | None  # overdue since / failed at / held since
    seconds: float  # how late / how long held
    who: str | None  # the Key Adult for an overdue notice
    detail: str | None  # the last error, the reason it is held

    def as_json(self) -> dict[str, Any]:
        return {
            "notice_id": self.notice_id,
            "setting_id": self.setting_id,
            "setting_name": self.setting_name,
            "status": self.status,
            "since": self.since.isoformat() if self.since else None,
            "seconds": round(self.seconds),
            "key_adult": self.who,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Today:
    at: datetime
    area: str
    overdue: list[NoticeLine]
    failed: list[NoticeLine]
    review: list[ReviewItem]
    held: list[NoticeLine]
    unreachable: list[tuple[str, str]] | None
    open_alerts: int
    by_status: dict[str, int]
    sent_recently: int
    failed_recently: int

    @property
    def failure_rate(self) -> float:
        return self.failed_recently / self.sent_recently if self.sent_recently else 0.0

    @property
    def failure_rate_high(self) -> bool:
        return self.failure_rate > FAILURE_THRESHOLD

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "area": self.area,
            "overdue": [n.as_json() for n in self.overdue],
            "failed": [n.as_json() for n in self.failed],
            "review": [
                {
                    "id": i.id,
                    "type": i.type,
                    "decision": i.decision,
                    "age_seconds": round(i.age_seconds),
                }
                for i in self.review
            ],
            "held": [n.as_json() for n in self.held],
            "settings_without_openable_device": None
            if self.unreachable is None
            else [{"setting_id": s, "setting_name": n} for s, n in self.unreachable],
            "open_alerts": self.open_alerts,
            "notices_by_status": self.by_status,
            "failure_rate": {
                "window_days": RATE_WINDOW.days,
                "sent": self.sent_recently,
                "failed": self.failed_recently,
                "rate": round(self.failure_rate, 4),
                "threshold": FAILURE_THRESHOLD,
                "above_threshold": self.failure_rate_high,
            },
        }


def _named(area: Area) -> Any:
    return area.notices(
        select(Notice, SettingRow.name).join(SettingRow, SettingRow.setting_id == Notice.setting_id)
    )


async def _overdue(session: AsyncSession, area: Area, now: datetime) -> list[NoticeLine]:
    rows = (
        await session.execute(
            _named(area)
            .add_columns(SettingRow.day_starts)
            .where(Notice.overdue_at.is_not(None), Notice.status.in_(_AWAITING))
            .order_by(Notice.overdue_at)
            .limit(SHOWN)
        )
    ).all()
    settings = {n.setting_id for n, _, _ in rows}
    keyed: dict[str, str] = {}
    for ka in await session.scalars(
        select(KeyAdultRow)
        .where(KeyAdultRow.setting_id.in_(settings), KeyAdultRow.role == "key_adult")
        .order_by(KeyAdultRow.key_adult_id)
    ):
        keyed.setdefault(ka.setting_id, ka.name)
    lines = []
    for n, name, starts in rows:
        # Late since the answer was due: the start of the setting's day on the release day.
        due = ack_deadline(n.deliver_at, starts, timedelta(0)) if n.deliver_at else n.overdue_at
        lines.append(
            NoticeLine(
                n.notice_id,
                n.setting_id,
                name,
                n.status,
                due,
                (now - due).total_seconds() if due else 0.0,
                keyed.get(n.setting_id),
                None,
            )
        )
    return lines


async def _failed(session: AsyncSession, area: Area, now: datetime) -> list[NoticeLine]:
    rows = (
        await session.execute(
            _named(area)
            .where(
                Notice.status == NoticeStatus.FAILED.value, Notice.updated_at >= now - RATE_WINDOW
            )
            .order_by(Notice.updated_at.desc())
            .limit(SHOWN)
        )
    ).all()
    errors: dict[str, str] = {}
    if rows:
        attempts = await session.execute(
            select(SealedEnvelope.notice_id, DeliveryAttempt.detail, DeliveryAttempt.channel)
            .join(SealedEnvelope, SealedEnvelope.envelope_id == DeliveryAttempt.envelope_id)
            .where(SealedEnvelope.notice_id.in_([n.notice_id for n, _ in rows]))
            .order_by(DeliveryAttempt.at)
        )
        for notice_id, detail, channel in attempts:
            errors[notice_id] = f"{channel}: {detail}"  # the latest wins
    return [
        NoticeLine(
            n.notice_id,
            n.setting_id,
            name,
            n.status,
            n.updated_at,
            (now - n.updated_at).total_seconds(),
            None,
            errors.get(n.notice_id, "no delivery attempt recorded"),
        )
        for n, name in rows
    ]


async def _held(session: AsyncSession, area: Area, now: datetime) -> list[NoticeLine]:
    rows = (
        await session.execute(
            _named(area)
            .add_columns(Alert.kind, Alert.created_at)
            .join(Alert, Alert.notice_id == Notice.notice_id)
            .where(Alert.kind.in_(_HOLD_KINDS), Alert.resolved_at.is_(None))
            .order_by(Alert.created_at)
            .limit(SHOWN)
        )
    ).all()
    reasons = {
        "no_recipient": "no recipient with a key that can open it",
        "seal_failed": "the notice could not be sealed",
    }
    return [
        NoticeLine(
            n.notice_id,
            n.setting_id,
            name,
            n.status,
            since,
            (now - since).total_seconds(),
            None,
            reasons.get(kind, kind),
        )
        for n, name, kind, since in rows
    ]


async def today(
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    actor: str,
    *,
    area: Area = ALL,
    unreachable: UnreachableCheck | None = settings_without_openable_device_in,
) -> Today:
    """The *Today* page of ``area``. Audited (the review queue's read separately)."""
    now = clock.now()
    review = await list_review(sessions, clock, actor, area=area)
    async with sessions.begin() as session:
        by_status = dict(
            (
                await session.execute(
                    area.notices(select(Notice.status, func.count()).group_by(Notice.status))
                )
            ).all()
        )
        recent = dict(
            (
                await session.execute(
                    area.notices(
                        select(Notice.status, func.count())
                        .where(
                            Notice.updated_at >= now - RATE_WINDOW,
                            Notice.status.in_(
                                [
                                    NoticeStatus.DELIVERED.value,
                                    NoticeStatus.ACKNOWLEDGED.value,
                                    NoticeStatus.FAILED.value,
                                ]
                            ),
                        )
                        .group_by(Notice.status)
                    )
                )
            ).all()
        )
        open_alerts = await session.scalar(
            area.alerts(
                select(func.count())
                .select_from(Alert)
                .where(Alert.audience == ADMINS, Alert.resolved_at.is_(None))
            )
        )
        page = Today(
            at=now,
            area=area.code,
            overdue=await _overdue(session, area, now),
            failed=await _failed(session, area, now),
            review=review,
            held=await _held(session, area, now),
            unreachable=None if unreachable is None else await unreachable(session, area),
            open_alerts=int(open_alerts or 0),
            by_status={s.value: int(by_status.get(s.value, 0)) for s in NoticeStatus},
            sent_recently=sum(int(v) for v in recent.values()),
            failed_recently=int(recent.get(NoticeStatus.FAILED.value, 0)),
        )
        await audit.record(
            session,
            actor=actor,
            action="admin.today",
            subject="today",
            detail={"area": area.code, "overdue": len(page.overdue), "failed": len(page.failed)},
            at=now,
        )
    return page
