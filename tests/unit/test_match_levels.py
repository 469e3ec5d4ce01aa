"""Each comparison level on its own: the slips real records carry, and properties that hold
for any name or date."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from encompass.domain.matching.dates import DobLevel, compare_dob
from encompass.domain.matching.names import (
    FamilyLevel,
    GivenLevel,
    compare_family,
    compare_given,
    name_tokens,
)
from encompass.domain.matching.postcodes import PostcodeLevel, compare_postcode


def given_level(a: str, b: str) -> GivenLevel:
    return GivenLevel(compare_given(name_tokens(a), name_tokens(b)).level)


def family_level(a: str, b: str) -> FamilyLevel:
    return FamilyLevel(compare_family(name_tokens(a), name_tokens(b)).level)


@pytest.mark.parametrize(
    ("reported", "roster"),
    [
        ("aprl", "april"),
        ("ammy", "amy"),
        ("Katel Byn", "Katelyn"),
        ("Lachlq-Njohn", "Lachlan-John"),
        ("Madelne", "Madeline"),
        ("Olvier", "Oliver"),
    ],
)
def test_typing_slips_in_given_names(reported: str, roster: str) -> None:
    assert given_level(reported, roster) == GivenLevel.FUZZY


@pytest.mark.parametrize(
    ("reported", "roster"), [("Ava", "Eva"), ("Eli", "Elia"), ("Joe", "Jon"), ("Jack", "Jake")]
)
def test_short_names_that_are_names_of_their_own_are_not_slips(reported: str, roster: str) -> None:
    assert given_level(reported, roster) not in (
        GivenLevel.EXACT,
        GivenLevel.MIDDLE,
        GivenLevel.FUZZY,
    )


@pytest.mark.parametrize(
    ("reported", "roster"),
    [("Webbm", "Webb"), ("Hoep", "Hope"), ("Rei", "Reid"), ("Mcacrthy", "McCarthy")],
)
def test_typing_slips_in_family_names(reported: str, roster: str) -> None:
    assert family_level(reported, roster) == FamilyLevel.FUZZY


def test_missing_values_are_their_own_level() -> None:
    assert given_level("", "Jack") == GivenLevel.MISSING
    assert family_level("Smith", "") == FamilyLevel.MISSING
    assert compare_dob(None, date(2015, 3, 7))[0] == DobLevel.MISSING
    assert compare_postcode("", "LS62QT")[0] == PostcodeLevel.MISSING


def test_postcode_levels() -> None:
    assert compare_postcode("LS62QT", "LS62QF")[0] == PostcodeLevel.TYPO
    assert compare_postcode("LS62QT", "LS69ZZ")[0] == PostcodeLevel.OUTWARD
    assert compare_postcode("LS62QT", "M145RR")[0] == PostcodeLevel.DIFFERENT


NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=12)


@given(NAMES)
def test_a_name_agrees_exactly_with_itself(name: str) -> None:
    assert given_level(name, name) == GivenLevel.EXACT
    assert family_level(name, name) == FamilyLevel.EXACT


@given(NAMES, st.integers(0, 10))
def test_two_letters_swapped_in_a_long_family_name_is_never_another_family(
    name: str, at: int
) -> None:
    assume(len(name) >= 5 and at < len(name) - 1 and name[at] != name[at + 1])
    slipped = name[:at] + name[at + 1] + name[at] + name[at + 2 :]
    assert family_level(slipped, name) != FamilyLevel.DIFFERENT


@given(st.dates(min_value=date(2005, 1, 1), max_value=date(2024, 12, 31)))
def test_day_and_month_transposed_is_found_whenever_it_is_a_date(d: date) -> None:
    assume(d.day <= 12 and d.day != d.month)
    assert compare_dob(date(d.year, d.day, d.month), d)[0] == DobLevel.TRANSPOSED


@pytest.mark.parametrize(
    ("reported", "roster", "level"),
    [
        ("Alfred", "Alfred", GivenLevel.EXACT),
        ("Alfred James", "Alfred", GivenLevel.MIDDLE),
        ("Alfie", "Alfred", GivenLevel.NICKNAME),
        ("Mohammed", "Muhammad", GivenLevel.VARIANT),
        ("James", "Alfred James", GivenLevel.BY_MIDDLE),
        ("Olvier", "Oliver", GivenLevel.FUZZY),
        ("A", "Alfred", GivenLevel.INITIAL),
        ("Grace", "Alfred", GivenLevel.DIFFERENT),
        ("", "Alfred", GivenLevel.MISSING),
    ],
)
def test_every_given_name_level(reported: str, roster: str, level: GivenLevel) -> None:
    assert given_level(reported, roster) == level


@pytest.mark.parametrize(
    ("reported", "roster", "level"),
    [
        ("Okonkwo", "Okonkwo", FamilyLevel.EXACT),
        ("Smith", "Smith-Jones", FamilyLevel.PART),
        ("Jones Smith", "Smith-Jones", FamilyLevel.PART),
        ("Mohammed", "Muhammad", FamilyLevel.VARIANT),
        ("Okonkow", "Okonkwo", FamilyLevel.FUZZY),
        ("Stephenson", "Stevenson", FamilyLevel.VARIANT),  # sounds alike (Metaphone)
        ("Macdonald", "Mcdonald", FamilyLevel.FUZZY),  # one edit: a slip first
        ("Hughes", "Okonkwo", FamilyLevel.DIFFERENT),
        ("", "Okonkwo", FamilyLevel.MISSING),
    ],
)
def test_every_family_name_level(reported: str, roster: str, level: FamilyLevel) -> None:
    assert family_level(reported, roster) == level


@pytest.mark.parametrize(
    ("reported", "level"),
    [
        (date(2015, 3, 7), DobLevel.EXACT),
        (date(2015, 7, 3), DobLevel.TRANSPOSED),
        (date(2015, 3, 8), DobLevel.ONE_DIGIT),
        (date(2013, 3, 7), DobLevel.ONE_DIGIT),
        (date(2015, 3, 17), DobLevel.ONE_DIGIT),
        (date(2012, 9, 1), DobLevel.DIFFERENT),
        (None, DobLevel.MISSING),
    ],
)
def test_every_date_of_birth_level(reported: date | None, level: DobLevel) -> None:
    assert compare_dob(reported, date(2015, 3, 7))[0] == level


@pytest.mark.parametrize(
    ("reported", "level"),
    [
        ("LS62QT", PostcodeLevel.EXACT),
        ("LS62QY", PostcodeLevel.TYPO),
        ("LS62TQ", PostcodeLevel.TYPO),
        ("LS69ZZ", PostcodeLevel.OUTWARD),
        ("M145RR", PostcodeLevel.DIFFERENT),
        ("", PostcodeLevel.MISSING),
    ],
)
def test_every_postcode_level(reported: str, level: PostcodeLevel) -> None:
    assert compare_postcode(reported, "LS62QT")[0] == level


@pytest.mark.parametrize(("reported", "roster"), [("Stephens", "Stevens"), ("Philips", "Fillips")])
def test_family_names_that_sound_alike_keep_their_first_letter(reported: str, roster: str) -> None:
    expected = FamilyLevel.VARIANT if reported[0] == roster[0] else FamilyLevel.DIFFERENT
    assert family_level(reported, roster) == expected
