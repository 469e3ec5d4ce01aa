"""The audit log's hash chain: it verifies, and any change to what it holds is found.

Runs on a throwaway SQLite file (the chain logic is the same on PostgreSQL, where the
integration tests verify the chain the real routes wrote).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.db.engine import make_engine, make_sessions
from encompass.adapters.db.tables import AuditEntry, Base
from encompass.services.records.audit import (
    GENESIS,
    Event,
    PersonalDataInAudit,
    chained,
    entry_hash,
    record,
    record_many,
    verify_chain,
)

AT = datetime(2026, 11, 23, 7, 30, 0, 123456, tzinfo=UTC)


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}")
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    yield make_sessions(engine)
    await engine.dispose()


async def write(sessions: async_sessionmaker[AsyncSession], count: int) -> list[str]:
    hashes = []
    for n in range(count):
        async with sessions.begin() as session:
            entry = await record(
                session,
                actor=f"key_adult:KA-{n}",
                action="notice.read",
                subject=f"notice:N-{n}",
                detail={"first_fetch": n == 0, "count": n},
                at=AT + timedelta(seconds=n),
            )
            hashes.append(entry.entry_hash)
    return hashes


async def check(sessions: async_sessionmaker[AsyncSession]) -> tuple[bool, int | None, str]:
    async with sessions() as session:
        report = await verify_chain(session)
    return report.ok, report.broken_at, report.problem or ""


def test_the_hash_covers_the_link_and_every_field() -> None:
    base = {
        "at": AT,
        "actor": "admin:1",
        "action": "review.resolved",
        "subject": "child:C",
        "detail": {"setting_id": "S"},
    }
    first = entry_hash(GENESIS, **base)  # type: ignore[arg-type]
    assert first == entry_hash(GENESIS, **base)  # type: ignore[arg-type]
    assert len(first) == 64
    assert entry_hash("1" * 64, **base) != first  # type: ignore[arg-type]
    for field, other in (
        ("at", AT + timedelta(microseconds=1)),
        ("actor", "admin:2"),
        ("action", "review.list"),
        ("subject", "child:D"),
        ("detail", {"setting_id": "T"}),
    ):
        assert entry_hash(GENESIS, **{**base, field: other}) != first  # type: ignore[arg-type]


async def test_a_chain_of_entries_verifies(sessions: async_sessionmaker[AsyncSession]) -> None:
    hashes = await write(sessions, 4)
    async with sessions() as session:
        report = await verify_chain(session)
    assert report.ok and report.entries == 4 and report.head == hashes[-1]


async def test_an_empty_log_verifies(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as session:
        report = await verify_chain(session)
    assert report.ok and report.entries == 0 and report.head == GENESIS


async def test_an_altered_detail_is_found(sessions: async_sessionmaker[AsyncSession]) -> None:
    await write(sessions, 4)
    async with sessions.begin() as session:
        await session.execute(
            update(AuditEntry)
            .where(AuditEntry.seq == 3)
            .values(detail={"first_fetch": False, "count": 99})
        )
    assert await check(sessions) == (False, 3, "its content does not match its hash (altered)")


async def test_an_altered_actor_is_found(sessions: async_sessionmaker[AsyncSession]) -> None:
    await write(sessions, 3)
    async with sessions.begin() as session:
        await session.execute(
            update(AuditEntry).where(AuditEntry.seq == 2).values(actor="admin:someone-else")
        )
    ok, at, _ = await check(sessions)
    assert (ok, at) == (False, 2)


async def test_a_removed_entry_is_found(sessions: async_sessionmaker[AsyncSession]) -> None:
    await write(sessions, 4)
    async with sessions.begin() as session:
        await session.execute(delete(AuditEntry).where(AuditEntry.seq == 2))
    ok, at, problem = await check(sessions)
    assert (ok, at) == (False, 3) and "does not link" in problem


async def test_a_rewritten_entry_with_its_own_hash_breaks_the_next_link(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # Recomputing the changed entry's hash is not enough: the next entry names the old one.
    await write(sessions, 3)
    async with sessions.begin() as session:
        prev = (
            await session.execute(text("SELECT entry_hash FROM audit_log WHERE seq = 1"))
        ).scalar_one()
        forged = entry_hash(
            prev, at=AT, actor="admin:x", action="notice.read", subject="notice:N-1", detail={}
        )
        await session.execute(
            update(AuditEntry)
            .where(AuditEntry.seq == 2)
            .values(actor="admin:x", at=AT, detail={}, entry_hash=forged)
        )
    ok, at, problem = await check(sessions)
    assert (ok, at) == (False, 3) and "does not link" in problem


async def test_personal_data_is_refused(sessions: async_sessionmaker[AsyncSession]) -> None:
    for detail in (
        {"given_name": "Amelia"},
        {"nested": {"postcode": "TF3 4NT"}},
        {"items": [{"reply": "text"}]},
    ):
        async with sessions.begin() as session:
            with pytest.raises(PersonalDataInAudit):
                await record(session, actor="system", action="x", subject="y", detail=detail, at=AT)
    async with sessions.begin() as session:
        with pytest.raises(ValueError, match="aware"):
            await record(
                session, actor="system", action="x", subject="y", at=AT.replace(tzinfo=None)
            )
    assert (await check(sessions))[0]


def events(count: int, start: int = 0) -> list[Event]:
    return [
        Event(
            actor=f"force:F{n}",
            action="incident.reported",
            subject=f"incident:I-{n}",
            detail={"version": 1, "duplicate": n % 2 == 0},
            at=AT + timedelta(seconds=n),
        )
        for n in range(start, start + count)
    ]


def test_entries_chained_at_once_hash_as_if_appended_one_by_one() -> None:
    rows = chained(GENESIS, events(3))
    prev = GENESIS
    for row, event in zip(rows, events(3), strict=True):
        assert row["prev_hash"] == prev
        assert row["entry_hash"] == entry_hash(
            prev,
            at=event.at,
            actor=event.actor,
            action=event.action,
            subject=event.subject,
            detail=event.detail,
        )
        prev = row["entry_hash"]


async def test_entries_recorded_many_at_once_and_one_by_one_verify_together(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await write(sessions, 2)
    async with sessions.begin() as session:
        await record_many(session, events(5))
    await write(sessions, 1)
    async with sessions.begin() as session:
        await record_many(session, events(3, start=5))
        await record(session, actor="system", action="x", subject="y", at=AT)
    async with sessions() as session:
        report = await verify_chain(session)
    assert report.ok and report.entries == 12


async def test_recording_many_refuses_personal_data_before_writing_any(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    bad = [*events(2), Event("system", "x", "y", {"given_name": "Amelia"}, AT)]
    async with sessions.begin() as session:
        with pytest.raises(PersonalDataInAudit):
            await record_many(session, bad)
    async with sessions() as session:
        assert (await verify_chain(session)).entries == 0
