"""No pre-ping on every checkout: a pooled connection is tested only after lying idle,
and a connection dropped by the server costs one failed use, after which the pool is
fresh. Against the real PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from encompass.adapters.db.engine import make_engine, ping_when_idle

pytestmark = pytest.mark.integration


async def _pid(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(text("SELECT pg_backend_pid()")))


async def _terminate(url: str, pid: int) -> None:
    other = create_async_engine(url)
    try:
        async with other.connect() as connection:
            await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        await other.dispose()


async def test_the_service_engine_does_not_ping_on_every_checkout(migrated_pg: str) -> None:
    engine = make_engine(migrated_pg)
    try:
        assert engine.pool._pre_ping is False
        await _pid(engine)
    finally:
        await engine.dispose()


async def test_an_idle_connection_dropped_by_the_server_is_replaced_unseen(
    migrated_pg: str,
) -> None:
    # Given a pooled connection, idle past the limit, that the server has dropped
    engine = create_async_engine(migrated_pg)
    ping_when_idle(engine, idle=0.0)
    try:
        first = await _pid(engine)
        await _terminate(migrated_pg, first)

        # When it is next used, the idle check replaces it: the caller sees nothing
        assert await _pid(engine) != first
    finally:
        await engine.dispose()


async def test_a_connection_dropped_under_load_costs_one_failed_use(migrated_pg: str) -> None:
    # Given a busy pool (never idle long enough to be tested) whose connection was dropped
    engine = create_async_engine(migrated_pg)
    ping_when_idle(engine, idle=3600.0)
    try:
        first = await _pid(engine)
        await _terminate(migrated_pg, first)

        # When it is used, that one use fails as a lost connection
        with pytest.raises(DBAPIError) as failed:
            await _pid(engine)
        assert failed.value.connection_invalidated

        # Then the one retry finds a fresh connection
        assert await _pid(engine) != first
    finally:
        await engine.dispose()
