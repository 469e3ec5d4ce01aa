"""Moving many notices in one bulk UPDATE keeps every guarantee of a single transition:
each step is checked by the state machine, each is recorded as an event, and a notice
moved by someone else meanwhile makes the whole batch fail rather than be overwritten.
On PostgreSQL and SQLite."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from encompass.adapters.data_keys import load_or_create_data_keys
from encompass.adapters.db.engine import make_sessions
from encompass.adapters.db.tables import Notice, NoticeEvent
from encompass.bootstrap import data_key_path
from encompass.config import load_settings
from encompass.domain.status import IllegalTransition, NoticeStatus
from encompass.services.scheduling.notices import Move, transition_many
from tests.integration.delivery_fixtures import add_incident, add_setting

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 4, 7, 30, tzinfo=UTC)
RELEASE = (
    (NoticeStatus.SEALED, "released: sealed to 1 recipient(s)"),
    (NoticeStatus.SENDING, "queued for delivery"),
)


@pytest.fixture
def keyed(sessions: async_sessionmaker[AsyncSession]) -> async_sessionmaker[AsyncSession]:
    """The shared fixture's sessions, with the run's data keys (the fixtures seal what they
    add; the run's database must hold data under one key file only, as a service's does)."""
    engine = sessions.kw["bind"]
    return make_sessions(engine, load_or_create_data_keys(data_key_path(load_settings())))


async def _scheduled(sessions: async_sessionmaker[AsyncSession], count: int) -> list[str]:
    setting_id = (await add_setting(sessions, people=[("key_adult", None)]))[0]
    ids: list[str] = []
    for _ in range(count):
        ids += (await add_incident(sessions, setting_ids=[setting_id], deliver_at=NOW)).notice_ids
    return ids


async def _statuses(sessions: async_sessionmaker[AsyncSession], ids: list[str]) -> set[str]:
    async with sessions() as session:
        return set(await session.scalars(select(Notice.status).where(Notice.notice_id.in_(ids))))


async def test_many_notices_move_in_one_update_with_every_step_recorded(
    keyed: async_sessionmaker[AsyncSession],
) -> None:
    sessions = keyed
    # Given five scheduled notices
    ids = await _scheduled(sessions, 5)

    # When they are released together
    async with sessions.begin() as session:
        notices = list(await session.scalars(select(Notice).where(Notice.notice_id.in_(ids))))
        await transition_many(session, [(n, RELEASE) for n in notices], at=NOW)
        # Then the objects in hand agree with the database
        assert {n.status for n in notices} == {"sending"}

    # And every notice is sending, with both steps recorded
    assert await _statuses(sessions, ids) == {"sending"}
    async with sessions() as session:
        steps = (
            await session.execute(
                select(NoticeEvent.from_status, NoticeEvent.to_status).where(
                    NoticeEvent.notice_id.in_(ids), NoticeEvent.at == NOW
                )
            )
        ).all()
    assert sorted(steps) == sorted([("scheduled", "sealed"), ("sealed", "sending")] * 5)


async def test_an_illegal_step_writes_nothing(keyed: async_sessionmaker[AsyncSession]) -> None:
    sessions = keyed
    # Given scheduled notices
    ids = await _scheduled(sessions, 2)

    # When asked to jump straight to delivered, the state machine refuses before any write
    jump: tuple[Move, ...] = ((NoticeStatus.DELIVERED, "no"),)
    async with sessions.begin() as session:
        notices = list(await session.scalars(select(Notice).where(Notice.notice_id.in_(ids))))
        with pytest.raises(IllegalTransition):
            await transition_many(session, [(n, jump) for n in notices], at=NOW)
    assert await _statuses(sessions, ids) == {"scheduled"}


async def test_a_notice_moved_meanwhile_fails_the_whole_batch(
    keyed: async_sessionmaker[AsyncSession],
) -> None:
    sessions = keyed
    # Given three scheduled notices, read, and one of them cancelled behind our back
    ids = await _scheduled(sessions, 3)
    async with sessions() as session:
        notices = list(await session.scalars(select(Notice).where(Notice.notice_id.in_(ids))))
    async with sessions.begin() as other:
        await other.execute(
            update(Notice).where(Notice.notice_id == ids[0]).values(status="cancelled")
        )

    # When the stale ones are released together, the status guard catches it
    async with sessions() as session, session.begin():
        for notice in notices:
            session.add(notice)
        with pytest.raises(StaleDataError):
            await transition_many(session, [(n, RELEASE) for n in notices], at=NOW)
        await session.rollback()

    # Then nothing moved: the cancelled one stays cancelled, the others scheduled
    assert await _statuses(sessions, ids[1:]) == {"scheduled"}
    assert await _statuses(sessions, ids[:1]) == {"cancelled"}
