"""The operational figures ``/metrics`` reads from the database and the broker.

The workers run in processes of their own and expose no metrics, so whatever they do is
counted from what they wrote: incident versions received (HTTP and AMQP alike), notices by
status, overdue notices, delivery attempts by channel and outcome, and the latency from a
notice's release to its delivery and to its first acknowledgement, as cumulative
histograms; the dead-letter queues' depths come from the broker. Totals only ever grow
(rows are never deleted but by retention, which keeps these columns), so they are exposed
as counters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import Float, case, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from encompass.adapters.broker import Broker
from encompass.adapters.db.tables import (
    Acknowledgement,
    DeliveryAttempt,
    IncidentVersion,
    Notice,
    NoticeEvent,
)
from encompass.adapters.topology import DEAD_SUFFIX, WORK_QUEUES
from encompass.domain.status import NoticeStatus

# Seconds: from "at once" to "by the next morning".
LATENCY_BUCKETS: Final = (1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400)
_AWAITING: Final = (NoticeStatus.SENDING.value, NoticeStatus.DELIVERED.value)


@dataclass(frozen=True)
class Latency:
    """A cumulative histogram: ``buckets[i]`` counts observations ≤ LATENCY_BUCKETS[i]."""

    buckets: tuple[int, ...]
    count: int
    total_seconds: float


@dataclass(frozen=True)
class Figures:
    incidents_received: int
    notices_by_status: dict[str, int]
    overdue: int
    delivery_attempts: dict[tuple[str, str], int]
    release_to_delivery: Latency
    release_to_ack: Latency
    dead_letters: dict[str, int] = field(default_factory=dict)


def _seconds(session: AsyncSession, later: Any, earlier: Any) -> ColumnElement[float]:
    """``later - earlier`` in seconds, in the database's own arithmetic."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.extract("epoch", later - earlier), Float)
    return cast((func.julianday(later) - func.julianday(earlier)) * 86400.0, Float)


async def _latency(session: AsyncSession, seconds: ColumnElement[float], query: Any) -> Latency:
    columns = [func.sum(case((seconds <= bound, 1), else_=0)) for bound in LATENCY_BUCKETS]
    row = (
        await session.execute(
            query.with_only_columns(*columns, func.count(), func.coalesce(func.sum(seconds), 0.0))
        )
    ).one()
    *buckets, count, total = row
    return Latency(tuple(int(b or 0) for b in buckets), int(count or 0), float(total or 0.0))


async def read_figures(session: AsyncSession, broker: Broker | None = None) -> Figures:
    """Every figure, read in one session (and the broker's dead-letter depths)."""
    received = await session.scalar(select(func.count()).select_from(IncidentVersion)) or 0
    statuses = dict(
        (await session.execute(select(Notice.status, func.count()).group_by(Notice.status))).all()
    )
    overdue = await session.scalar(
        select(func.count())
        .select_from(Notice)
        .where(Notice.overdue_at.is_not(None), Notice.status.in_(_AWAITING))
    )
    attempts = {
        (channel, outcome): int(n)
        for channel, outcome, n in await session.execute(
            select(DeliveryAttempt.channel, DeliveryAttempt.outcome, func.count()).group_by(
                DeliveryAttempt.channel, DeliveryAttempt.outcome
            )
        )
    }
    delivered = (
        select(NoticeEvent.notice_id.label("notice_id"), func.min(NoticeEvent.at).label("at"))
        .where(NoticeEvent.to_status == NoticeStatus.DELIVERED.value)
        .group_by(NoticeEvent.notice_id)
        .subquery()
    )
    to_delivery = _seconds(session, delivered.c.at, Notice.deliver_at)
    answered = (
        select(
            Acknowledgement.notice_id.label("notice_id"), func.min(Acknowledgement.at).label("at")
        )
        .group_by(Acknowledgement.notice_id)
        .subquery()
    )
    to_ack = _seconds(session, answered.c.at, Notice.deliver_at)
    dead = {}
    if broker is not None:
        for queue in WORK_QUEUES:
            dead[queue] = await broker.depth(queue + DEAD_SUFFIX)
    return Figures(
        incidents_received=int(received),
        notices_by_status={s.value: int(statuses.get(s.value, 0)) for s in NoticeStatus},
        overdue=int(overdue or 0),
        delivery_attempts=attempts,
        release_to_delivery=await _latency(
            session,
            to_delivery,
            select(Notice.notice_id)
            .join(delivered, delivered.c.notice_id == Notice.notice_id)
            .where(Notice.deliver_at.is_not(None)),
        ),
        release_to_ack=await _latency(
            session,
            to_ack,
            select(Notice.notice_id)
            .join(answered, answered.c.notice_id == Notice.notice_id)
            .where(Notice.deliver_at.is_not(None)),
        ),
        dead_letters=dead,
    )
