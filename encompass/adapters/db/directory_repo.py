"""Reading the directory: what matching and scheduling need from the imported CSVs.

Rows are turned into the domain's frozen dataclasses here, so nothing past this module
sees SQLAlchemy. Writing is the import's job (``encompass.services.directory.importer``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date

from sqlalchemy import ColumnElement, Row, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from encompass.adapters.db.tables import (
    CALENDARS_VERSION_ID,
    ROSTER_VERSION_ID,
    CalendarSpanRow,
    KeyAdultRow,
    PupilRow,
    RosterVersionRow,
    SettingRow,
)
from encompass.domain.directory import (
    CalendarSpan,
    HolidayPolicy,
    KeyAdult,
    KeyAdultRole,
    Nation,
    Pupil,
    Setting,
    SettingCalendar,
    SettingKind,
    SpanKind,
)
from encompass.domain.postcode import canonical_postcode

_PUPIL_COLUMNS = (
    PupilRow.setting_id,
    PupilRow.upn,
    PupilRow.given_name,
    PupilRow.family_name,
    PupilRow.date_of_birth,
    PupilRow.postcode,
    PupilRow.gender,
)
_PupilRow = Row[str, str | None, str, str, date, str, str | None]
_STREAM_BATCH = 2_000


def _setting(row: SettingRow) -> Setting:
    return Setting(
        setting_id=row.setting_id,
        name=row.name,
        kind=SettingKind(row.kind),
        nation=Nation(row.nation),
        postcode=row.postcode,
        day_starts=row.day_starts,
        day_ends=row.day_ends,
        dispatch_at=row.dispatch_at,
        calendar_id=row.calendar_id,
        holiday_policy=HolidayPolicy(row.holiday_policy),
        la_code=row.la_code,
    )


def _pupil(row: _PupilRow) -> Pupil:
    return Pupil(
        setting_id=row.setting_id,
        upn=row.upn,
        given_name=row.given_name,
        family_name=row.family_name,
        date_of_birth=row.date_of_birth,
        postcode=row.postcode,
        gender=row.gender,
    )


async def load_setting_calendar(session: AsyncSession, setting_id: str) -> SettingCalendar | None:
    """The setting with every span of its calendar (ordered by first day), or None if the
    setting is unknown. A ``weekdays`` calendar has no spans."""
    setting = await session.get(SettingRow, setting_id)
    if setting is None:
        return None
    spans = await session.scalars(
        select(CalendarSpanRow)
        .where(CalendarSpanRow.calendar_id == setting.calendar_id)
        .order_by(CalendarSpanRow.first_day, CalendarSpanRow.span_id)
    )
    return SettingCalendar(
        setting=_setting(setting),
        spans=tuple(
            CalendarSpan(
                calendar_id=span.calendar_id,
                first_day=span.first_day,
                last_day=span.last_day,
                kind=SpanKind(span.kind),
            )
            for span in spans
        ),
    )


def _birthdays(born: date) -> set[date]:
    # Day and month are often swapped in police records (3/2 for 2/3): block on both.
    days = {born}
    if born.day <= 12 and born.day != born.month:
        # The new day is the old month (1-12), valid in every month.
        days.add(born.replace(month=born.day, day=born.month))
    return days


async def candidate_pupils(
    session: AsyncSession,
    *,
    upn: str | None,
    date_of_birth: date | None,
    postcode: str | None,
    family_name: str | None,
) -> list[Pupil]:
    """Every roster entry that shares the UPN, OR the date of birth (or its day/month swap),
    OR the postcode (in any spacing or case) with the reported child, at every setting.

    Blocking only, each test on an indexed column: the domain matcher scores and decides.
    ``family_name`` is not used to block (names are where reports differ most: nicknames,
    hyphens, swaps); it is accepted so callers pass the child's whole identity.
    """
    del family_name
    tests: list[ColumnElement[bool]] = []
    if upn and upn.strip():
        tests.append(PupilRow.upn == upn.strip().upper())
    if date_of_birth is not None:
        tests.append(PupilRow.date_of_birth.in_(sorted(_birthdays(date_of_birth))))
    if postcode and postcode.strip():
        tests.append(PupilRow.postcode == canonical_postcode(postcode))
    if not tests:
        return []
    result = await session.execute(
        select(*_PUPIL_COLUMNS).where(or_(*tests)).order_by(PupilRow.pupil_id)
    )
    return [_pupil(row) for row in result]


async def key_adults_for(session: AsyncSession, setting_id: str) -> list[KeyAdult]:
    """The setting's Key Adults, deputies and holiday contacts, ordered by id."""
    rows = await session.scalars(
        select(KeyAdultRow)
        .where(KeyAdultRow.setting_id == setting_id)
        .order_by(KeyAdultRow.key_adult_id)
    )
    return [
        KeyAdult(
            key_adult_id=row.key_adult_id,
            setting_id=row.setting_id,
            name=row.name,
            role=KeyAdultRole(row.role),
            email=row.email,
            webhook_url=row.webhook_url,
            public_key_pem=row.public_key_pem,
        )
        for row in rows
    ]


async def all_pupils(session: AsyncSession) -> AsyncIterator[Pupil]:
    """Every roster entry, streamed in batches (a server-side cursor on PostgreSQL), so an
    in-memory index can be built without holding the raw result twice."""
    result = await session.stream(
        select(*_PUPIL_COLUMNS)
        .order_by(PupilRow.pupil_id)
        .execution_options(yield_per=_STREAM_BATCH)
    )
    # By partition, not row by row: each step of an async result is a greenlet switch, and
    # one per row would cost more than the rest of the load.
    async for rows in result.partitions():
        for row in rows:
            yield _pupil(row)


async def calendars_version(session: AsyncSession) -> str:
    """A token that changes whenever calendars or settings are imported (``""`` before
    the first such import): a cache of calendars is good while it stays the same."""
    version = await session.scalar(
        select(RosterVersionRow.version).where(RosterVersionRow.roster_id == CALENDARS_VERSION_ID)
    )
    return version or ""


async def roster_version(session: AsyncSession) -> str:
    """The roster's current version: a token that changes whenever any pupil is imported
    (``""`` before the first pupils import). One read of one row, cheap enough to ask often."""
    version = await session.scalar(
        select(RosterVersionRow.version).where(RosterVersionRow.roster_id == ROSTER_VERSION_ID)
    )
    return version or ""
