"""The release-time rule ("next school day") of docs/release-rule.md, case by case and by property.

Bank holiday facts asserted here were read from the installed ``holidays`` package, not
from memory. Term dates are a fictional but typical English school year.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from encompass.domain.calendar import (
    HORIZON_DAYS,
    LONDON,
    NoReleaseDay,
    Recipient,
    Release,
    bank_holidays,
    format_release,
    is_open_day,
    release_time,
)
from encompass.domain.directory import (
    WEEKDAYS_CALENDAR,
    CalendarSpan,
    HolidayPolicy,
    Nation,
    Setting,
    SettingCalendar,
    SettingKind,
    SpanKind,
)

HOLD = HolidayPolicy.HOLD
CONTACT = HolidayPolicy.HOLIDAY_CONTACT
TERM = SpanKind.TERM
CLOSED = SpanKind.CLOSED

TERMS = (
    (date(2025, 9, 3), date(2025, 10, 24)),
    (date(2025, 11, 3), date(2025, 12, 19)),
    (date(2026, 1, 5), date(2026, 2, 13)),
    (date(2026, 2, 23), date(2026, 4, 2)),
    (date(2026, 4, 20), date(2026, 5, 22)),
    (date(2026, 6, 1), date(2026, 7, 17)),
    (date(2026, 9, 2), date(2026, 10, 30)),
    (date(2026, 11, 9), date(2026, 12, 18)),
    (date(2027, 1, 4), date(2027, 2, 12)),
    (date(2027, 2, 22), date(2027, 3, 25)),
    (date(2027, 4, 12), date(2027, 5, 28)),
    (date(2027, 6, 7), date(2027, 7, 21)),
    (date(2027, 9, 1), date(2027, 12, 17)),
    (date(2028, 1, 4), date(2028, 7, 20)),
)
INSET = (
    (date(2026, 9, 2), date(2026, 9, 3)),  # the first two days of the autumn term
    (date(2026, 11, 27), date(2026, 11, 27)),  # a Friday
)


def make_calendar(
    *,
    nation: Nation = Nation.ENGLAND,
    policy: HolidayPolicy = HOLD,
    calendar_id: str = "cal-1",
    terms: tuple[tuple[date, date], ...] = TERMS,
    closed: tuple[tuple[date, date], ...] = INSET,
    dispatch_at: time = time(7, 30),
    day_ends: time = time(15, 30),
) -> SettingCalendar:
    setting = Setting(
        setting_id="URN-100001",
        name="Hilltop Primary",
        kind=SettingKind.SCHOOL,
        nation=nation,
        postcode="TF3 4NT",
        day_starts=time(8, 45),
        day_ends=day_ends,
        dispatch_at=dispatch_at,
        calendar_id=calendar_id,
        holiday_policy=policy,
    )
    spans = tuple(CalendarSpan(calendar_id, a, b, TERM) for a, b in terms) + tuple(
        CalendarSpan(calendar_id, a, b, CLOSED) for a, b in closed
    )
    return SettingCalendar(setting=setting, spans=spans)


def weekdays(nation: Nation = Nation.ENGLAND, policy: HolidayPolicy = HOLD) -> SettingCalendar:
    cal = make_calendar(nation=nation, policy=policy, terms=(), closed=())
    return replace(
        cal,
        setting=replace(cal.setting, calendar_id=WEEKDAYS_CALENDAR, kind=SettingKind.EARLY_YEARS),
    )


def at(y: int, m: int, d: int, hh: int = 0, mm: int = 0, ss: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, ss, tzinfo=LONDON)


SCHOOL = make_calendar()
SCHOOL_CONTACT = make_calendar(policy=CONTACT)


# --- weekends and the school day ------------------------------------------------------------


def test_saturday_night_goes_monday_at_dispatch() -> None:
    release = release_time(SCHOOL, at(2026, 11, 21, 23, 10))
    assert release == Release(
        at=at(2026, 11, 23, 7, 30),
        recipient=Recipient.KEY_ADULTS,
        reason="reported on Saturday 21 November 2026 at 23:10; Monday 23 November 2026 is "
        "the next open day; released at its dispatch time 07:30",
    )


def test_friday_evening_goes_monday() -> None:
    assert release_time(SCHOOL, at(2026, 11, 20, 18, 0)).at == at(2026, 11, 23, 7, 30)


def test_sunday_goes_monday() -> None:
    assert release_time(SCHOOL, at(2026, 11, 22, 12, 0)).at == at(2026, 11, 23, 7, 30)


def test_during_an_open_day_goes_at_once() -> None:
    t = at(2026, 11, 24, 10, 15)
    release = release_time(SCHOOL, t)
    assert release.at == t and release.recipient is Recipient.KEY_ADULTS
    assert "released at once" in release.reason


def test_early_morning_of_an_open_day_waits_for_dispatch() -> None:
    release = release_time(SCHOOL, at(2026, 11, 24, 3, 0))
    assert release.at == at(2026, 11, 24, 7, 30)
    assert "before its dispatch time" in release.reason


@pytest.mark.parametrize(
    ("reported", "expected"),
    [
        (at(2026, 11, 24, 7, 30), at(2026, 11, 24, 7, 30)),  # exactly dispatch_at: at once
        (at(2026, 11, 24, 7, 29, 59), at(2026, 11, 24, 7, 30)),  # a second before: dispatch
        (at(2026, 11, 24, 15, 29, 59), at(2026, 11, 24, 15, 29, 59)),  # before the end: at once
        (at(2026, 11, 24, 15, 30), at(2026, 11, 25, 7, 30)),  # exactly day_ends: next day
        (at(2026, 11, 20, 15, 30), at(2026, 11, 23, 7, 30)),  # Friday's end: Monday
    ],
)
def test_edges_of_the_day(reported: datetime, expected: datetime) -> None:
    release = release_time(SCHOOL, reported)
    assert release.at == expected
    assert release.recipient is Recipient.KEY_ADULTS


def test_at_once_keeps_microseconds() -> None:
    t = datetime(2026, 11, 24, 9, 0, 0, 123456, tzinfo=LONDON)
    assert release_time(SCHOOL, t).at == t


def test_after_the_day_ended_the_reason_says_so() -> None:
    reason = release_time(SCHOOL, at(2026, 11, 24, 16, 0)).reason
    assert "after the day ended at 15:30" in reason
    assert "Wednesday 25 November 2026 is the next open day" in reason


# --- bank holidays, checked against the holidays package -----------------------------------


@pytest.mark.parametrize(
    ("nation", "day", "name"),
    [
        (Nation.SCOTLAND, date(2026, 1, 2), "New Year Holiday"),
        (Nation.SCOTLAND, date(2026, 11, 30), "Saint Andrew's Day"),
        (Nation.SCOTLAND, date(2025, 12, 1), "Saint Andrew's Day (observed)"),  # 30th a Sunday
        (Nation.SCOTLAND, date(2030, 12, 2), "Saint Andrew's Day (observed)"),  # a Saturday
        (Nation.SCOTLAND, date(2027, 1, 4), "New Year Holiday (observed)"),
        (Nation.SCOTLAND, date(2026, 8, 3), "Summer Bank Holiday"),
        (Nation.NORTHERN_IRELAND, date(2026, 3, 17), "Saint Patrick's Day"),
        (Nation.NORTHERN_IRELAND, date(2026, 7, 13), "Battle of the Boyne (observed)"),
        (Nation.NORTHERN_IRELAND, date(2027, 7, 12), "Battle of the Boyne"),
        (Nation.ENGLAND, date(2026, 4, 6), "Easter Monday"),
        (Nation.WALES, date(2026, 4, 6), "Easter Monday"),
        (Nation.ENGLAND, date(2026, 8, 31), "Late Summer Bank Holiday"),
        (Nation.ENGLAND, date(2026, 12, 28), "Boxing Day (observed)"),
    ],
)
def test_bank_holiday_facts(nation: Nation, day: date, name: str) -> None:
    assert bank_holidays(nation, day.year)[day] == name


@pytest.mark.parametrize(
    ("nation", "day"),
    [
        (Nation.ENGLAND, date(2026, 1, 2)),
        (Nation.ENGLAND, date(2026, 11, 30)),
        (Nation.ENGLAND, date(2026, 3, 17)),
        (Nation.ENGLAND, date(2026, 8, 3)),
        (Nation.SCOTLAND, date(2026, 4, 6)),  # no Easter Monday in Scotland
        (Nation.SCOTLAND, date(2026, 8, 31)),
        (Nation.WALES, date(2026, 7, 13)),
    ],
)
def test_not_a_bank_holiday_there(nation: Nation, day: date) -> None:
    assert day not in bank_holidays(nation, day.year)


def test_bank_holidays_match_the_package_and_are_cached_read_only() -> None:
    direct = holidays.country_holidays("GB", subdiv="NIR", years=2026)
    table = bank_holidays(Nation.NORTHERN_IRELAND, 2026)
    assert dict(table) == dict(direct.items())
    assert bank_holidays(Nation.NORTHERN_IRELAND, 2026) is table
    with pytest.raises(TypeError):
        table[date(2026, 1, 5)] = "made up"  # type: ignore[index]


@pytest.mark.parametrize(
    ("nation", "reported", "expected"),
    [
        # Scotland's 2 January: Wednesday 31 December 2025 evening.
        (Nation.SCOTLAND, at(2025, 12, 31, 18), at(2026, 1, 5, 7, 30)),
        (Nation.ENGLAND, at(2025, 12, 31, 18), at(2026, 1, 2, 7, 30)),
        # St Andrew's Day, Monday 30 November 2026.
        (Nation.SCOTLAND, at(2026, 11, 28, 12), at(2026, 12, 1, 7, 30)),
        (Nation.ENGLAND, at(2026, 11, 28, 12), at(2026, 11, 30, 7, 30)),
        # St Andrew's Day 2025 was a Sunday, observed Monday 1 December.
        (Nation.SCOTLAND, at(2025, 11, 29, 12), at(2025, 12, 2, 7, 30)),
        # St Patrick's Day, Tuesday 17 March 2026.
        (Nation.NORTHERN_IRELAND, at(2026, 3, 16, 18), at(2026, 3, 18, 7, 30)),
        (Nation.ENGLAND, at(2026, 3, 16, 18), at(2026, 3, 17, 7, 30)),
        # 12 July 2026 is a Sunday: Northern Ireland observes Monday 13 July.
        (Nation.NORTHERN_IRELAND, at(2026, 7, 10, 18), at(2026, 7, 14, 7, 30)),
        (Nation.WALES, at(2026, 7, 10, 18), at(2026, 7, 13, 7, 30)),
        (Nation.NORTHERN_IRELAND, at(2027, 7, 9, 18), at(2027, 7, 13, 7, 30)),
        # Good Friday 3 April and Easter Monday 6 April 2026; Scotland keeps no Easter Monday.
        (Nation.ENGLAND, at(2026, 4, 2, 18), at(2026, 4, 7, 7, 30)),
        (Nation.WALES, at(2026, 4, 2, 18), at(2026, 4, 7, 7, 30)),
        (Nation.NORTHERN_IRELAND, at(2026, 4, 2, 18), at(2026, 4, 7, 7, 30)),
        (Nation.SCOTLAND, at(2026, 4, 2, 18), at(2026, 4, 6, 7, 30)),
        # Summer bank holiday: Scotland first Monday of August, England the last.
        (Nation.SCOTLAND, at(2026, 7, 31, 18), at(2026, 8, 4, 7, 30)),
        (Nation.ENGLAND, at(2026, 7, 31, 18), at(2026, 8, 3, 7, 30)),
        (Nation.ENGLAND, at(2026, 8, 28, 18), at(2026, 9, 1, 7, 30)),
        (Nation.SCOTLAND, at(2026, 8, 28, 18), at(2026, 8, 31, 7, 30)),
        # Christmas 2026: Friday 25th, Boxing Day observed Monday 28th.
        (Nation.ENGLAND, at(2026, 12, 24, 18), at(2026, 12, 29, 7, 30)),
    ],
)
def test_bank_holidays_of_each_nation_on_a_weekdays_calendar(
    nation: Nation, reported: datetime, expected: datetime
) -> None:
    assert release_time(weekdays(nation), reported).at == expected


def test_a_waiting_bank_holiday_is_named_in_the_reason() -> None:
    reason = release_time(weekdays(Nation.ENGLAND), at(2026, 8, 28, 18)).reason
    assert "Monday 31 August 2026 is a bank holiday (Late Summer Bank Holiday)" in reason
    reason = release_time(weekdays(Nation.SCOTLAND), at(2026, 11, 30, 10)).reason
    assert "Monday 30 November 2026 is a bank holiday (Saint Andrew's Day)" in reason


def test_a_bank_holiday_inside_term_is_not_open() -> None:
    assert not is_open_day(make_calendar(nation=Nation.NORTHERN_IRELAND), date(2026, 3, 17))
    assert is_open_day(make_calendar(nation=Nation.ENGLAND), date(2026, 3, 17))


# --- terms, INSET days and closures --------------------------------------------------------


def test_inset_day_inside_term_is_skipped() -> None:
    release = release_time(SCHOOL, at(2026, 11, 26, 18))
    assert release.at == at(2026, 11, 30, 7, 30)
    assert "Friday 27 November 2026 is closed (INSET day or closure)" in release.reason


def test_last_day_of_term_goes_to_the_first_open_day_of_the_next() -> None:
    # Autumn term opens Wednesday 2 September with two INSET days: first open day Friday 4th.
    release = release_time(SCHOOL, at(2026, 7, 17, 16))
    assert release.at == at(2026, 9, 4, 7, 30)
    assert release.recipient is Recipient.KEY_ADULTS
    assert (
        "the weekdays from Monday 20 July 2026 to Friday 28 August 2026 are school holidays"
    ) in release.reason
    assert "Monday 31 August 2026 is a bank holiday" in release.reason
    assert (
        "the weekdays from Wednesday 2 September 2026 to Thursday 3 September 2026 are closed"
    ) in release.reason


def test_half_term_and_christmas_hold() -> None:
    assert release_time(SCHOOL, at(2026, 10, 30, 17)).at == at(2026, 11, 9, 7, 30)
    assert release_time(SCHOOL, at(2026, 12, 18, 16)).at == at(2027, 1, 4, 7, 30)


def test_first_day_of_term_is_open_last_day_too() -> None:
    assert is_open_day(SCHOOL, date(2026, 6, 1))
    assert is_open_day(SCHOOL, date(2026, 7, 17))
    assert not is_open_day(SCHOOL, date(2026, 7, 20))
    assert not is_open_day(SCHOOL, date(2026, 9, 2))  # INSET
    assert not is_open_day(SCHOOL, date(2026, 11, 21))  # Saturday in term


def test_spans_of_another_calendar_are_ignored() -> None:
    stray = CalendarSpan("other", date(2026, 7, 20), date(2026, 8, 28), TERM)
    cal = replace(SCHOOL, spans=(*SCHOOL.spans, stray))
    assert not is_open_day(cal, date(2026, 7, 21))
    assert release_time(cal, at(2026, 7, 17, 16)).at == at(2026, 9, 4, 7, 30)


# --- holiday policy --------------------------------------------------------------------------


def test_holiday_contact_gets_the_first_holiday_weekday() -> None:
    release = release_time(SCHOOL_CONTACT, at(2026, 7, 17, 16))
    assert release.at == at(2026, 7, 20, 7, 30)
    assert release.recipient is Recipient.HOLIDAY_CONTACT
    assert "to the holiday contact" in release.reason
    assert "Monday 20 July 2026 is a school holiday" in release.reason


def test_holiday_contact_at_once_during_a_holiday_weekday() -> None:
    t = at(2026, 8, 12, 11, 5)
    release = release_time(SCHOOL_CONTACT, t)
    assert release == Release(at=t, recipient=Recipient.HOLIDAY_CONTACT, reason=release.reason)
    assert "released at once to the holiday contact" in release.reason


def test_holiday_contact_outside_the_window_of_a_holiday_weekday() -> None:
    assert release_time(SCHOOL_CONTACT, at(2026, 8, 12, 6)).at == at(2026, 8, 12, 7, 30)
    assert release_time(SCHOOL_CONTACT, at(2026, 8, 12, 15, 30)).at == at(2026, 8, 13, 7, 30)


def test_holiday_contact_waits_over_a_bank_holiday() -> None:
    release = release_time(SCHOOL_CONTACT, at(2026, 8, 28, 18))
    assert release.at == at(2026, 9, 1, 7, 30)
    assert release.recipient is Recipient.HOLIDAY_CONTACT


def test_holiday_contact_for_an_inset_day() -> None:
    release = release_time(SCHOOL_CONTACT, at(2026, 11, 26, 18))
    assert release.at == at(2026, 11, 27, 7, 30)
    assert release.recipient is Recipient.HOLIDAY_CONTACT


def test_holiday_contact_policy_in_term_still_goes_to_key_adults() -> None:
    release = release_time(SCHOOL_CONTACT, at(2026, 11, 21, 23, 10))
    assert release.at == at(2026, 11, 23, 7, 30)
    assert release.recipient is Recipient.KEY_ADULTS


def test_hold_during_a_holiday_waits_for_term() -> None:
    release = release_time(SCHOOL, at(2026, 8, 12, 11, 5))
    assert release.at == at(2026, 9, 4, 7, 30)
    assert release.recipient is Recipient.KEY_ADULTS


def test_no_future_term_with_hold_raises_for_review() -> None:
    with pytest.raises(NoReleaseDay) as caught:
        release_time(SCHOOL, at(2028, 7, 21, 12))
    assert isinstance(caught.value, ValueError)
    message = str(caught.value)
    assert "no open day within 400 days" in message
    assert "last term ended on Thursday 20 July 2028" in message
    assert "review" in message


def test_no_terms_at_all_raises() -> None:
    with pytest.raises(NoReleaseDay, match="no term spans"):
        release_time(make_calendar(terms=(), closed=()), at(2026, 11, 23, 10))


def test_term_beyond_the_horizon_raises() -> None:
    far = date(2026, 1, 5) + timedelta(days=HORIZON_DAYS + 10)
    cal = make_calendar(terms=((far, far + timedelta(days=60)),), closed=())
    with pytest.raises(NoReleaseDay, match="none of its term days"):
        release_time(cal, at(2026, 1, 5, 10))


def test_no_future_term_with_holiday_contact_goes_to_the_contact() -> None:
    cal = make_calendar(policy=CONTACT)
    release = release_time(cal, at(2028, 7, 22, 12))
    assert release.recipient is Recipient.HOLIDAY_CONTACT
    assert release.at == at(2028, 7, 24, 7, 30)


# --- clocks and zones ------------------------------------------------------------------------


def test_march_clock_change() -> None:
    release = release_time(SCHOOL, at(2026, 3, 28, 23, 30))
    assert release.at == datetime(2026, 3, 30, 6, 30, tzinfo=UTC)
    assert release.at.isoformat() == "2026-03-30T07:30:00+01:00"


def test_october_clock_change() -> None:
    release = release_time(SCHOOL, at(2026, 10, 24, 23, 30))
    assert release.at == datetime(2026, 10, 26, 7, 30, tzinfo=UTC)
    assert release.at.isoformat() == "2026-10-26T07:30:00+00:00"


def test_reported_in_the_missing_hour_of_march() -> None:
    # 01:30 on 29 March 2026 never happened in London; read it as 01:30 GMT = 02:30 BST.
    release = release_time(SCHOOL, at(2026, 3, 29, 1, 30))
    assert release.at == datetime(2026, 3, 30, 6, 30, tzinfo=UTC)
    assert "at 02:30" in release.reason


def test_reported_in_the_repeated_hour_of_october() -> None:
    second = datetime(2026, 10, 25, 1, 30, fold=1, tzinfo=LONDON)
    assert second.utcoffset() == timedelta(0)
    assert release_time(SCHOOL, second).at == datetime(2026, 10, 26, 7, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("reported", "expected"),
    [
        # 06:45Z on 1 June is 07:45 BST: inside the window, at once.
        (datetime(2026, 6, 1, 6, 45, tzinfo=UTC), at(2026, 6, 1, 7, 45)),
        # 06:15Z is 07:15 BST: wait for 07:30 BST.
        (datetime(2026, 6, 1, 6, 15, tzinfo=UTC), at(2026, 6, 1, 7, 30)),
        # 23:30Z on Sunday 31 May is already Monday 00:30 in London.
        (datetime(2026, 5, 31, 23, 30, tzinfo=UTC), at(2026, 6, 1, 7, 30)),
        # Friday 22:00 in New York is Saturday 03:00 in London.
        (
            datetime(2026, 11, 20, 22, 0, tzinfo=timezone(timedelta(hours=-5))),
            at(2026, 11, 23, 7, 30),
        ),
        (
            datetime(2026, 11, 20, 22, 0, tzinfo=ZoneInfo("America/New_York")),
            at(2026, 11, 23, 7, 30),
        ),
        # 12:00+05:30 is 06:30 GMT: before dispatch.
        (
            datetime(2026, 11, 23, 12, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
            at(2026, 11, 23, 7, 30),
        ),
    ],
)
def test_reported_in_other_zones(reported: datetime, expected: datetime) -> None:
    release = release_time(SCHOOL, reported)
    assert release.at == expected
    assert release.at.tzinfo is LONDON


def test_naive_time_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware") as caught:
        release_time(SCHOOL, datetime(2026, 11, 23, 10, 0))
    assert not isinstance(caught.value, NoReleaseDay)


# --- early years -----------------------------------------------------------------------------


def test_weekdays_calendar_is_open_in_school_holidays() -> None:
    early = weekdays()
    assert release_time(early, at(2026, 8, 12, 11)).at == at(2026, 8, 12, 11)
    assert release_time(early, at(2026, 8, 14, 18)).at == at(2026, 8, 17, 7, 30)
    assert is_open_day(early, date(2026, 12, 23))
    assert not is_open_day(early, date(2026, 12, 25))
    assert not is_open_day(early, date(2026, 12, 26))


# --- the CLI line ----------------------------------------------------------------------------


def test_format_release() -> None:
    line = format_release(release_time(SCHOOL, at(2026, 11, 21, 23, 10)))
    assert line == (
        "2026-11-23T07:30:00+00:00 reported on Saturday 21 November 2026 at 23:10; "
        "Monday 23 November 2026 is the next open day; released at its dispatch "
        "time 07:30"
    )
    summer = format_release(release_time(SCHOOL, at(2026, 6, 5, 16)))
    assert summer.startswith("2026-06-08T07:30:00+01:00 ")


def test_reason_carries_no_setting_details() -> None:
    for t in (at(2026, 11, 21, 23, 10), at(2026, 7, 17, 16), at(2026, 11, 24, 10)):
        reason = release_time(SCHOOL_CONTACT, t).reason
        assert "Hilltop" not in reason and "TF3" not in reason and "URN" not in reason


# --- properties ------------------------------------------------------------------------------

ZONES = st.sampled_from(
    [
        UTC,
        LONDON,
        ZoneInfo("Europe/Paris"),
        ZoneInfo("America/New_York"),
        timezone(timedelta(hours=-9, minutes=-30)),
    ]
)
INSET_DAYS = st.lists(st.dates(date(2025, 9, 1), date(2028, 7, 1)), max_size=8)


@st.composite
def calendars(draw: st.DrawFn) -> SettingCalendar:
    insets = draw(INSET_DAYS)
    cal = make_calendar(
        nation=draw(st.sampled_from(list(Nation))),
        policy=draw(st.sampled_from(list(HolidayPolicy))),
        closed=tuple((d, d + timedelta(days=draw(st.integers(0, 4)))) for d in insets),
        dispatch_at=time(draw(st.integers(5, 9)), draw(st.sampled_from([0, 15, 30, 45]))),
        day_ends=time(draw(st.integers(13, 18)), draw(st.sampled_from([0, 30]))),
    )
    if draw(st.booleans()):
        return cal
    return replace(cal, setting=replace(cal.setting, calendar_id=WEEKDAYS_CALENDAR))


INSTANTS = st.datetimes(datetime(2025, 9, 1), datetime(2027, 6, 30), timezones=ZONES)


def _reference_open(cal: SettingCalendar, day: date) -> bool:
    """The rule read straight from docs/release-rule.md, independently of the module."""
    s = cal.setting
    bank = holidays.country_holidays(
        "GB",
        subdiv={"england": "ENG", "wales": "WLS", "scotland": "SCT", "northern_ireland": "NIR"}[
            s.nation.value
        ],
        years=day.year,
    )
    spans = [
        x
        for x in cal.spans
        if x.calendar_id == s.calendar_id and x.first_day <= day and day <= x.last_day
    ]
    in_term = s.calendar_id == WEEKDAYS_CALENDAR or any(x.kind is TERM for x in spans)
    return (
        in_term
        and day.weekday() < 5
        and day not in bank
        and not any(x.kind is CLOSED for x in spans)
    )


def _closed_weekday(cal: SettingCalendar, day: date) -> bool:
    return (
        day.weekday() < 5
        and day not in bank_holidays(cal.setting.nation, day.year)
        and not _reference_open(cal, day)
    )


def _moments(cal: SettingCalendar, t: datetime, until: datetime, kind: str) -> list[datetime]:
    """Every instant in [t, until) at which a day of this kind could take the notice."""
    s, found, day = cal.setting, [], t.astimezone(LONDON).date()
    test = _reference_open if kind == "open" else _closed_weekday
    while datetime.combine(day, time(0), tzinfo=LONDON) < until:
        if test(cal, day):
            dispatch = datetime.combine(day, s.dispatch_at, tzinfo=LONDON)
            ends = datetime.combine(day, s.day_ends, tzinfo=LONDON)
            if dispatch <= t < ends:
                found.append(t)
            elif t < dispatch < until:
                found.append(dispatch)
        day += timedelta(days=1)
    return [m for m in found if m < until]


@settings(max_examples=300, deadline=None, database=None)
@given(cal=calendars(), t=INSTANTS)
def test_release_properties(cal: SettingCalendar, t: datetime) -> None:
    release = release_time(cal, t)
    s, day = cal.setting, release.at.date()
    assert release.at.tzinfo is LONDON
    assert release.at >= t
    if release.at != t:
        assert release.at == datetime.combine(day, s.dispatch_at, tzinfo=LONDON)
    if release.recipient is Recipient.KEY_ADULTS:
        assert _reference_open(cal, day)
    else:
        assert s.holiday_policy is CONTACT and _closed_weekday(cal, day)
    # Nothing that could have taken the notice comes strictly before the release.
    assert _moments(cal, t, release.at, "open") == []
    if s.holiday_policy is CONTACT:
        assert _moments(cal, t, release.at, "closed") == []


@settings(max_examples=150, deadline=None, database=None)
@given(cal=calendars(), t=INSTANTS, zone=ZONES)
def test_release_depends_on_the_instant_only(
    cal: SettingCalendar, t: datetime, zone: ZoneInfo | timezone
) -> None:
    first = release_time(cal, t)
    assert release_time(cal, t.astimezone(zone)) == first
    # At its own release moment a notice goes at once, to the same recipient.
    again = release_time(cal, first.at)
    assert (again.at, again.recipient) == (first.at, first.recipient)
