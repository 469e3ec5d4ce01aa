"""The matcher keeps calendars from batch to batch, and forgets them when the calendars
version changes: every calendars or settings import changes it, in the import's own
transaction. On PostgreSQL and SQLite."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.db.directory_repo import calendars_version
from encompass.services.directory.importer import import_directory
from encompass.services.matching.match_incident import MatchIncident

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "directory"


async def _version(sessions: async_sessionmaker[AsyncSession]) -> str:
    async with sessions() as session:
        return await calendars_version(session)


async def test_calendar_and_setting_imports_change_the_version_and_empty_the_cache(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    ticks = [0.0]
    matcher = MatchIncident(
        sessions, cast("Any", None), cast("Any", None), monotonic=lambda: ticks[0]
    )
    async with sessions() as session:
        cached = await matcher._calendars_now(session)
    cached["a-setting"] = cast("Any", "a calendar read before")

    # While nothing is imported, the cache stays
    before = await _version(sessions)
    async with sessions() as session:
        assert "a-setting" in await matcher._calendars_now(session)

    # A calendars import changes the version; within a second of the last check the
    # matcher has not looked yet, and the batch after that starts afresh
    await import_directory(sessions, calendars=FIXTURES / "calendars.csv")
    after_calendars = await _version(sessions)
    assert after_calendars != before
    ticks[0] += 0.5
    async with sessions() as session:
        assert "a-setting" in await matcher._calendars_now(session)
    ticks[0] += 0.6
    async with sessions() as session:
        assert await matcher._calendars_now(session) == {}

    # So does a settings import
    await import_directory(sessions, settings=FIXTURES / "settings.csv")
    assert await _version(sessions) not in (before, after_calendars)
