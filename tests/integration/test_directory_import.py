"""``import_directory`` against the real PostgreSQL and a SQLite file."""

from __future__ import annotations

import uuid
from datetime import date, time
from pathlib import Path

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import InstrumentedAttribute

from encompass.adapters.db import directory_repo as repo
from encompass.adapters.db.tables import CalendarSpanRow, KeyAdultRow, PupilRow, SettingRow
from encompass.domain.directory import KeyAdultRole, Nation, SpanKind
from encompass.services.directory import importer
from encompass.services.directory.importer import (
    DirectoryImportError,
    ImportReport,
    import_directory,
)
from tests.fixtures.directory.sample import prefixed, read_sample, write_csv, write_sample

pytestmark = pytest.mark.integration

Sessions = async_sessionmaker[AsyncSession]


async def _import(sessions: Sessions, paths: dict[str, Path]) -> ImportReport:
    return await import_directory(
        sessions,
        calendars=paths.get("calendars"),
        settings=paths.get("settings"),
        key_adults=paths.get("key_adults"),
        pupils=paths.get("pupils"),
    )


async def _count(sessions: Sessions, column: InstrumentedAttribute[str], value: str) -> int:
    async with sessions() as session:
        return await session.scalar(select(func.count()).where(column == value)) or 0


async def _roster(sessions: Sessions, setting_id: str) -> list[str]:
    async with sessions() as session:
        names = await session.scalars(
            select(PupilRow.given_name)
            .where(PupilRow.setting_id == setting_id)
            .order_by(PupilRow.given_name)
        )
        return list(names)


async def test_imports_the_four_files(sessions: Sessions, tmp_path: Path, prefix: str) -> None:
    report = await _import(sessions, write_sample(tmp_path, prefix))

    assert report == ImportReport(calendars=5, settings=3, key_adults=5, pupils=8)
    async with sessions() as session:
        school = await repo.load_setting_calendar(session, f"{prefix}URN100001")
        nursery = await repo.load_setting_calendar(session, f"{prefix}EY200001")
        assert await repo.load_setting_calendar(session, f"{prefix}nowhere") is None
        academy_adults = await repo.key_adults_for(session, f"{prefix}URN100002")
        twins = await repo.candidate_pupils(
            session,
            upn=None,
            date_of_birth=date(2017, 9, 14),
            postcode="tf34nt",
            family_name="Example",
        )
        by_upn = await repo.candidate_pupils(
            session, upn="a801200002001", date_of_birth=None, postcode=None, family_name="Sample"
        )
        swapped = await repo.candidate_pupils(
            session, upn=None, date_of_birth=date(2015, 2, 3), postcode=None, family_name="Example"
        )
        everyone = [p async for p in repo.all_pupils(session) if p.setting_id.startswith(prefix)]
    assert school is not None and nursery is not None
    assert school.setting.dispatch_at == time(7, 30) and school.setting.nation is Nation.ENGLAND
    assert [s.kind for s in school.spans] == [SpanKind.TERM, SpanKind.TERM, SpanKind.CLOSED]
    assert nursery.setting.calendar_id == "weekdays" and nursery.spans == ()
    assert [(a.role, a.webhook_url is not None) for a in academy_adults] == [
        (KeyAdultRole.KEY_ADULT, True),
        (KeyAdultRole.HOLIDAY_CONTACT, False),
    ]
    assert academy_adults[0].public_key_pem.startswith("-----BEGIN PUBLIC KEY-----\n")
    mine = {
        (p.given_name, p.setting_id.removeprefix(prefix))
        for p in twins
        if p.setting_id.startswith(prefix) and p.date_of_birth == date(2017, 9, 14)
    }
    assert mine == {("Oliver", "URN100001"), ("Oliver", "EY200001")}
    assert {p.given_name for p in by_upn if p.setting_id.startswith(prefix)} == {"Noah"}
    assert "Amelia" in {p.given_name for p in swapped if p.setting_id.startswith(prefix)}
    assert len(everyone) == 8
    assert {p.postcode for p in everyone if p.given_name == "Isla"} == {"TF1 3BX"}


async def test_bad_row_loads_nothing_of_its_file(
    sessions: Sessions, tmp_path: Path, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _import(sessions, write_sample(tmp_path / "first", prefix))
    # Small chunks, so rows before the bad one were already written inside the transaction.
    monkeypatch.setattr(importer, "CHUNK", 2)
    school = f"{prefix}URN100001"
    pupils = [
        {
            "setting_id": school,
            "given_name": f"New{i}",
            "family_name": "Example",
            "date_of_birth": "2016-01-0" + str(i + 1),
            "postcode": "TF3 4NT",
        }
        for i in range(6)
    ]
    pupils[3]["date_of_birth"] = "2016-02-30"
    path = write_csv(tmp_path / "pupils.csv", pupils)

    with pytest.raises(DirectoryImportError) as caught:
        await import_directory(sessions, pupils=path)

    assert str(caught.value) == f"{path}:5: date_of_birth must be a real date YYYY-MM-DD"
    assert await _roster(sessions, school) == ["Amelia", "Oliver", "Zoë"]


async def test_later_files_stop_at_the_bad_one(
    sessions: Sessions, tmp_path: Path, prefix: str
) -> None:
    paths = write_sample(tmp_path, prefix)
    adults = [prefixed(row, prefix) for row in read_sample("key_adults")]
    adults[2]["setting_id"] = f"{prefix}URN999999"
    paths["key_adults"] = write_csv(tmp_path / "key_adults.csv", adults)

    with pytest.raises(DirectoryImportError) as caught:
        await _import(sessions, paths)

    assert str(caught.value) == (
        f"{paths['key_adults']}:4: setting_id {prefix}URN999999 is "
        "not a known setting (import it in settings.csv first)"
    )
    # Files before it stay loaded; nothing of it nor of the pupils after it is.
    assert await _count(sessions, SettingRow.setting_id, f"{prefix}URN100001") == 1
    assert await _count(sessions, KeyAdultRow.key_adult_id, f"{prefix}KA-100001-1") == 0
    assert await _roster(sessions, f"{prefix}URN100001") == []


async def test_reimport_replaces_by_id(sessions: Sessions, tmp_path: Path, prefix: str) -> None:
    await _import(sessions, write_sample(tmp_path / "first", prefix))
    async with sessions.begin() as session:
        await session.execute(
            update(KeyAdultRow)
            .where(KeyAdultRow.key_adult_id == f"{prefix}KA-100001-1")
            .values(token_hash=uuid.uuid4().hex)
        )
    second = write_sample(tmp_path / "second", prefix)
    settings = [prefixed(row, prefix) for row in read_sample("settings")][:1]
    settings[0].update(name="Renamed Example School", dispatch_at="08:00")
    adults = [prefixed(row, prefix) for row in read_sample("key_adults")][:1]
    adults[0]["email"] = "new.dsl@hollinswood.example.org"
    spans = [prefixed(row, prefix) for row in read_sample("calendars")][:1]
    pupils = [prefixed(row, prefix) for row in read_sample("pupils")][:1]
    second |= {
        name: write_csv(tmp_path / "second" / f"{name}.csv", rows)
        for name, rows in (
            ("settings", settings),
            ("key_adults", adults),
            ("calendars", spans),
            ("pupils", pupils),
        )
    }

    report = await _import(sessions, second)

    assert report == ImportReport(calendars=1, settings=1, key_adults=1, pupils=1)
    async with sessions() as session:
        school = await repo.load_setting_calendar(session, f"{prefix}URN100001")
        adult = await session.get(KeyAdultRow, f"{prefix}KA-100001-1")
        assert adult is not None
        assert adult.email == "new.dsl@hollinswood.example.org"
        assert adult.token_hash is not None  # credentials survive a re-import
    assert school is not None and school.setting.name == "Renamed Example School"
    assert school.setting.dispatch_at == time(8, 0) and len(school.spans) == 1
    assert await _count(sessions, CalendarSpanRow.calendar_id, f"{prefix}WREKIN-ACADEMY") == 2
    assert await _count(sessions, SettingRow.setting_id, f"{prefix}URN100002") == 1
    assert await _count(sessions, KeyAdultRow.setting_id, f"{prefix}URN100002") == 2
    assert await _roster(sessions, f"{prefix}URN100001") == ["Amelia"]
    assert await _roster(sessions, f"{prefix}URN100002") == ["Isla", "Mohammed", "Noah"]


async def test_bom_extra_columns_and_any_order(
    sessions: Sessions, tmp_path: Path, prefix: str
) -> None:
    settings = [prefixed(row, prefix) | {"notes": "ignored"} for row in read_sample("settings")]
    nursery = [row for row in settings if row["calendar_id"] == "weekdays"]
    pupils = [
        prefixed(row, prefix) | {"year_group": "N"}
        for row in read_sample("pupils")
        if row["setting_id"] == "EY200001"
    ]
    paths = {
        "settings": write_csv(
            tmp_path / "s.csv", nursery, bom=True, columns=sorted(nursery[0], reverse=True)
        ),
        "pupils": write_csv(tmp_path / "p.csv", pupils, bom=True, columns=sorted(pupils[0])),
    }

    assert await _import(sessions, paths) == ImportReport(settings=1, pupils=2)
    assert await _roster(sessions, f"{prefix}EY200001") == ["Freya", "Oliver"]


@pytest.mark.parametrize(
    ("name", "change", "line", "reason"),
    [
        (
            "settings",
            {"calendar_id": "NOWHERE"},
            2,
            "calendar_id {p}NOWHERE is not a known calendar (import it in calendars.csv, "
            "or use 'weekdays')",
        ),
        ("settings", {"setting_id": "URN100001"}, 3, "setting_id {p}URN100001 repeats line 2"),
        (
            "pupils",
            {"setting_id": "URN999999"},
            2,
            "setting_id {p}URN999999 is not a known setting (import it in settings.csv first)",
        ),
    ],
)
async def test_references_are_checked(
    sessions: Sessions,
    tmp_path: Path,
    prefix: str,
    name: str,
    change: dict[str, str],
    line: int,
    reason: str,
) -> None:
    sample = write_sample(tmp_path / "sample", prefix)
    await import_directory(sessions, calendars=sample["calendars"], settings=sample["settings"])
    rows = read_sample(name)
    rows[line - 2].update(change)
    path = write_csv(tmp_path / f"{name}.csv", [prefixed(row, prefix) for row in rows])
    with pytest.raises(DirectoryImportError) as caught:
        await _import(sessions, {name: path})
    assert str(caught.value) == f"{path}:{line}: {reason.format(p=prefix)}"


async def test_progress_is_reported(
    sessions: Sessions, tmp_path: Path, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = write_sample(tmp_path, prefix)
    monkeypatch.setattr(importer, "CHUNK", 2)
    monkeypatch.setattr(importer, "PROGRESS_EVERY", 3)
    calls: list[tuple[str, int]] = []

    await import_directory(
        sessions,
        settings=paths["settings"],
        calendars=paths["calendars"],
        pupils=paths["pupils"],
        progress=lambda f, n: calls.append((f, n)),
    )

    label = str(paths["pupils"])
    assert [call for call in calls if call[0] == label] == [(label, 4), (label, 6)]
