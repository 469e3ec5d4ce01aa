"""Dispatchers side by side on real PostgreSQL never release one notice twice; and the same
release works on the embedded SQLite database (one writer, no row locks)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.data_keys import DataKeys
from encompass.adapters.db.engine import make_engine, make_sessions
from encompass.adapters.db.migrate import migrate
from encompass.adapters.db.tables import Notice, NoticeEvent, OutboxEntry, SealedEnvelope
from encompass.clock import Clock
from encompass.services.scheduling.release_due import ReleasePass, release_due
from tests.integration.delivery_fixtures import add_incident, add_setting, own_database

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 4, 7, 30, tzinfo=UTC)
NOTICES = 300


@pytest.fixture(scope="module")
async def pg(admin_pg_url: str) -> AsyncIterator[str]:
    async with own_database(admin_pg_url, "race") as url:
        await migrate(url)
        yield url


async def _seed(sessions: async_sessionmaker[AsyncSession], count: int) -> None:
    settings = [
        (await add_setting(sessions, people=[("key_adult", None), ("deputy", None)]))[0]
        for _ in range(10)
    ]
    for n in range(count):
        await add_incident(sessions, setting_ids=[settings[n % len(settings)]], deliver_at=NOW)


async def _dispatcher(
    sessions: async_sessionmaker[AsyncSession], key: Ed25519PrivateKey, clock: Clock
) -> list[ReleasePass]:
    """Release in small batches until nothing is left to take."""
    passes: list[ReleasePass] = []
    while True:
        released = await release_due(sessions, clock, key, limit=15)
        passes.append(released)
        if released.notices == 0:
            async with sessions() as session:
                left = await session.scalar(
                    select(func.count()).select_from(Notice).where(Notice.status == "scheduled")
                )
            if not left:
                return passes
            await asyncio.sleep(0.01)  # the rest is locked by the other dispatcher


async def test_two_dispatchers_never_release_a_notice_twice(pg: str) -> None:
    # Given many due notices, each for a Key Adult and a deputy
    engines = [make_engine(pg), make_engine(pg)]
    keys = DataKeys(DataKeys.new_data_key())
    first, second = (make_sessions(e, keys) for e in engines)
    try:
        await _seed(first, NOTICES)
        key, clock = Ed25519PrivateKey.generate(), Clock(NOW)
        # When two dispatchers, each with its own connections, release at once
        a, b = await asyncio.gather(_dispatcher(first, key, clock), _dispatcher(second, key, clock))
        # Then between them every notice was released exactly once
        assert sum(r.notices for r in a + b) == NOTICES
        async with first() as session:
            per_notice = (
                await session.execute(
                    select(SealedEnvelope.notice_id, func.count()).group_by(
                        SealedEnvelope.notice_id
                    )
                )
            ).all()
            sealed_events = await session.scalar(
                select(func.count())
                .select_from(NoticeEvent)
                .where(NoticeEvent.to_status == "sealed")
            )
            outbox = await session.scalar(select(func.count()).select_from(OutboxEntry))
            statuses = set((await session.scalars(select(Notice.status))).all())
        assert len(per_notice) == NOTICES and {count for _, count in per_notice} == {2}
        assert sealed_events == NOTICES and outbox == 2 * NOTICES
        assert statuses == {"sending"}
    finally:
        for engine in engines:
            await engine.dispose()


async def test_release_works_on_sqlite_too(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'embedded.db'}"
    await migrate(url)
    engine = make_engine(url)
    sessions = make_sessions(engine, DataKeys(DataKeys.new_data_key()))
    try:
        await _seed(sessions, 5)
        released = await release_due(sessions, Clock(NOW), Ed25519PrivateKey.generate())
        assert (released.notices, released.envelopes) == (5, 10)
        assert (await release_due(sessions, Clock(NOW), Ed25519PrivateKey.generate())).notices == 0
    finally:
        await engine.dispose()
