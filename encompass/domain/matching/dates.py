"""Dates of birth: exact, day and month transposed, or one digit slipped.

Police and school systems disagree on dates in a few typical ways: a US-style date entry swaps
day and month (03/07 for 07/03), a finger slips on one digit (2014 for 2015, 13 for 18). Any
other difference is a different date: we do not treat "a few days apart" as agreement, since
siblings and cousins at one address are born a year or two apart, never a digit apart in
every field.
"""

from __future__ import annotations

from datetime import date
from enum import IntEnum


class DobLevel(IntEnum):
    """How a reported date of birth agrees with a roster's, best first."""

    EXACT = 0
    TRANSPOSED = 1  # day and month swapped
    ONE_DIGIT = 2  # one digit of DD/MM/YYYY differs, or two adjacent digits swapped
    DIFFERENT = 3
    MISSING = 4


_FIELD = ("day", "day", "month", "month", "year", "year", "year", "year")


def _digits(d: date) -> str:
    return f"{d.day:02d}{d.month:02d}{d.year:04d}"


def compare_dob(query: date | None, roster: date | None) -> tuple[DobLevel, str]:
    """The agreement level of two dates of birth and the reviewer's explanation."""
    if query is None or roster is None:
        return DobLevel.MISSING, "date of birth: missing"
    if query == roster:
        return DobLevel.EXACT, "date of birth: exact"
    if query.year == roster.year and query.day == roster.month and query.month == roster.day:
        return DobLevel.TRANSPOSED, "date of birth: day and month transposed"
    if (query.day != roster.day) + (query.month != roster.month) + (query.year != roster.year) > 1:
        return DobLevel.DIFFERENT, "date of birth: differs"  # a slip changes only one field
    a, b = _digits(query), _digits(roster)
    diff = [i for i in range(8) if a[i] != b[i]]
    if len(diff) == 1:
        return DobLevel.ONE_DIGIT, f"date of birth: one digit differs ({_FIELD[diff[0]]})"
    if (
        len(diff) == 2
        and diff[1] == diff[0] + 1
        and _FIELD[diff[0]] == _FIELD[diff[1]]
        and a[diff[0]] == b[diff[1]]
        and a[diff[1]] == b[diff[0]]
    ):
        return DobLevel.ONE_DIGIT, f"date of birth: two digits swapped ({_FIELD[diff[0]]})"
    return DobLevel.DIFFERENT, "date of birth: differs"
