"""Loading the directory CSV files into the database (``encompass directory import``).

Files load in dependency order (calendars, settings, key adults, pupils), each in one
transaction: a bad row raises :class:`DirectoryImportError` and leaves nothing of that file
loaded, while files before it stay loaded. Rows stream through in chunks (parsed in a worker
thread, written with Core executemany) so 100,000 pupils take seconds, not minutes.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Table, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.db.tables import (
    CALENDARS_VERSION_ID,
    ROSTER_VERSION_ID,
    Base,
    CalendarSpanRow,
    KeyAdultRow,
    PupilRow,
    RosterVersionRow,
    SettingRow,
)
from encompass.adapters.db.upsert import dialect_insert
from encompass.domain.directory import WEEKDAYS_CALENDAR
from encompass.services.directory.csv_rows import (
    CalendarSpanIn,
    DirectoryImportError,
    KeyAdultIn,
    PupilIn,
    SettingIn,
    read_rows,
)

__all__ = ["DirectoryImportError", "ImportReport", "Progress", "import_directory"]

Progress = Callable[[str, int], None]
"""Called as ``progress(file_label, rows_done)`` every :data:`PROGRESS_EVERY` rows."""

CHUNK = 5_000
PROGRESS_EVERY = 10_000

_SPANS = Base.metadata.tables[CalendarSpanRow.__tablename__]
_SETTINGS = Base.metadata.tables[SettingRow.__tablename__]
_KEY_ADULTS = Base.metadata.tables[KeyAdultRow.__tablename__]
_PUPILS = Base.metadata.tables[PupilRow.__tablename__]
_ROSTER_VERSION = Base.metadata.tables[RosterVersionRow.__tablename__]


@dataclass(frozen=True, slots=True)
class ImportReport:
    """Rows loaded from each file (0 for a file not given); calendars count spans."""

    calendars: int = 0
    settings: int = 0
    key_adults: int = 0
    pupils: int = 0

    def summary(self) -> str:
        """One line for people: ``calendars 12, settings 3, key_adults 5, pupils 100000``."""
        return (
            f"calendars {self.calendars}, settings {self.settings}, "
            f"key_adults {self.key_adults}, pupils {self.pupils}"
        )

    def __str__(self) -> str:
        return self.summary()


class _Loader(Protocol):
    async def start(self, session: AsyncSession) -> None: ...

    async def load(self, session: AsyncSession, label: str, chunk: Sequence[Any]) -> None: ...


async def _ids(session: AsyncSession, column: Any) -> set[str]:
    return set((await session.scalars(select(column).distinct())).all())


async def _upsert(
    session: AsyncSession, table: Table, key: str, rows: list[dict[str, Any]]
) -> None:
    # Update in place rather than delete and insert: pupils, Key Adults and notices refer
    # to settings by foreign key. Columns the rows do not carry keep their values.
    statement = dialect_insert(session, table)
    updates = {
        column.name: statement.excluded[column.name]
        for column in table.columns
        if column.name in rows[0] and column.name != key
    }
    await session.execute(statement.on_conflict_do_update(index_elements=[key], set_=updates), rows)


@dataclass
class _Unique:
    """Refuses an id seen twice in one file: a silent last-one-wins would hide a mistake."""

    what: str
    seen: dict[str, int] = field(default_factory=dict)

    def check(self, label: str, line: int, value: str) -> None:
        first = self.seen.setdefault(value, line)
        if first != line:
            raise DirectoryImportError(label, line, f"{self.what} {value} repeats line {first}")


async def _calendars_changed(session: AsyncSession) -> None:
    # A new calendars version in the import's own transaction: workers caching calendars
    # (the matcher) see it change exactly when the new calendars or settings commit.
    await _upsert(
        session,
        _ROSTER_VERSION,
        "roster_id",
        [{"roster_id": CALENDARS_VERSION_ID, "version": uuid.uuid4().hex}],
    )


@dataclass
class _Calendars:
    replaced: set[str] = field(default_factory=set)

    async def start(self, session: AsyncSession) -> None:
        await _calendars_changed(session)

    async def load(
        self, session: AsyncSession, label: str, chunk: Sequence[tuple[int, CalendarSpanIn]]
    ) -> None:
        new = {row.calendar_id for _, row in chunk} - self.replaced
        if new:
            # Every span of a calendar named in the file is replaced by the file's spans.
            await session.execute(delete(_SPANS).where(_SPANS.c.calendar_id.in_(new)))
            self.replaced |= new
        await session.execute(insert(_SPANS), [row.model_dump() for _, row in chunk])


@dataclass
class _Settings:
    calendars: set[str] = field(default_factory=set)
    unique: _Unique = field(default_factory=lambda: _Unique("setting_id"))

    async def start(self, session: AsyncSession) -> None:
        self.calendars = await _ids(session, _SPANS.c.calendar_id) | {WEEKDAYS_CALENDAR}
        await _calendars_changed(session)

    async def load(
        self, session: AsyncSession, label: str, chunk: Sequence[tuple[int, SettingIn]]
    ) -> None:
        for line, row in chunk:
            self.unique.check(label, line, row.setting_id)
            if row.calendar_id not in self.calendars:
                raise DirectoryImportError(
                    label,
                    line,
                    f"calendar_id {row.calendar_id} is not a known calendar "
                    f"(import it in calendars.csv, or use '{WEEKDAYS_CALENDAR}')",
                )
        await _upsert(session, _SETTINGS, "setting_id", [row.model_dump() for _, row in chunk])


def _unknown_setting(label: str, line: int, setting_id: str) -> DirectoryImportError:
    return DirectoryImportError(
        label,
        line,
        f"setting_id {setting_id} is not a known setting (import it in settings.csv first)",
    )


@dataclass
class _KeyAdults:
    settings: set[str] = field(default_factory=set)
    unique: _Unique = field(default_factory=lambda: _Unique("key_adult_id"))

    async def start(self, session: AsyncSession) -> None:
        self.settings = await _ids(session, _SETTINGS.c.setting_id)

    async def load(
        self, session: AsyncSession, label: str, chunk: Sequence[tuple[int, KeyAdultIn]]
    ) -> None:
        rows = []
        for line, row in chunk:
            self.unique.check(label, line, row.key_adult_id)
            if row.setting_id not in self.settings:
                raise _unknown_setting(label, line, row.setting_id)
            values = row.model_dump(exclude={"public_key"})
            rows.append({**values, "public_key_pem": row.public_key})
        # The rows carry no token_hash nor webhook_key_sealed: credentials are issued by
        # ``encompass key-adults credentials``, and a re-import must not revoke them.
        await _upsert(session, _KEY_ADULTS, "key_adult_id", rows)


@dataclass
class _Pupils:
    settings: set[str] = field(default_factory=set)
    replaced: set[str] = field(default_factory=set)

    async def start(self, session: AsyncSession) -> None:
        self.settings = await _ids(session, _SETTINGS.c.setting_id)
        # A new roster version in the pupils' own transaction: it commits exactly when they
        # do, so a worker that reads it knows its in-memory index is stale. On PostgreSQL the
        # upsert also locks the row, so two pupils imports run one after the other.
        await _upsert(
            session,
            _ROSTER_VERSION,
            "roster_id",
            [{"roster_id": ROSTER_VERSION_ID, "version": uuid.uuid4().hex}],
        )

    async def load(
        self, session: AsyncSession, label: str, chunk: Sequence[tuple[int, PupilIn]]
    ) -> None:
        new: set[str] = set()
        for line, row in chunk:
            if row.setting_id not in self.replaced and row.setting_id not in new:
                if row.setting_id not in self.settings:
                    raise _unknown_setting(label, line, row.setting_id)
                new.add(row.setting_id)
        if new:
            # The file is the whole roster of each setting it names; others keep theirs.
            await session.execute(delete(_PUPILS).where(_PUPILS.c.setting_id.in_(new)))
            self.replaced |= new
        await session.execute(insert(_PUPILS), [row.model_dump() for _, row in chunk])


def _take(rows: Iterator[tuple[int, Any]]) -> list[tuple[int, Any]]:
    return list(itertools.islice(rows, CHUNK))


async def _load_file(
    sessions: async_sessionmaker[AsyncSession],
    path: Path,
    model: type[Any],
    loader: _Loader,
    progress: Progress | None,
) -> int:
    label = str(path)
    rows = read_rows(path, model, label=label)
    done = 0
    # Parsing and validating is file I/O and CPU work: a worker thread reads the next chunk
    # while the database writes this one, and the event loop stays free meanwhile.
    ahead = asyncio.ensure_future(asyncio.to_thread(_take, rows))
    try:
        async with sessions.begin() as session:
            await loader.start(session)
            while chunk := await ahead:
                ahead = asyncio.ensure_future(asyncio.to_thread(_take, rows))
                await loader.load(session, label, chunk)
                before, done = done, done + len(chunk)
                if progress is not None and done // PROGRESS_EVERY > before // PROGRESS_EVERY:
                    progress(label, done)
    finally:
        # The reader may still be running in its thread: let it finish before closing it
        # (its own error, if any, is moot once the import has failed).
        await asyncio.wait([ahead])
        if not ahead.cancelled():
            ahead.exception()
        rows.close()
    return done


async def import_directory(
    sessions: async_sessionmaker[AsyncSession],
    *,
    settings: Path | None = None,
    key_adults: Path | None = None,
    calendars: Path | None = None,
    pupils: Path | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Load the given directory CSV files and report how many rows each held.

    Order: calendars, settings, key adults, pupils, one transaction per file. Re-import
    replaces by id: settings by ``setting_id`` and Key Adults by ``key_adult_id`` (updated
    in place; a Key Adult keeps the credentials issued to them); every span of each calendar
    in the file; the whole roster of each setting in the pupils file (the roster version
    changing with it, in the same transaction: see ``RosterVersionRow``). A setting's
    ``calendar_id`` must name a calendar already loaded (or ``weekdays``); Key Adults and
    pupils must name a setting already loaded. The first bad row raises
    :class:`DirectoryImportError` (``FILE:LINE: reason``), loading nothing of its file and
    nothing of the files after it.
    """
    counts: dict[str, int] = {}
    plan: list[tuple[str, Path | None, type[Any], _Loader]] = [
        ("calendars", calendars, CalendarSpanIn, _Calendars()),
        ("settings", settings, SettingIn, _Settings()),
        ("key_adults", key_adults, KeyAdultIn, _KeyAdults()),
        ("pupils", pupils, PupilIn, _Pupils()),
    ]
    for name, path, model, loader in plan:
        if path is not None:
            counts[name] = await _load_file(sessions, path, model, loader, progress)
    return ImportReport(**counts)
