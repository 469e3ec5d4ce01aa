"""Fixtures shared by the directory tests (``test_directory_import``, ``test_indexed_roster``):
the run's PostgreSQL database migrated once, sessions on it or on a SQLite file of the test's
own, and an id prefix of the test's own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.db.engine import make_engine, make_sessions
from encompass.adapters.db.migrate import migrate


@pytest.fixture(scope="session")
async def migrated_pg(pg_url: str) -> str:
    await migrate(pg_url)
    return pg_url


@pytest.fixture(params=["postgresql", "sqlite"])
async def sessions(
    request: pytest.FixtureRequest, tmp_path: Path, migrated_pg: str
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    url = migrated_pg
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'encompass.db'}"
        await migrate(url)
    engine = make_engine(url)
    try:
        yield make_sessions(engine)
    finally:
        await engine.dispose()


@pytest.fixture
def prefix() -> str:
    """Ids of this test's own: the PostgreSQL database is shared by the whole run."""
    return f"t{uuid.uuid4().hex[:8]}-"
