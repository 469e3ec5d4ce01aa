"""UK postcodes: normalised, split into outward and inward codes, and compared.

A family that moved within its district keeps the outward code ("LS6" of "LS6 2QT"); a
one-character slip keeps all but one character. Anything else is another place: a child whose
family moved away is matched on the other identifiers or not at all.
"""

from __future__ import annotations

import re
from enum import IntEnum

from rapidfuzz.distance import DamerauLevenshtein

_SPACES = re.compile(r"[^0-9A-Z]")


def normalise_postcode(postcode: str) -> str:
    """Upper case, spaces and punctuation removed: ' ls6 2qt ' -> 'LS62QT'."""
    return _SPACES.sub("", postcode.upper())


def outward_code(normalised: str) -> str:
    """The outward code of a normalised postcode ('LS62QT' -> 'LS6'); '' when too short."""
    return normalised[:-3] if len(normalised) >= 5 else ""


class PostcodeLevel(IntEnum):
    """How a reported postcode agrees with a roster's, best first."""

    EXACT = 0
    TYPO = 1  # one character wrong, missing, extra, or two swapped
    OUTWARD = 2  # same outward code: the same district
    DIFFERENT = 3
    MISSING = 4


def compare_postcode(query: str, roster: str) -> tuple[PostcodeLevel, str]:
    """Compare two *normalised* postcodes: the level and the reviewer's explanation."""
    if not query or not roster:
        return PostcodeLevel.MISSING, "postcode: missing"
    if query == roster:
        return PostcodeLevel.EXACT, "postcode: exact"
    if DamerauLevenshtein.distance(query, roster, score_cutoff=1) <= 1:
        return PostcodeLevel.TYPO, "postcode: one character differs"
    q_out, r_out = outward_code(query), outward_code(roster)
    if q_out and q_out == r_out:
        return PostcodeLevel.OUTWARD, "postcode: same outward code, another street"
    return PostcodeLevel.DIFFERENT, "postcode: differs (moved, or another family)"
