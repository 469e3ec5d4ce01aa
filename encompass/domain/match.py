"""Deciding which roster entries a reported child is: the one module that owns matching.

The model, in three steps (details in ``encompass.domain.matching``):

1. **Blocking** (``RosterIndex.candidates``): a few integer keys per pupil (UPN; date of birth
   with each family-name part; date of birth with the sound of the first name; postcode;
   family-name part with initial and year, or with initial and day of the year) find every
   plausible pupil without comparing the child with the whole roster.
2. **Scoring** (Fellegi-Sunter, as in Splink): given name, family name, date of birth,
   postcode, UPN and gender each agree at a level (exact, middle name, diminutive,
   transliteration, typing slip, double-barrelled part, transposed date, one digit off,
   outward code, ...), each level adds ``log2(m/u)`` bits, exact names weighted by how common
   they are on the roster ("Smith" counts for less than "Okonkwo").
3. **Decision**: ``match`` when the best candidate reaches the threshold, agrees on more than
   name and date of birth, carries at most one error in name and date of birth, has no
   conflicting UPN and clearly beats every other child (a twin included); ``review`` when a
   person must look; ``none`` below. The same child on a second roster is matched too.

Every result carries the match probability and the reasons, in words a reviewer can check.
"""

from __future__ import annotations

from collections.abc import Sequence

from encompass.domain.directory import Pupil
from encompass.domain.matching.decision import PRUNE_BELOW, result_of
from encompass.domain.matching.index import RosterHolder, RosterIndex, prepare_query
from encompass.domain.matching.model import Candidate, ChildQuery, Decision, MatchResult
from encompass.domain.matching.names import normalise_name
from encompass.domain.matching.postcodes import normalise_postcode
from encompass.domain.matching.scoring import DEFAULT_FREQUENCIES, TermFrequencies, score

__all__ = [
    "Candidate",
    "ChildQuery",
    "Decision",
    "MatchResult",
    "RosterHolder",
    "RosterIndex",
    "decide",
    "normalise_name",
    "normalise_postcode",
]


def decide(
    query: ChildQuery,
    candidates: Sequence[Pupil],
    frequencies: TermFrequencies = DEFAULT_FREQUENCIES,
) -> MatchResult:
    """Score every candidate and decide: match, review or none.

    ``match`` only when the best candidate's weight reaches the automatic threshold, more than
    name and date of birth agree (postcode or its outward code, or the UPN), no valid UPN
    conflicts and no other child comes close; the same child enrolled at a second setting is
    matched too. A plausible but uncertain candidate goes to ``review`` with the candidates and
    the reasons; ``none`` when no candidate is likely. Without a ``RosterIndex`` the name
    frequencies are the defaults (every exact name counts as an average one).
    """
    q = prepare_query(query)
    scored = (score(q, pupil, frequencies, floor=PRUNE_BELOW) for pupil in candidates)
    return result_of(q, [s for s in scored if s is not None])
