"""The migrations build exactly the schema of ``tables.py``, on PostgreSQL and SQLite."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import pool
from sqlalchemy.engine import Connection

from encompass.adapters.db.engine import make_engine
from encompass.adapters.db.migrate import head_revision, migrate
from encompass.adapters.db.tables import Base
from encompass.config import normalise_database_url

pytestmark = pytest.mark.integration


@pytest.fixture
async def fresh_pg(admin_pg_url: str) -> AsyncIterator[str]:
    """A PostgreSQL database of this test's own: the shared ``pg_url`` is migrated already."""
    name = f"encompass_mig_{uuid.uuid4().hex[:10]}"
    dsn = admin_pg_url.replace("postgresql+asyncpg://", "postgresql://")
    admin = await asyncpg.connect(dsn, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield f"{dsn.rsplit('/', 1)[0]}/{name}"
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def _schema_differences(url: str) -> list[Any]:
    engine = make_engine(normalise_database_url(url), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_differences)
    finally:
        await engine.dispose()


async def _check(url: str) -> None:
    # Given an empty database, when migrated twice,
    first = await migrate(url)
    second = await migrate(url)
    # then both runs report the head revision and the schema equals the models'.
    assert first == second == head_revision()
    assert await _schema_differences(url) == []


async def test_postgresql_schema_matches_models(fresh_pg: str) -> None:
    await _check(fresh_pg)


async def test_sqlite_schema_matches_models(tmp_path: Path) -> None:
    await _check(f"sqlite:///{tmp_path / 'encompass.db'}")


async def test_shared_database_migrates(pg_url: str) -> None:
    # The session database other tests use: migrating it (again) is harmless.
    assert await migrate(pg_url) == head_revision()
