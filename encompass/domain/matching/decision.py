"""From scored candidates to a decision: match, review or none, with the reasons.

The weight ranks the candidates; these rules decide, because a false match sends a family's
abuse record to the wrong school. A candidate is matched automatically only when

* its weight reaches ``MATCH_WEIGHT``;
* no valid UPN conflicts;
* the given name is not another name (a twin), nor known only by a middle name or an
  initial, and the date of birth is not another date;
* at most one difference in given name, family name and date of birth is an error (a typing
  slip, a missing value, a transposed or slipped date, another family name); a name's usual
  forms (a middle name, a diminutive, a transliteration, one part of a double-barrelled name)
  are not errors. Two independent errors go to review, unless they are one slip in each name
  of a record whose date of birth and postcode agree exactly (see ``defects``);
* the gender does not conflict (boy and girl twins);
* more than name and date of birth agrees: the postcode (exactly, or a one-character slip when
  the reported postcode is known not to exist), the UPN, or a school hint;
* it beats every other candidate that is not the same child on another roster by
  ``MARGIN`` bits (the second-best is 2**MARGIN times less likely);
* when a twin is on the roster (same family name, date of birth and postcode, another given
  name), the given name agrees exactly or by a middle name: a diminutive is not enough.

The same child on a second roster (nursery wrap-around, dual registration) is matched too when
its record agrees with the matched one on given name (a middle name aside), family name, date
of birth and postcode (or carries the same UPN), with no conflicting UPN or gender: identified
through the first record, it need not clear the rules on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from encompass.domain.matching.dates import DobLevel
from encompass.domain.matching.model import Candidate, Decision, MatchResult
from encompass.domain.matching.names import (
    FamilyLevel,
    GivenLevel,
    compare_family,
    compare_given,
    name_tokens,
)
from encompass.domain.matching.postcodes import PostcodeLevel, compare_postcode, normalise_postcode
from encompass.domain.matching.scoring import PreparedQuery, Scored, normalise_gender
from encompass.domain.matching.upn import UpnLevel

MATCH_WEIGHT = 6.64
"""Bits (prior included) at or above which a candidate may be matched automatically
(probability 0.99). Chosen on held-out data, with the model fitted by EM: on the FEBRL data
sets 1-3 and the synthetic populations of seeds 1 and 2, no candidate that clears the other
rules below is a false match down to the review threshold (-4 bits); 6.64 keeps over 10 bits
in hand."""
REVIEW_WEIGHT = -4.0
"""Bits at or above which the best candidate goes to a person (probability 1 in 17): a child
whose date of birth and postcode agree with a record whose names both differ is shown."""
STRONG_WEIGHT = 10.0
"""Bits (probability 0.999) at or above which a record missing a value, or with only its
date of birth another date, may still be matched automatically (see ``blockers``)."""
MARGIN = 8.0
"""Bits by which the matched candidate must beat the next different child."""
SHOWN = 5
"""Candidates kept for the reviewer."""
PRUNE_BELOW = -4.0
"""Candidates that cannot reach this weight are not scored in full (nor shown): safe because a
match needs ``MATCH_WEIGHT`` and a margin of ``MARGIN`` over any other child, far above it,
and the review threshold is not below it."""
SHOWN_BELOW = 0.0
"""A reviewer also sees candidates up to this many bits below the review threshold."""

_NAME_OK_GIVEN = (GivenLevel.EXACT, GivenLevel.MIDDLE, GivenLevel.NICKNAME, GivenLevel.VARIANT)
_NAME_OK_FAMILY = (FamilyLevel.EXACT, FamilyLevel.PART, FamilyLevel.VARIANT, FamilyLevel.FUZZY)
_DOB_OK = (DobLevel.EXACT, DobLevel.TRANSPOSED, DobLevel.ONE_DIGIT)
# Agreements that are a name's usual forms, not an error: they cost nothing of the budget.
_GIVEN_FORMS = (GivenLevel.EXACT, GivenLevel.MIDDLE, GivenLevel.NICKNAME, GivenLevel.VARIANT)
_FAMILY_FORMS = (FamilyLevel.EXACT, FamilyLevel.PART, FamilyLevel.VARIANT)
# Never matched automatically on their own evidence: another given name at one address and
# birthday is a twin; a name known only by a middle name or an initial is a sibling as often.
_GIVEN_NEVER = (GivenLevel.BY_MIDDLE, GivenLevel.INITIAL, GivenLevel.DIFFERENT)
_FAMILY_NEVER: tuple[FamilyLevel, ...] = ()
_DOB_NEVER = (DobLevel.DIFFERENT,)
_PLACE_OK = (PostcodeLevel.EXACT, PostcodeLevel.TYPO, PostcodeLevel.OUTWARD)
OUTWARD_MAY_MATCH = False
"""A family that moved within its district agrees only on the outward code; so does another
child of the same name born the same day in that district, and nothing else tells them apart.
The matcher therefore sends such a child to review instead of matching on the outward code."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """The decision before it is dressed as a ``MatchResult``."""

    decision: str  # "match" | "review" | "none"
    matched: tuple[Scored, ...]
    shown: tuple[Scored, ...]
    reasons: tuple[str, ...]


def defects(best: Scored) -> list[str]:
    """The differences in the identifying fields (given name, family name, date of birth)
    that are errors rather than a name's usual forms: a typing slip, a missing value, a
    transposed or slipped date, another family name. One is what a real record carries; two
    independent ones (Sophia Browne 2017-05-01 for Sophie Brown 2017-01-05) are as likely to
    be another child, so a person checks."""
    found: list[str] = []
    if best.given not in _GIVEN_FORMS:
        found.append("given name missing" if best.given == GivenLevel.MISSING else "given name")
    if best.family not in _FAMILY_FORMS:
        found.append("family name missing" if best.family == FamilyLevel.MISSING else "family name")
    if best.dob != DobLevel.EXACT:
        found.append("date of birth missing" if best.dob == DobLevel.MISSING else "date of birth")
    return found


def _errors_within_budget(best: Scored, found: list[str]) -> bool:
    """Whether the differences in name and date of birth are few enough for an automatic
    match: one error, or one slip in each name when the date of birth agrees exactly. A
    missing value is not an error (it says nothing either way), but it takes away evidence:
    with one, the other error must be in a name, the postcode must agree exactly and the
    weight reach ``STRONG_WEIGHT``, and never both names missing (the date and the address
    are a twin's too). A slip in the date
    with a slip in a name (Sophia Browne 2017-05-01 for Sophie Brown 2017-01-05) is two
    errors: a person checks it."""
    errors = [d for d in found if not d.endswith("missing")]
    gaps = len(found) - len(errors)
    slipped_names = (
        errors == ["given name", "family name"]
        and best.given == GivenLevel.FUZZY
        and best.family == FamilyLevel.FUZZY
        and best.dob == DobLevel.EXACT
    )
    if len(errors) > 1 and not slipped_names:
        return False
    if best.given == GivenLevel.MISSING and best.family == FamilyLevel.MISSING:
        return False
    if gaps:
        # with a name missing, a date one slip away is a sibling's as often (a year apart)
        return (
            "date of birth" not in errors
            and best.postcode == PostcodeLevel.EXACT
            and best.weight >= STRONG_WEIGHT
        )
    return best.postcode == PostcodeLevel.EXACT  # two slips, one in each name


def _another_date_of_the_same_child(best: Scored, found: list[str]) -> bool:
    """Names exact (a middle name aside), the same address, only the date of birth another
    date: a sibling has another given name, so this is the child with a wrongly recorded
    date, provided the weight still reaches ``STRONG_WEIGHT``."""
    return (
        found == ["date of birth"]
        and best.dob == DobLevel.DIFFERENT
        and best.given in (GivenLevel.EXACT, GivenLevel.MIDDLE)
        and best.family == FamilyLevel.EXACT
        and best.postcode == PostcodeLevel.EXACT
        and best.weight >= STRONG_WEIGHT
    )


def blockers(best: Scored) -> list[str]:
    """Why this candidate, on its own, may not be matched automatically (empty: it may)."""
    why: list[str] = []
    if best.upn == UpnLevel.CONFLICT:
        why.append("a valid UPN conflicts: a person must check")
    if best.weight < MATCH_WEIGHT:
        why.append(
            f"match weight {best.weight:.1f} below the automatic threshold {MATCH_WEIGHT:.2f}"
        )
    if (
        best.upn == UpnLevel.EXACT
        and best.dob in _DOB_OK
        and (best.given in _NAME_OK_GIVEN or best.family in _NAME_OK_FAMILY)
    ):
        return why
    found = defects(best)
    if best.given in _GIVEN_NEVER or best.family in _FAMILY_NEVER:
        why.append("names do not agree well enough for an automatic match")
    if best.dob in _DOB_NEVER and not _another_date_of_the_same_child(best, found):
        why.append("date of birth does not agree")
    if len(found) > 1 and not best.hint and not _errors_within_budget(best, found):
        why.append(
            f"{len(found)} independent differences in name and date of birth "
            f"({', '.join(found)}): a person must check"
        )
    if best.gender_differs:
        why.append("gender differs: perhaps a twin or sibling of the other sex")
    place_ok = (
        best.postcode == PostcodeLevel.EXACT
        or (best.postcode == PostcodeLevel.TYPO and best.postcode_slip_certain)
        or (best.postcode == PostcodeLevel.OUTWARD and OUTWARD_MAY_MATCH)
    )
    if not place_ok and not best.hint:
        why.append(
            {
                PostcodeLevel.OUTWARD: "only name, date of birth and district agree "
                "(moved, or a namesake)",
                PostcodeLevel.TYPO: "postcode one character off, and nothing says the "
                "reported one does not exist (a neighbour?)",
            }.get(
                best.postcode, "only name and date of birth agree (postcode differs or is missing)"
            )
        )
    return why


def _same_child(a: Scored, b: Scored) -> bool:
    """Two roster records (at different settings) that describe one child."""
    pa, pb = a.pupil, b.pupil
    if pa.date_of_birth != pb.date_of_birth:
        return False
    if pa.upn and pb.upn and pa.upn.replace(" ", "").upper() != pb.upn.replace(" ", "").upper():
        return False
    ga, gb = normalise_gender(pa.gender), normalise_gender(pb.gender)
    if ga and gb and ga != gb:
        return False
    given = compare_given(name_tokens(pa.given_name), name_tokens(pb.given_name))
    family = compare_family(name_tokens(pa.family_name), name_tokens(pb.family_name))
    place, _ = compare_postcode(normalise_postcode(pa.postcode), normalise_postcode(pb.postcode))
    if pa.setting_id == pb.setting_id:  # a duplicate row: harmless only when identical
        return (
            given.level == GivenLevel.EXACT
            and family.level == FamilyLevel.EXACT
            and place == PostcodeLevel.EXACT
        )
    # Two settings: the same address (or one UPN), since two children of one name born on one
    # day in one district would otherwise both be notified.
    same_upn = bool(pa.upn and pb.upn)
    return (
        given.level in (GivenLevel.EXACT, GivenLevel.MIDDLE)
        and family.level in (FamilyLevel.EXACT, FamilyLevel.PART)
        and (place == PostcodeLevel.EXACT or same_upn)
    )


def _twin_of(best: Scored, other: Scored) -> bool:
    pa, pb = best.pupil, other.pupil
    return (
        pa.date_of_birth == pb.date_of_birth
        and name_tokens(pa.family_name) == name_tokens(pb.family_name)
        and normalise_postcode(pa.postcode) == normalise_postcode(pb.postcode)
        and name_tokens(pa.given_name) != name_tokens(pb.given_name)
    )


def choose(scored: Sequence[Scored]) -> Outcome:
    """Decide over every scored candidate (any order)."""
    ranked = sorted(scored, key=lambda s: s.weight, reverse=True)
    if not ranked or ranked[0].weight < REVIEW_WEIGHT:
        return Outcome(
            "none",
            (),
            tuple(ranked[:SHOWN]),
            ("no candidate on any roster is likely to be this child",),
        )
    best = ranked[0]
    why = blockers(best)
    # the same child's record at another setting: identified through the best candidate
    same = [s for s in ranked[1:] if _same_child(best, s) and s.upn != UpnLevel.CONFLICT]
    others = [s for s in ranked[1:] if not any(s is t for t in same)]
    if others and best.weight - others[0].weight < MARGIN:
        why.append(
            f"another child scores close ({others[0].weight:.1f} against "
            f"{best.weight:.1f}): a person must choose"
        )
    twins = [s for s in others if _twin_of(best, s)]
    if twins and best.given not in (GivenLevel.EXACT, GivenLevel.MIDDLE):
        why.append("a twin is on the roster and the given name is not exact")
    shown = tuple(ranked[:SHOWN])
    if why:
        return Outcome("review", (), shown, tuple(why))
    matched = (best, *(s for s in same if s.pupil.setting_id != best.pupil.setting_id))
    reasons = [f"match weight {best.weight:.1f} bits"]
    if others:
        reasons.append(f"next other child {best.weight - others[0].weight:.1f} bits behind")
    reasons += [f"also enrolled at {s.pupil.setting_id}" for s in matched[1:]]
    return Outcome("match", matched, shown, tuple(reasons))


def _candidate(s: Scored) -> Candidate:
    return Candidate(
        pupil=s.pupil,
        score=round(s.probability, 6),
        reasons=(f"match weight {s.weight:.1f} bits", *s.reasons),
    )


def result_of(query: PreparedQuery, scored: Sequence[Scored]) -> MatchResult:
    """Decide over scored candidates and dress the outcome as a ``MatchResult``.

    Data minimisation: a match carries only the matched pupils, a review the few candidates a
    person needs, and ``none`` no pupil at all.
    """
    del query  # the decision needs only the scores; kept for a stable signature
    outcome = choose(scored)
    if outcome.decision == "match":
        best = outcome.matched[0]
        settings = tuple(dict.fromkeys(s.pupil.setting_id for s in outcome.matched))
        return MatchResult(
            Decision.MATCH,
            settings,
            round(best.probability, 6),
            (*outcome.reasons, *best.reasons),
            tuple(_candidate(s) for s in outcome.matched),
        )
    if outcome.decision == "review":
        best = outcome.shown[0]
        shown = tuple(
            _candidate(s) for s in outcome.shown if s.weight >= REVIEW_WEIGHT - SHOWN_BELOW
        )
        return MatchResult(
            Decision.REVIEW,
            (),
            round(best.probability, 6),
            (*outcome.reasons, *best.reasons),
            shown,
        )
    top = outcome.shown[0].probability if outcome.shown else 0.0
    return MatchResult(Decision.NONE, (), round(top, 6), outcome.reasons, ())
