"""The matcher, one error type at a time: a case that must match, and a near miss that must not.

Each case runs through a small ``RosterIndex`` (blocking included) whose background pupils
share the child's street, birthday or surname, so blocking and the runner-up rule are
exercised too.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from encompass.domain.directory import Pupil
from encompass.domain.match import (
    ChildQuery,
    Decision,
    MatchResult,
    RosterIndex,
    decide,
    normalise_name,
    normalise_postcode,
)
from encompass.domain.matching.decision import STRONG_WEIGHT, blockers
from encompass.domain.matching.index import prepare_query
from encompass.domain.matching.scoring import TermFrequencies, score

DOB = date(2015, 3, 7)
ALFRED = Pupil("PRI-LS6-1", None, "Alfred", "Okonkwo", DOB, "LS6 2QT", "M")
BACKGROUND = [
    Pupil("PRI-LS6-1", None, "Chidi", "Okonkwo", date(2017, 9, 1), "LS6 2QT", "M"),  # sibling
    Pupil("PRI-LS6-1", None, "Grace", "Hughes", DOB, "LS6 2QU", "F"),  # neighbour, same day
    Pupil("PRI-M14-2", None, "Alfred", "Okonkwo", date(2013, 11, 20), "M14 5RR", "M"),
    Pupil("PRI-LS6-2", None, "Margaret", "Smith-Jones", date(2016, 1, 20), "LS6 3AB", "F"),
    Pupil("PRI-B23-1", None, "Muhammad", "Khan", date(2014, 5, 2), "B23 6TH", "M"),
    Pupil("PRI-LS6-2", None, "Zoë", "Brontë", date(2016, 8, 30), "LS6 3AD", "F"),
    Pupil("PRI-LS6-2", None, "Ellie", "Walsh", date(2016, 4, 14), "LS6 1EE", "F"),
]


DIRECTORY = [
    "LS6 2QT",
    "LS6 2QU",
    "LS6 3AB",
    "LS6 3AD",
    "LS6 1EE",
    "LS6 9ZZ",
    "M14 5RR",
    "B23 6TH",
    "NE1 4XF",
    "SW1A 1AA",
    "EX1 1AA",
]  # real postcodes, as the ONSPD lists


def run(*pupils: Pupil, **query: object) -> MatchResult:
    fields: dict[str, object] = {
        "ref": "r",
        "given_name": "Alfred",
        "family_name": "Okonkwo",
        "date_of_birth": DOB,
        "postcode": "LS6 2QT",
    }
    fields.update(query)
    roster = RosterIndex.from_pupils([*BACKGROUND, *(pupils or (ALFRED,))], DIRECTORY)
    return roster.match(ChildQuery(**fields))  # type: ignore[arg-type]


def matched(result: MatchResult, *settings: str) -> bool:
    return result.decision == Decision.MATCH and set(result.setting_ids) == set(settings)


def said(result: MatchResult, words: str) -> bool:
    return any(words in reason for reason in result.reasons)


def test_exact_match_carries_score_and_reasons() -> None:
    result = run()
    assert matched(result, "PRI-LS6-1")
    assert result.score > 0.999
    assert said(result, "given name: exact") and said(result, "postcode: exact")
    assert [c.pupil for c in result.candidates] == [ALFRED]


# -- names --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("roster_name", "reported"), [("Alfred", "Alfie"), ("Margaret", "Maisie"), ("Oliver", "Ollie")]
)
def test_diminutive_matches(roster_name: str, reported: str) -> None:
    pupil = Pupil("PRI-LS6-1", None, roster_name, "Okonkwo", DOB, "LS6 2QT", "M")
    result = run(pupil, given_name=reported)
    assert matched(result, "PRI-LS6-1")
    assert said(result, "short form")


def test_diminutive_at_another_address_is_no_match() -> None:
    result = run(given_name="Alfie", postcode="NE1 4XF")
    assert result.decision != Decision.MATCH


def test_either_part_of_a_double_barrelled_name_matches() -> None:
    pupil = Pupil("PRI-LS6-1", None, "Alfred", "Okonkwo-Smith", DOB, "LS6 2QT", "M")
    first = run(pupil, family_name="Okonkwo")
    second = run(pupil, family_name="Smith")
    assert matched(first, "PRI-LS6-1") and said(first, "first part of a double-barrelled")
    assert matched(second, "PRI-LS6-1") and said(second, "second part of a double-barrelled")


def test_part_of_a_double_barrelled_name_with_another_birthday_is_no_match() -> None:
    result = run(
        family_name="Jones",
        given_name="Margaret",
        date_of_birth=date(2012, 6, 2),
        postcode="LS6 3AB",
    )
    assert result.decision != Decision.MATCH


def test_given_and_family_name_swapped_matches() -> None:
    result = run(given_name="Okonkwo", family_name="Alfred")
    assert matched(result, "PRI-LS6-1")
    assert said(result, "given and family name swapped")


def test_swapped_names_with_another_birthday_is_no_match() -> None:
    result = run(given_name="Okonkwo", family_name="Alfred", date_of_birth=date(2011, 1, 30))
    assert result.decision != Decision.MATCH


def test_a_middle_name_on_one_side_matches() -> None:
    result = run(given_name="Alfred James")
    assert matched(result, "PRI-LS6-1") and said(result, "middle name differs or missing")


def test_known_by_the_middle_name_goes_to_review() -> None:
    # A twin may be named after the other's middle name: a person decides.
    pupil = Pupil("PRI-LS6-1", None, "Alfred James", "Okonkwo", DOB, "LS6 2QT", "M")
    result = run(pupil, given_name="James")
    assert result.decision == Decision.REVIEW and said(result, "known by a middle name")


def test_a_middle_name_alone_is_not_a_sibling() -> None:
    result = run(given_name="Chidi", date_of_birth=DOB)  # the sibling's name, Alfred's birthday
    assert result.decision != Decision.MATCH


def test_accents_and_transliterations_match() -> None:
    zoe = run(
        Pupil("PRI-LS6-2", None, "Zoë", "Brontë", date(2016, 8, 30), "LS6 3AD", "F"),
        given_name="ZOE",
        family_name="Bronte",
        date_of_birth=date(2016, 8, 30),
        postcode="ls63ad",
    )
    assert matched(zoe, "PRI-LS6-2") and said(zoe, "given name: exact")
    mo = run(
        Pupil("PRI-B23-1", None, "Muhammad", "Khan", date(2014, 5, 2), "B23 6TH", "M"),
        given_name="Mohammed",
        family_name="Khan",
        date_of_birth=date(2014, 5, 2),
        postcode="B23 6TH",
    )
    assert matched(mo, "PRI-B23-1") and said(mo, "transliteration")


def test_a_different_name_with_the_same_consonants_is_no_match() -> None:
    result = run(
        given_name="Mahmoud", family_name="Khan", date_of_birth=date(2014, 5, 2), postcode="B23 6TH"
    )
    assert result.decision != Decision.MATCH


# -- dates --------------------------------------------------------------------------------
def test_day_and_month_transposed_matches() -> None:
    result = run(date_of_birth=date(2015, 7, 3))
    assert matched(result, "PRI-LS6-1")
    assert said(result, "date of birth: day and month transposed")


def test_one_digit_slip_in_the_date_matches() -> None:
    result = run(date_of_birth=date(2015, 3, 17))
    assert matched(result, "PRI-LS6-1")
    assert said(result, "date of birth: one digit differs (day)")


def test_a_slipped_date_at_another_address_is_no_match() -> None:
    result = run(date_of_birth=date(2015, 3, 17), postcode="NE1 4XF")
    assert result.decision != Decision.MATCH


def test_transposed_date_with_another_given_name_is_no_match() -> None:
    result = run(given_name="Ngozi", date_of_birth=date(2015, 7, 3), gender="F")
    assert result.decision != Decision.MATCH


# -- postcodes ----------------------------------------------------------------------------
def test_postcode_typo_matches() -> None:
    result = run(postcode="LS6 2QF")  # no such postcode: a slip
    assert matched(result, "PRI-LS6-1")
    assert said(result, "postcode: one character differs (the reported one does not exist)")


def test_a_neighbouring_real_postcode_is_not_a_typo() -> None:
    result = run(postcode="LS6 2QU")  # Grace Hughes lives there: a real address, not a slip
    assert result.decision == Decision.REVIEW
    assert said(result, "neighbouring address")


def test_without_a_postcode_directory_a_slip_may_be_a_neighbour() -> None:
    roster = RosterIndex.from_pupils([*BACKGROUND, ALFRED])
    result = roster.match(ChildQuery("r", "Alfred", "Okonkwo", DOB, "LS6 2QF"))
    assert result.decision == Decision.REVIEW and said(result, "a neighbour?")


def test_moved_within_the_district_goes_to_review_and_moved_away_never_matches() -> None:
    nearby = run(postcode="LS6 9ZZ")
    assert nearby.decision == Decision.REVIEW
    assert said(nearby, "same outward code")
    assert run(postcode="SW1A 1AA").decision != Decision.MATCH


def test_moved_family_matches_on_its_upn() -> None:
    pupil = Pupil("PRI-LS6-1", "B801200005001", "Alfred", "Okonkwo", DOB, "LS6 2QT", "M")
    result = run(pupil, postcode="LS6 9ZZ", upn="B801200005001")
    assert matched(result, "PRI-LS6-1") and said(result, "UPN: exact")


# -- UPN ----------------------------------------------------------------------------------
def test_a_conflicting_upn_sends_the_child_to_review() -> None:
    pupil = Pupil("PRI-LS6-1", "B801200005001", "Alfred", "Okonkwo", DOB, "LS6 2QT", "M")
    result = run(pupil, upn="Q801200005002")
    assert result.decision == Decision.REVIEW
    assert said(result, "UPN conflicts")


def test_an_invalid_reported_upn_is_ignored() -> None:
    pupil = Pupil("PRI-LS6-1", "B801200005001", "Alfred", "Okonkwo", DOB, "LS6 2QT", "M")
    result = run(pupil, upn="A801200005001")  # wrong check letter
    assert matched(result, "PRI-LS6-1") and said(result, "fails its check letter")


# -- families -----------------------------------------------------------------------------
TWIN = Pupil("PRI-LS6-1", None, "Albert", "Okonkwo", DOB, "LS6 2QT", "M")


def test_twins_are_never_merged() -> None:
    alfred = run(ALFRED, TWIN)
    albert = run(ALFRED, TWIN, given_name="Albert")
    assert matched(alfred, "PRI-LS6-1") and [c.pupil for c in alfred.candidates] == [ALFRED]
    assert matched(albert, "PRI-LS6-1") and [c.pupil for c in albert.candidates] == [TWIN]


def test_a_twin_reported_by_a_short_form_goes_to_review() -> None:
    result = run(ALFRED, TWIN, given_name="Alfie")
    assert result.decision == Decision.REVIEW
    assert said(result, "twin")


def test_an_absent_twin_is_not_matched_to_the_enrolled_one() -> None:
    result = run(given_name="Amara", gender="F")  # Alfred's twin sister, on no roster
    assert result.decision != Decision.MATCH


def test_a_sibling_is_not_matched() -> None:
    result = run(given_name="Adaeze", date_of_birth=date(2019, 2, 11), gender="F")
    assert result.decision == Decision.NONE


def test_same_name_and_birthday_at_another_postcode_is_no_match() -> None:
    result = run(postcode="NE1 4XF")
    assert result.decision == Decision.REVIEW
    assert said(result, "only name and date of birth agree")


# -- two enrolments -----------------------------------------------------------------------
def test_a_child_on_two_rosters_is_matched_to_both() -> None:
    nursery = Pupil("EY-LS6-0", None, "Alfred", "Okonkwo", DOB, "LS6 2QT", "M")
    result = run(ALFRED, nursery)
    assert matched(result, "PRI-LS6-1", "EY-LS6-0")
    assert said(result, "also enrolled at EY-LS6-0")


def test_two_records_with_conflicting_upns_are_not_one_child() -> None:
    school = Pupil("PRI-LS6-1", "B801200005001", "Alfred", "Okonkwo", DOB, "LS6 2QT", "M")
    other = Pupil("AP-LS6", "Q801200005002", "Alfred", "Okonkwo", DOB, "LS6 2QT", "M")
    assert run(school, other).decision == Decision.REVIEW


# -- the model ----------------------------------------------------------------------------
def test_smith_counts_for_less_than_okonkwo() -> None:
    frequencies = TermFrequencies(
        given={"jack": 1_500}, family={"smith": 11_500, "okonkwo": 3}, population=1_000_000
    )
    query = prepare_query(ChildQuery("r", "Jack", "Smith", DOB, "NE1 4XF"))
    smith = score(query, Pupil("S", None, "Jack", "Smith", DOB, "LS6 2QT", "M"), frequencies)
    query = prepare_query(ChildQuery("r", "Jack", "Okonkwo", DOB, "NE1 4XF"))
    okonkwo = score(query, Pupil("S", None, "Jack", "Okonkwo", DOB, "LS6 2QT", "M"), frequencies)
    assert smith is not None and okonkwo is not None
    assert okonkwo.weight > smith.weight + 5


def test_term_frequencies_come_from_a_large_roster() -> None:
    roster = [
        Pupil(
            f"S{i % 50}",
            None,
            "Jack" if i % 2 else "Amara",
            "Smith" if i % 3 else f"Family{i}",
            date(2010 + i % 8, 1 + i % 12, 1 + i % 28),
            "LS6 2QT",
            "M",
        )
        for i in range(12_000)
    ]
    frequencies = RosterIndex.from_pupils(roster).frequencies
    assert frequencies.family_u("smith") > 0.6 > frequencies.family_u("family3")
    assert frequencies.given_u("jack") == pytest.approx(0.5)


def test_decide_without_an_index_keeps_working() -> None:
    result = decide(ChildQuery("r", "Alfie", "Okonkwo", DOB, "LS6 2QT"), [ALFRED, TWIN])
    assert result.decision == Decision.REVIEW  # a twin is there and "Alfie" is a short form
    assert (
        decide(ChildQuery("r", "Alfred", "Okonkwo", DOB, "LS6 2QT"), []).decision == Decision.NONE
    )


def test_normalisers() -> None:
    assert normalise_name("Zoë O'Brien-Smith") == "zoeobriensmith"
    assert normalise_name("Łukasz Dąbrowski") == "lukaszdabrowski"
    assert normalise_postcode(" ls6 2qt ") == "LS62QT"


def test_none_carries_no_pupil() -> None:
    result = run(
        given_name="Nobody", family_name="Atall", date_of_birth=date(2009, 9, 9), postcode="EX1 1AA"
    )
    assert result.decision == Decision.NONE and result.candidates == ()


def test_a_namesake_at_another_school_in_the_district_is_not_a_second_enrolment() -> None:
    namesake = Pupil("PRI-LS6-2", None, "Alfred", "Okonkwo", DOB, "LS6 9ZZ", "M")
    result = run(ALFRED, namesake)
    assert result.decision == Decision.REVIEW
    assert said(result, "another child scores close")


# -- the error budget: one difference in name or date, never two --------------------------
SOPHIE = Pupil("PRI-LS6-1", None, "Sophie", "Brown", date(2017, 1, 5), "LS6 2QT", "F")


def test_two_independent_slips_go_to_review() -> None:
    # A slip in the family name and the day and month transposed: perhaps another child.
    result = run(SOPHIE, given_name="Sophia", family_name="Browne", date_of_birth=date(2017, 5, 1))
    assert result.decision == Decision.REVIEW
    assert said(result, "2 independent differences in name and date of birth")
    assert result.candidates and result.candidates[0].pupil == SOPHIE


def test_one_slip_alone_still_matches() -> None:
    assert matched(
        run(SOPHIE, given_name="Sophie", family_name="Browne", date_of_birth=date(2017, 1, 5)),
        "PRI-LS6-1",
    )
    assert matched(
        run(SOPHIE, given_name="Sophie", family_name="Brown", date_of_birth=date(2017, 5, 1)),
        "PRI-LS6-1",
    )


def test_a_typing_slip_in_the_given_name_alone_matches() -> None:
    assert matched(run(given_name="Alfrde"), "PRI-LS6-1")


def test_a_missing_given_name_is_neutral_when_the_rest_agrees() -> None:
    assert matched(run(given_name=""), "PRI-LS6-1")
    # ...but not with a second difference as well
    assert run(given_name="", date_of_birth=date(2015, 7, 3)).decision == Decision.REVIEW


# -- missing values and another date: evidence taken away is not an error ------------------
def test_a_missing_given_name_with_a_family_slip_matches_when_the_rest_is_strong() -> None:
    assert matched(run(given_name="", family_name="Okonkow"), "PRI-LS6-1")


def _blockers(weight: float, **query: object) -> list[str]:
    """Why the candidate ALFRED may not be matched, its weight set to ``weight`` bits (as a
    large roster's prior and its fitted model would make it)."""
    fields: dict[str, object] = {
        "ref": "r",
        "given_name": "Alfred",
        "family_name": "Okonkwo",
        "date_of_birth": DOB,
        "postcode": "LS6 2QT",
    }
    fields.update(query)
    scored = score(prepare_query(ChildQuery(**fields)), ALFRED)  # type: ignore[arg-type]
    assert scored is not None
    return blockers(replace(scored, weight=weight))


def test_a_missing_date_with_a_name_slip_matches_when_the_rest_is_strong() -> None:
    assert _blockers(STRONG_WEIGHT, given_name="Alfrde", date_of_birth=None) == []
    assert _blockers(STRONG_WEIGHT - 0.1, given_name="Alfrde", date_of_birth=None)
    # ... never at another address
    assert _blockers(40.0, given_name="Alfrde", date_of_birth=None, postcode="NE1 4XF")


def test_both_names_missing_never_match() -> None:
    result = run(given_name="", family_name="")
    assert result.decision == Decision.REVIEW
    assert said(result, "independent differences")


def test_a_missing_name_with_a_slipped_date_is_a_sibling_as_often() -> None:
    # a year apart at one address under one family name: perhaps a brother
    result = run(given_name="", date_of_birth=date(2013, 3, 7))
    assert result.decision == Decision.REVIEW


def test_another_date_with_exact_names_at_the_same_address_matches() -> None:
    assert _blockers(STRONG_WEIGHT, date_of_birth=date(2014, 11, 23)) == []
    assert _blockers(STRONG_WEIGHT - 0.1, date_of_birth=date(2014, 11, 23))
    assert _blockers(40.0, date_of_birth=date(2014, 11, 23), given_name="Alfrde")
    assert _blockers(40.0, date_of_birth=date(2014, 11, 23), family_name="Okonkow")


def test_another_date_with_a_name_slip_or_another_address_goes_to_review() -> None:
    assert run(given_name="Alfrde", date_of_birth=date(2014, 11, 23)).decision == Decision.REVIEW
    assert run(postcode="NE1 4XF", date_of_birth=date(2014, 11, 23)).decision != Decision.MATCH
