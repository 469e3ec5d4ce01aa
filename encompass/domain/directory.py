"""The directory: settings, their calendars, Key Adults and the roster of pupils.

Plain frozen dataclasses so the domain stays free of I/O; the CSV boundary models that
validate rows into these live in ``encompass.services.directory.importer``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, time
from enum import StrEnum


class SettingKind(StrEnum):
    SCHOOL = "school"
    COLLEGE = "college"
    EARLY_YEARS = "early_years"
    # The local authority's named contact for children on no roll: its Key Adults are the
    # contacts, and notices to it are sealed and delivered like any other.
    LOCAL_AUTHORITY = "local_authority"


class Nation(StrEnum):
    ENGLAND = "england"
    WALES = "wales"
    SCOTLAND = "scotland"
    NORTHERN_IRELAND = "northern_ireland"


class HolidayPolicy(StrEnum):
    HOLD = "hold"
    HOLIDAY_CONTACT = "holiday_contact"


class SpanKind(StrEnum):
    TERM = "term"
    CLOSED = "closed"


class KeyAdultRole(StrEnum):
    KEY_ADULT = "key_adult"
    DEPUTY = "deputy"
    HOLIDAY_CONTACT = "holiday_contact"


WEEKDAYS_CALENDAR = "weekdays"
"""The calendar id meaning: open every weekday that is not a bank holiday."""


@dataclass(frozen=True, slots=True)
class CalendarSpan:
    calendar_id: str
    first_day: date
    last_day: date
    kind: SpanKind


@dataclass(frozen=True, slots=True)
class Setting:
    setting_id: str
    name: str
    kind: SettingKind
    nation: Nation
    postcode: str
    day_starts: time
    day_ends: time
    dispatch_at: time
    calendar_id: str
    holiday_policy: HolidayPolicy
    # The local authority (ONS code such as E06000020) the setting belongs to: its admins'
    # area. None for a setting imported without one (seen by admins of ``all`` only).
    la_code: str | None = None


@dataclass(frozen=True, slots=True)
class SettingCalendar:
    """A setting together with every span of its calendar: all the release rule needs."""

    setting: Setting
    spans: tuple[CalendarSpan, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class KeyAdult:
    key_adult_id: str
    setting_id: str
    name: str
    role: KeyAdultRole
    email: str
    webhook_url: str | None
    public_key_pem: str


@dataclass(frozen=True, slots=True)
class Pupil:
    setting_id: str
    upn: str | None
    given_name: str
    family_name: str
    date_of_birth: date
    postcode: str
    gender: str | None
