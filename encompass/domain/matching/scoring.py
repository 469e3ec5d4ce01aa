"""Fellegi-Sunter scoring: every identifier's agreement level adds a match weight in bits.

For each comparison level we hold ``m`` (how often a true match shows that level) and ``u``
(how often two different children do); the level adds ``log2(m / u)``. Exact name agreement
uses the name's own frequency on the roster for ``u`` (term-frequency adjustment, as Splink
does): two records agreeing on "Smith" is weaker evidence than agreeing on "Okonkwo". The sum,
plus a prior for one pupil among a million, is the candidate's match weight; its probability is
``1 / (1 + 2**-weight)``.

The ``m`` values are the error rates children's records are known to carry (see
``encompass.testing.population`` for the rates we simulate), the ``u`` values the chance
agreement rates of a roster of a million children: readable and reviewable. Each roster
replaces what depends on it (``RosterWeights``: the prior, and the ``u`` of date-of-birth and
postcode levels measured on random pairs of its records, never below the values here); exact
names use its name frequencies. ``fit.py`` estimates the whole model from a roster and
reported children as Splink does (``encompass match --explain-model`` shows it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import NamedTuple

from encompass.domain.directory import Pupil
from encompass.domain.matching.dates import DobLevel, compare_dob
from encompass.domain.matching.names import (
    FamilyLevel,
    GivenLevel,
    NameAgreement,
    compare_family,
    compare_given,
    name_tokens,
)
from encompass.domain.matching.postcodes import (
    PostcodeLevel,
    compare_postcode,
    normalise_postcode,
    outward_code,
)
from encompass.domain.matching.upn import UpnLevel, compare_upn, valid_upn


def _bits(m: float, u: float) -> float:
    return math.log2(m / u)


PRIOR_WEIGHT = _bits(1.0, 1_000_000.0)
"""A reported child is, a priori, one pupil among a million."""

# (m, u) per level; u of EXACT names is the default when no roster frequencies are known.
GIVEN_MU: dict[int, tuple[float, float]] = {
    GivenLevel.EXACT: (0.86, 0.008),
    GivenLevel.MIDDLE: (0.04, 0.0015),
    GivenLevel.NICKNAME: (0.05, 0.002),
    GivenLevel.VARIANT: (0.02, 0.001),
    GivenLevel.BY_MIDDLE: (0.01, 0.0005),
    GivenLevel.FUZZY: (0.02, 0.002),
    GivenLevel.INITIAL: (0.003, 0.0008),
    GivenLevel.DIFFERENT: (0.01, 0.98),
}
FAMILY_MU: dict[int, tuple[float, float]] = {
    FamilyLevel.EXACT: (0.85, 0.002),
    FamilyLevel.PART: (0.05, 0.001),
    FamilyLevel.VARIANT: (0.01, 0.0005),
    FamilyLevel.FUZZY: (0.03, 0.001),
    FamilyLevel.DIFFERENT: (0.06, 0.995),
}
DOB_MU: dict[int, tuple[float, float]] = {
    DobLevel.EXACT: (0.95, 1 / 6000),
    DobLevel.TRANSPOSED: (0.015, 1 / 15000),
    DobLevel.ONE_DIGIT: (0.02, 0.004),
    DobLevel.DIFFERENT: (0.015, 0.996),
}
POSTCODE_MU: dict[int, tuple[float, float]] = {
    PostcodeLevel.EXACT: (0.82, 2e-5),
    PostcodeLevel.TYPO: (0.02, 1e-4),
    PostcodeLevel.OUTWARD: (0.06, 3e-4),
    PostcodeLevel.DIFFERENT: (0.10, 0.9997),
}
UPN_MU: dict[int, tuple[float, float]] = {
    UpnLevel.EXACT: (0.995, 1e-7),
    UpnLevel.CONFLICT: (0.005, 1.0),
}
GENDER_AGREES = _bits(0.98, 0.5)
GENDER_DIFFERS = _bits(0.02, 0.5)
SCHOOL_HINT_AGREES = 3.0
SWAPPED_PENALTY = _bits(0.015, 0.05)
"""Given and family name swapped: rarer in true matches than the straight reading."""

# Term-frequency u is floored: a name held by one child in a million is still no stronger
# evidence than this (a unique name may be a one-off misspelling).
GIVEN_U_FLOOR = 2e-4
FAMILY_U_FLOOR = 5e-5


@dataclass(frozen=True, slots=True)
class TermFrequencies:
    """How common each (folded) given-name and family-name part is on the whole roster."""

    given: Mapping[str, int] = field(default_factory=dict)
    family: Mapping[str, int] = field(default_factory=dict)
    population: int = 0

    def given_u(self, token: str, default: float = GIVEN_MU[GivenLevel.EXACT][1]) -> float:
        """``u`` of exact agreement on this given name: its share of the roster
        (``default`` when the roster's frequencies do not hold it)."""
        count = self.given.get(token, 0) if self.population else 0
        if not count:
            return default
        return max(count / self.population, GIVEN_U_FLOOR)

    def family_u(self, token: str, default: float = FAMILY_MU[FamilyLevel.EXACT][1]) -> float:
        """``u`` of exact agreement on this family name (or part): its share of the roster
        (``default`` when the roster's frequencies do not hold it)."""
        count = self.family.get(token, 0) if self.population else 0
        if not count:
            return default
        return max(count / self.population, FAMILY_U_FLOOR)


DEFAULT_FREQUENCIES = TermFrequencies()


def _level_bits(table: Mapping[int, tuple[float, float]]) -> dict[int, float]:
    return {level: _bits(*mu) for level, mu in table.items()}


@dataclass(frozen=True, slots=True)
class RosterWeights:
    """The weights of one roster's matcher: the prior (one pupil among the roster's), the bits
    of each date-of-birth and postcode level, and the (m, u) of each name level, whose exact
    ``u`` the roster's name frequencies replace. The defaults are the hand-set values for a
    roster of a million; ``fit.roster_weights`` and ``fit.model_weights`` measure them on a
    roster (``u``) and on reported children (``m``)."""

    prior: float = PRIOR_WEIGHT
    dob: Mapping[int, float] = field(default_factory=lambda: _level_bits(DOB_MU))
    postcode: Mapping[int, float] = field(default_factory=lambda: _level_bits(POSTCODE_MU))
    given: Mapping[int, tuple[float, float]] = field(default_factory=lambda: dict(GIVEN_MU))
    family: Mapping[int, tuple[float, float]] = field(default_factory=lambda: dict(FAMILY_MU))

    def names_max(self) -> float:
        """The most bits the two names can add (exact agreement on the rarest names): what
        pruning assumes a candidate could still gain from its names."""
        return _bits(self.given[GivenLevel.EXACT][0], GIVEN_U_FLOOR) + _bits(
            self.family[FamilyLevel.EXACT][0], FAMILY_U_FLOOR
        )


DEFAULT_WEIGHTS = RosterWeights()


@dataclass(frozen=True, slots=True)
class PreparedQuery:
    """A reported child's identifiers, normalised once before comparing many candidates."""

    given: tuple[str, ...]
    family: tuple[str, ...]
    dob: date | None
    postcode: str
    upn: str | None
    upn_reported_invalid: bool
    gender: str | None
    school_hint: str | None
    postcode_exists: bool | None = None
    """Whether the reported postcode is a real one (on the roster, or in a postcode directory
    such as the ONS Postcode Directory): a real postcode one character from another is a
    neighbour, not a slip; one that does not exist is a slip. None: nobody can tell."""

    @property
    def outward(self) -> str:
        return outward_code(self.postcode)


def normalise_gender(gender: str | None) -> str | None:
    """'M', 'F' or None: the first letter of male/female/boy/girl, anything else unknown."""
    if not gender:
        return None
    first = gender.strip()[:1].upper()
    return {"M": "M", "B": "M", "F": "F", "G": "F"}.get(first)


def prepare(
    given_name: str,
    family_name: str,
    dob: date | None,
    postcode: str,
    upn: str | None,
    gender: str | None,
    school_hint: str | None,
) -> PreparedQuery:
    """Normalise a reported child once; an invalid UPN is dropped (and said so)."""
    clean_upn = valid_upn(upn) if upn else None
    return PreparedQuery(
        given=name_tokens(given_name),
        family=name_tokens(family_name),
        dob=dob,
        postcode=normalise_postcode(postcode or ""),
        upn=clean_upn,
        upn_reported_invalid=bool(upn and upn.strip()) and clean_upn is None,
        gender=normalise_gender(gender),
        school_hint=school_hint.strip().lower() if school_hint else None,
    )


@dataclass(frozen=True, slots=True)
class Scored:
    """One candidate's levels, weight (bits, prior included) and reasons."""

    pupil: Pupil
    weight: float
    given: int
    family: int
    dob: DobLevel
    postcode: PostcodeLevel
    upn: UpnLevel
    swapped: bool
    hint: bool
    reasons: tuple[str, ...]
    gender_differs: bool = False
    postcode_slip_certain: bool = False

    @property
    def probability(self) -> float:
        """The Fellegi-Sunter match probability of this weight."""
        return 1.0 / (1.0 + 2.0 ** (-self.weight)) if self.weight > -60 else 0.0


def _given_weight(agreement: NameAgreement, tf: TermFrequencies, weights: RosterWeights) -> float:
    if agreement.level == GivenLevel.MISSING:
        return 0.0
    m, u = weights.given[agreement.level]
    if agreement.level in (GivenLevel.EXACT, GivenLevel.MIDDLE):
        # the name's own frequency, scaled as this level's u is to the exact level's
        exact_u = weights.given[GivenLevel.EXACT][1]
        u = tf.given_u(agreement.token, exact_u) * (u / exact_u)
    return _bits(m, u)


def _family_weight(agreement: NameAgreement, tf: TermFrequencies, weights: RosterWeights) -> float:
    if agreement.level == FamilyLevel.MISSING:
        return 0.0
    m, u = weights.family[agreement.level]
    if agreement.level in (FamilyLevel.EXACT, FamilyLevel.PART):
        exact_u = weights.family[FamilyLevel.EXACT][1]
        u = tf.family_u(agreement.token, exact_u) * (u / exact_u)
    return _bits(m, u)


def _swap_possible(query: PreparedQuery, given: tuple[str, ...], family: tuple[str, ...]) -> bool:
    """Cheap test before reading the names swapped: a reported part appears on the other side."""
    return bool(set(query.given) & set(family)) or bool(set(query.family) & set(given))


def _names(
    query: PreparedQuery,
    given: tuple[str, ...],
    family: tuple[str, ...],
    tf: TermFrequencies,
    weights: RosterWeights,
) -> tuple[NameAgreement, NameAgreement, float, bool]:
    """The straight reading of the names, or the swapped one when that reads better."""
    g, f = compare_given(query.given, given), compare_family(query.family, family)
    weight = _given_weight(g, tf, weights) + _family_weight(f, tf, weights)
    if (g.level >= GivenLevel.FUZZY or f.level >= FamilyLevel.FUZZY) and _swap_possible(
        query, given, family
    ):
        sg, sf = compare_given(query.family, given), compare_family(query.given, family)
        if sg.level <= GivenLevel.NICKNAME and sf.level <= FamilyLevel.PART:
            swapped = (
                _given_weight(sg, tf, weights) + _family_weight(sf, tf, weights) + SWAPPED_PENALTY
            )
            if swapped > weight:
                return sg, sf, swapped, True
    return g, f, weight, False


class _Cheap(NamedTuple):
    """The identifiers compared before the names: their levels, reasons and weight (a
    tuple: built for every candidate, it must be cheap to build)."""

    dob: DobLevel
    dob_reason: str
    postcode: PostcodeLevel
    postcode_reason: str
    upn: UpnLevel
    upn_reason: str
    gender_differs: bool
    hint: bool
    weight: float


def _postcode(query: PreparedQuery, pupil: Pupil) -> tuple[PostcodeLevel, str]:
    """The postcode's level, a one-character difference read with what is known of the
    reported postcode: between two real postcodes it is a neighbour, not a slip."""
    roster = normalise_postcode(pupil.postcode)
    level, reason = compare_postcode(query.postcode, roster)
    if level == PostcodeLevel.TYPO and query.postcode_exists:
        same_district = query.outward == outward_code(roster)
        return (
            PostcodeLevel.OUTWARD if same_district else PostcodeLevel.DIFFERENT,
            "postcode: a neighbouring address (both postcodes exist)",
        )
    if level == PostcodeLevel.TYPO and query.postcode_exists is False:
        return level, "postcode: one character differs (the reported one does not exist)"
    return level, reason


def _cheap(query: PreparedQuery, pupil: Pupil, weights: RosterWeights) -> _Cheap:
    """Compare the date of birth, postcode, UPN, gender and school hint, and add their bits
    to the prior."""
    dob_level, dob_reason = compare_dob(query.dob, pupil.date_of_birth)
    pc_level, pc_reason = _postcode(query, pupil)
    upn_level, upn_reason = compare_upn(query.upn, pupil.upn)
    weight = weights.prior
    if dob_level != DobLevel.MISSING:
        weight += weights.dob[dob_level]
    if pc_level != PostcodeLevel.MISSING:
        weight += weights.postcode[pc_level]
    if upn_level in UPN_MU:
        weight += _bits(*UPN_MU[upn_level])
    pupil_gender = normalise_gender(pupil.gender)
    gender_differs = bool(query.gender and pupil_gender and query.gender != pupil_gender)
    if query.gender and pupil_gender:
        weight += GENDER_DIFFERS if gender_differs else GENDER_AGREES
    hint = bool(query.school_hint) and query.school_hint == pupil.setting_id.lower()
    if hint:
        weight += SCHOOL_HINT_AGREES
    return _Cheap(
        dob_level,
        dob_reason,
        pc_level,
        pc_reason,
        upn_level,
        upn_reason,
        gender_differs,
        hint,
        weight,
    )


def _reasons(
    query: PreparedQuery, cheap: _Cheap, g: NameAgreement, f: NameAgreement, swapped: bool
) -> tuple[str, ...]:
    """What a reviewer reads of one candidate, field by field."""
    reasons = ["given and family name swapped"] if swapped else []
    reasons += [g.reason, f.reason, cheap.dob_reason, cheap.postcode_reason]
    if cheap.upn in UPN_MU:
        reasons.append(cheap.upn_reason)
    elif query.upn_reported_invalid:
        reasons.append("UPN: reported UPN fails its check letter (ignored)")
    if cheap.gender_differs:
        reasons.append("gender: differs")
    if cheap.hint:
        reasons.append("school hint: names this setting")
    return tuple(reasons)


def score(
    query: PreparedQuery,
    pupil: Pupil,
    tf: TermFrequencies = DEFAULT_FREQUENCIES,
    floor: float | None = None,
    weights: RosterWeights = DEFAULT_WEIGHTS,
    names_max: float | None = None,
) -> Scored | None:
    """Compare a prepared query with one roster entry: levels, weight and reasons.

    With a ``floor``, a candidate whose weight cannot reach it even with the best possible
    name agreement (``names_max`` bits; by default ``weights.names_max()``) is dropped (None)
    before its names are compared: the cheap identifiers (date of birth, postcode, UPN) are
    compared first.
    """
    cheap = _cheap(query, pupil, weights)
    if (
        floor is not None
        and cheap.weight + (weights.names_max() if names_max is None else names_max) < floor
        and cheap.upn != UpnLevel.CONFLICT
    ):
        return None
    g, f, name_weight, swapped = _names(
        query, name_tokens(pupil.given_name), name_tokens(pupil.family_name), tf, weights
    )
    return Scored(
        pupil=pupil,
        weight=cheap.weight + name_weight,
        given=g.level,
        family=f.level,
        dob=cheap.dob,
        postcode=cheap.postcode,
        upn=cheap.upn,
        swapped=swapped,
        hint=cheap.hint,
        reasons=_reasons(query, cheap, g, f, swapped),
        gender_differs=cheap.gender_differs,
        postcode_slip_certain=query.postcode_exists is False,
    )
