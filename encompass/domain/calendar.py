"""The release-time rule: when a notice reaches a setting (the "next school day").

Pure: the standard library and the ``holidays`` package only. The rule, as
docs/release-rule.md states it: let T be the time the incident reached us, in Europe/London.
A day is *open* when the setting's calendar has it in a term (the ``weekdays`` calendar:
every weekday), it is a weekday, it is not a bank holiday of the setting's nation and no
``closed`` span covers it. On an open day with ``dispatch_at <= T < day_ends`` the notice
goes at once; otherwise at ``dispatch_at`` on the first open day whose dispatch moment is
after T. With the ``holiday_contact`` policy, a *closed weekday* (not open, not a bank
holiday) that comes first takes the notice instead, for the holiday contact, by the same
timing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache
from types import MappingProxyType
from typing import NamedTuple
from zoneinfo import ZoneInfo

import holidays

from encompass.domain.directory import (
    WEEKDAYS_CALENDAR,
    HolidayPolicy,
    Nation,
    Setting,
    SettingCalendar,
    SpanKind,
)

LONDON = ZoneInfo("Europe/London")
HORIZON_DAYS = 400
"""How far ahead the search looks; beyond a year a calendar is missing data, not on holiday."""

_SUBDIVISIONS = {
    Nation.ENGLAND: "ENG",
    Nation.WALES: "WLS",
    Nation.SCOTLAND: "SCT",
    Nation.NORTHERN_IRELAND: "NIR",
}
# Hard-coded rather than strftime's %A/%B, which follow the process locale.
_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTH_NAMES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


class Recipient(StrEnum):
    KEY_ADULTS = "key_adults"
    HOLIDAY_CONTACT = "holiday_contact"


@dataclass(frozen=True, slots=True)
class Release:
    at: datetime
    """Aware, in Europe/London; T itself to the microsecond when released at once."""
    recipient: Recipient
    reason: str
    """One sentence for people: dates and the setting's times only, never personal data."""


class NoReleaseDay(ValueError):
    """No day within the horizon can take the notice: it must go to an admin's review."""


def bank_holidays(nation: Nation, year: int) -> Mapping[date, str]:
    """The bank holidays of ``nation`` in ``year`` (observed days included), read-only."""
    return _bank_holidays(Nation(nation), year)


@lru_cache(maxsize=128)
def _bank_holidays(nation: Nation, year: int) -> Mapping[date, str]:
    found = holidays.country_holidays("GB", subdiv=_SUBDIVISIONS[nation], years=year)
    return MappingProxyType({day: str(name) for day, name in found.items() if day.year == year})


class _Shut(NamedTuple):
    """Why a day is not open: its label for one day and for a run of such weekdays."""

    closed_weekday: bool
    one: str
    many: str


_WEEKEND = _Shut(False, "a weekend day", "weekend days")
_SCHOOL_HOLIDAY = _Shut(True, "a school holiday", "school holidays")
_CLOSURE = _Shut(True, "closed (INSET day or closure)", "closed (INSET days or closure)")


class _Days:
    """One calendar's spans sorted into terms and closures, read once per call."""

    def __init__(self, calendar: SettingCalendar) -> None:
        setting = calendar.setting
        # Only the setting's own spans count, so a caller that passes too many cannot
        # borrow another setting's terms.
        own = [s for s in calendar.spans if s.calendar_id == setting.calendar_id]
        self.nation = setting.nation
        self.all_weekdays = setting.calendar_id == WEEKDAYS_CALENDAR
        self.terms = [(s.first_day, s.last_day) for s in own if s.kind is SpanKind.TERM]
        self.closures = [(s.first_day, s.last_day) for s in own if s.kind is SpanKind.CLOSED]

    def why_not_open(self, day: date) -> _Shut | None:
        """None for an open day, else why it is not."""
        if day.weekday() >= 5:
            return _WEEKEND
        name = _bank_holidays(self.nation, day.year).get(day)
        if name is not None:
            label = f"a bank holiday ({name})"
            return _Shut(False, label, label)
        if any(first <= day <= last for first, last in self.closures):
            return _CLOSURE
        if self.all_weekdays or any(first <= day <= last for first, last in self.terms):
            return None
        return _SCHOOL_HOLIDAY


def is_open_day(calendar: SettingCalendar, day: date) -> bool:
    """True when the setting is open on ``day``: a term weekday, no bank holiday, no closure."""
    return _Days(calendar).why_not_open(day) is None


def release_time(calendar: SettingCalendar, reported_at: datetime) -> Release:
    """When, and to whom, a notice reported at ``reported_at`` is released to this setting.

    Promises: the release is never before ``reported_at``; it is either ``reported_at``
    itself (during the dispatch window of a day that takes the notice) or that setting's
    ``dispatch_at`` on the first such day, in Europe/London. Raises ValueError for a naive
    ``reported_at`` and NoReleaseDay when nothing within HORIZON_DAYS can take the notice.
    """
    t_utc = _as_utc(reported_at)
    days = _Days(calendar)
    found = _first_day_taking(calendar.setting, days, t_utc)
    if found is None:
        raise NoReleaseDay(_no_release_message(calendar, days, t_utc.astimezone(LONDON).date()))
    return _release(calendar.setting, found, t_utc)


@dataclass(frozen=True, slots=True)
class _Found:
    """The first day that takes the notice, and what the search passed on the way."""

    day: date
    offset: int  # days after the report's own (London) day
    why: _Shut | None  # None: an open day; else a closed weekday the holiday contact takes
    moment: datetime  # UTC: the report itself, or that day's dispatch time
    skipped: tuple[tuple[date, _Shut], ...]  # closed weekdays passed over
    ended_today: bool  # reported after the report's own day had ended


def _as_utc(reported_at: datetime) -> datetime:
    if reported_at.tzinfo is None or reported_at.utcoffset() is None:
        raise ValueError("reported_at must be timezone-aware")
    return reported_at.astimezone(UTC)


def _first_day_taking(setting: Setting, days: _Days, t_utc: datetime) -> _Found | None:
    """Search day by day (weekends never count) for the first day that takes the notice:
    an open day, or under the holiday-contact policy a closed weekday too."""
    # Through UTC so that a wall time in London's spring gap becomes the real instant's.
    start = t_utc.astimezone(LONDON).date()
    to_contact = setting.holiday_policy is HolidayPolicy.HOLIDAY_CONTACT
    skipped: list[tuple[date, _Shut]] = []
    ended_today = False
    for offset in range(HORIZON_DAYS + 1):
        day = start + timedelta(days=offset)
        why = days.why_not_open(day)
        if why is _WEEKEND:
            continue
        takes = why is None or (to_contact and why.closed_weekday)
        moment = _moment(day, setting.dispatch_at, setting.day_ends, t_utc) if takes else None
        if moment is not None:
            return _Found(day, offset, why, moment, tuple(skipped), ended_today)
        if why is not None and not takes:
            skipped.append((day, why))
        elif offset == 0:
            ended_today = True
    return None


def _release(setting: Setting, found: _Found, t_utc: datetime) -> Release:
    """The release on the day found, with the reason a person reads."""
    t_local = t_utc.astimezone(LONDON)
    clock = f"{t_local:%H:%M:%S}" if t_local.second or t_local.microsecond else f"{t_local:%H:%M}"
    opening = f"reported on {_day(t_local.date())} at {clock}"
    if found.ended_today:
        opening += f", after the day ended at {setting.day_ends:%H:%M}"
    why = found.why
    recipient = Recipient.KEY_ADULTS if why is None else Recipient.HOLIDAY_CONTACT
    kind = "an open day" if why is None else f"{why.one}, a closed weekday"
    if found.moment == t_utc:
        reason = (
            f"{opening}, during {kind} after its dispatch time "
            f"{setting.dispatch_at:%H:%M} and before it ends at "
            f"{setting.day_ends:%H:%M}: released at once"
        )
        release_at = t_local
    else:
        which = "the next open day" if found.offset else "an open day, before its dispatch time"
        if why is not None:
            which = f"{kind} before any open day"
        reason = (
            f"{opening}; {_skips(found.skipped)}{_day(found.day)} is {which}; "
            f"released at its dispatch time {setting.dispatch_at:%H:%M}"
        )
        release_at = found.moment.astimezone(LONDON)
    if recipient is Recipient.HOLIDAY_CONTACT:
        reason += " to the holiday contact (policy holiday_contact)"
    return Release(at=release_at, recipient=recipient, reason=reason)


def format_release(release: Release) -> str:
    """The CLI line: the ISO 8601 time with its Europe/London offset, a space, the reason."""
    return f"{release.at.astimezone(LONDON).isoformat()} {release.reason}"


def _moment(day: date, dispatch_at: time, day_ends: time, t_utc: datetime) -> datetime | None:
    """The instant a day can take the notice: T inside its window, its dispatch if later."""
    # Compared in UTC: same-zone aware datetimes compare by wall clock, which ignores fold.
    dispatch = datetime.combine(day, dispatch_at, tzinfo=LONDON).astimezone(UTC)
    if dispatch > t_utc:
        return dispatch
    if t_utc < datetime.combine(day, day_ends, tzinfo=LONDON).astimezone(UTC):
        return t_utc
    return None


def _day(day: date) -> str:
    return f"{_DAY_NAMES[day.weekday()]} {day.day} {_MONTH_NAMES[day.month - 1]} {day.year}"


def _skips(skipped: Sequence[tuple[date, _Shut]]) -> str:
    """The skipped weekdays as clauses, consecutive ones with the same label as one run."""
    runs: list[tuple[date, date, _Shut]] = []
    for day, label in skipped:
        if runs and runs[-1][2] == label:
            runs[-1] = (runs[-1][0], day, label)
        else:
            runs.append((day, day, label))
    return "".join(
        f"{_day(first)} is {label.one}; "
        if first == last
        else f"the weekdays from {_day(first)} to {_day(last)} are {label.many}; "
        for first, last, label in runs
    )


def _no_release_message(calendar: SettingCalendar, days: _Days, start: date) -> str:
    setting = calendar.setting
    if not days.terms:
        known = "it has no term spans"
    elif all(last < start for _, last in days.terms):
        known = f"its last term ended on {_day(max(last for _, last in days.terms))}"
    else:
        known = "none of its term days in that time is open"
    return (
        f"no open day within {HORIZON_DAYS} days of {_day(start)} for setting "
        f"{setting.setting_id} (calendar {setting.calendar_id!r}: {known}; policy "
        f"{setting.holiday_policy.value}): the notice needs an admin's review"
    )
