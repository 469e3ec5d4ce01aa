"""Names as the matcher sees them: folded to ASCII, split into parts, compared level by level.

A child's name reaches us through a police officer's notebook and a school office's register:
accents get dropped, hyphens become spaces, a middle name appears on one side only, an Arabic
or Polish name is transliterated two ways, a surname is double-barrelled on one record and a
single part on the other. Each comparison here returns the *level* of agreement, the best
explanation first, so the scorer can weigh it and the reviewer can read why.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache

import jellyfish
from rapidfuzz.distance import DamerauLevenshtein, JaroWinkler

from encompass.domain.matching.nicknames import are_nicknames, sexes_conflict

# Letters NFKD does not decompose into an ASCII base letter, spelled as British registers do.
ASCII_SPELLINGS = str.maketrans(
    {
        "ß": "ss",
        "æ": "ae",
        "Æ": "ae",
        "ø": "o",
        "Ø": "o",
        "ł": "l",
        "Ł": "l",
        "đ": "d",
        "Đ": "d",
        "œ": "oe",
        "Œ": "oe",
        "ı": "i",  # noqa: RUF001 (the Turkish dotless i, on purpose)
        "ð": "d",
        "þ": "th",
        "ɔ": "o",
        "Ɔ": "o",
        "ε": "e",
        "Ɛ": "e",
        "ŋ": "ng",
    }
)
_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015_/.,]+")
_NOT_LETTER = re.compile(r"[^a-z]")


def fold(text: str) -> str:
    """Lower-case ASCII, accents and special letters spelled out: 'Łukasz Zoë' -> 'lukasz zoe'."""
    decomposed = unicodedata.normalize("NFKD", text.translate(ASCII_SPELLINGS))
    return decomposed.encode("ascii", "ignore").decode().lower()


def normalise_name(name: str) -> str:
    """Lower case, accents removed, only letters kept: 'Zoë O'Brien-Smith' -> 'zoeobriensmith'."""
    return _NOT_LETTER.sub("", fold(name))


@lru_cache(maxsize=65536)
def name_tokens(name: str) -> tuple[str, ...]:
    """The parts of a name, folded: 'Ellie-Mae  O'Neil' -> ('ellie', 'mae', 'oneil').

    Hyphens, spaces and dots separate parts; apostrophes join ("O'Neil" is one part).
    """
    return tuple(
        t for t in (_NOT_LETTER.sub("", part) for part in _SEPARATORS.split(fold(name))) if t
    )


# Transliteration skeleton rules, applied in order: spellings of one sound become one letter.
_SKELETON_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"ph", "f"),
        (r"ck", "k"),
        (r"q", "k"),
        (r"c(?=[eiy])", "s"),
        (r"c", "k"),
        (r"x", "ks"),
        (r"z", "s"),
        (r"w", "v"),
        (r"(?<=[^aeiouy])h", ""),
        (r"h$", ""),
        (r"y", "i"),
        (r"(.)\1+", r"\1"),
        (r"[aeiou]+", "a"),
    )
)


@lru_cache(maxsize=65536)
def skeleton(token: str) -> str:
    """A spelling-independent key: consonants kept, every run of vowels written 'a'.

    'muhammad', 'mohammed', 'mohamed' -> 'mahamad' but 'mahmoud' -> 'mahmad';
    'omar', 'umar' -> 'amar'; 'khadija', 'khadijah' -> 'kadaja'. Names sharing a skeleton with
    two consonants or more are taken as transliterations of one name.
    """
    text = token
    for pattern, replacement in _SKELETON_RULES:
        text = pattern.sub(replacement, text)
    return text


class GivenLevel(IntEnum):
    """How a reported given name agrees with a roster's, best first."""

    EXACT = 0
    MIDDLE = 1  # first names agree; a middle name on one side only
    NICKNAME = 2  # diminutive: Alfie / Alfred
    VARIANT = 3  # transliteration: Mohammed / Muhammad
    BY_MIDDLE = 4  # known by the middle name (also: a twin named after the other's middle)
    FUZZY = 5  # a typing slip
    INITIAL = 6  # one side gives only the initial
    DIFFERENT = 7
    MISSING = 8


class FamilyLevel(IntEnum):
    """How a reported family name agrees with a roster's, best first."""

    EXACT = 0
    PART = 1  # one part of a double-barrelled name, or its parts in the other order
    VARIANT = 2
    FUZZY = 3
    DIFFERENT = 4
    MISSING = 5


@dataclass(frozen=True, slots=True)
class NameAgreement:
    """A comparison's level, the part of the name that agreed, and the reviewer's explanation."""

    level: int
    token: str
    reason: str


def _similar(a: str, b: str) -> bool:
    """A typing slip: one edit (insert, delete, substitute, swap) in a name of five letters or
    more, or a Jaro-Winkler similarity of 0.93 (long names with two slips)."""
    if min(len(a), len(b)) >= 5 and DamerauLevenshtein.distance(a, b, score_cutoff=1) <= 1:
        return True
    return min(len(a), len(b)) >= 6 and JaroWinkler.similarity(a, b) >= 0.93


def _short_slip(a: str, b: str) -> bool:
    """A slip in a short given name (three or four letters): one letter dropped or doubled
    inside the name, the first two letters kept ('aprl'/'april', 'ammy'/'amy'). A letter
    added at the end is not one: Leo and Leon, Eli and Elia are names of their own (twins')."""
    short, long = sorted((a, b), key=len)
    if len(short) < 3 or len(long) != len(short) + 1 or short[:2] != long[:2]:
        return False
    return any(long[:i] + long[i + 1 :] == short for i in range(2, len(long) - 1))


def _family_slip(a: str, b: str) -> bool:
    """A slip in a family name: as for given names, or one edit in a name of three or four
    letters ('webbm'/'webb', 'hoep'/'hope'): a child of the same given name, birthday and
    postcode under a family name one letter away is not a plausible other child."""
    return _similar(a, b) or (
        min(len(a), len(b)) >= 3 and DamerauLevenshtein.distance(a, b, score_cutoff=1) <= 1
    )


def _variant(a: str, b: str) -> bool:
    """Transliterations: one skeleton with two consonants or more (Mohammed/Muhammad), or
    names of five letters or more that also look alike (Aisha/Ayesha). Never Mia/Mya (a short
    skeleton is shared by too many names) nor Sara/Zara: a transliteration keeps the first
    letter (or writes the first vowel another way), twins' names often do not."""
    sa = skeleton(a)
    if sa != skeleton(b) or (a[0] != b[0] and not (a[0] in "aeiou" and b[0] in "aeiou")):
        return False
    return len(sa.replace("a", "")) >= 2 or (
        min(len(a), len(b)) >= 5 and JaroWinkler.similarity(a, b) >= 0.8
    )


def _sounds_alike(a: str, b: str) -> bool:
    """Family names spelled apart but sounding alike (Stephenson/Stevenson,
    Macdonald/Mcdonald): one Metaphone code of three sounds or more, the first letter kept."""
    if a[0] != b[0] or min(len(a), len(b)) < 5:
        return False
    code = jellyfish.metaphone(a)
    return len(code) >= 3 and code == jellyfish.metaphone(b)


@lru_cache(maxsize=262144)
def compare_given(query: tuple[str, ...], roster: tuple[str, ...]) -> NameAgreement:
    """The best agreement between two given names, each given as its parts (first, middles)."""
    if not query or not roster:
        return NameAgreement(GivenLevel.MISSING, "", "given name: missing")
    if "".join(query) == "".join(roster):
        return NameAgreement(GivenLevel.EXACT, roster[0], "given name: exact")
    q0, r0 = query[0], roster[0]
    if q0 == r0:
        return NameAgreement(
            GivenLevel.MIDDLE,
            r0,
            "given name: first name agrees, middle name differs or missing on one side",
        )
    if len(q0) == 1 or len(r0) == 1:
        if q0[0] == r0[0]:
            return NameAgreement(GivenLevel.INITIAL, r0, "given name: initial only")
        return NameAgreement(GivenLevel.DIFFERENT, "", "given name: differs")
    shared = set(query) & set(roster)
    if shared:
        token = next(t for t in roster if t in shared)
        return NameAgreement(
            GivenLevel.BY_MIDDLE, token, "given name: known by a middle name on one record"
        )
    # A boy's and a girl's name (Aaron/Erin in the US list, Omar/Eimear by sound) are two
    # children, unless our British list says otherwise (Charlie for Charlotte).
    conflict = sexes_conflict(q0, r0)
    if are_nicknames(q0, r0, trusted_only=conflict):
        return NameAgreement(
            GivenLevel.NICKNAME,
            r0,
            f"given name: {q0.title()} is a short form of {r0.title()}"
            if len(q0) < len(r0)
            else f"given name: {r0.title()} is a short form of {q0.title()}",
        )
    if not conflict and _variant(q0, r0):
        return NameAgreement(
            GivenLevel.VARIANT, r0, "given name: another spelling or transliteration"
        )
    if _similar(q0, r0) or _short_slip(q0, r0):
        return NameAgreement(GivenLevel.FUZZY, r0, "given name: one typing slip")
    if (len(query) > 1 or len(roster) > 1) and _similar("".join(query), "".join(roster)):
        return NameAgreement(
            GivenLevel.FUZZY, r0, "given name: one typing slip across a space or hyphen"
        )
    return NameAgreement(GivenLevel.DIFFERENT, "", "given name: differs")


_ORDINAL = ("first", "second", "third", "fourth")


@lru_cache(maxsize=262144)
def compare_family(query: tuple[str, ...], roster: tuple[str, ...]) -> NameAgreement:
    """The best agreement between two family names, each given as its parts."""
    if not query or not roster:
        return NameAgreement(FamilyLevel.MISSING, "", "family name: missing")
    q, r = "".join(query), "".join(roster)
    if q == r:
        return NameAgreement(FamilyLevel.EXACT, r, "family name: exact")
    if len(roster) > 1 and len(query) == 1 and q in roster:
        which = _ORDINAL[min(roster.index(q), 3)]
        return NameAgreement(
            FamilyLevel.PART, q, f"family name: {which} part of a double-barrelled name"
        )
    if len(query) > 1 and len(roster) == 1 and r in query:
        which = _ORDINAL[min(query.index(r), 3)]
        return NameAgreement(
            FamilyLevel.PART,
            r,
            f"family name: reported double-barrelled, roster has its {which} part",
        )
    if len(query) > 1 and sorted(query) == sorted(roster):
        return NameAgreement(
            FamilyLevel.PART,
            roster[0],
            "family name: parts of a double-barrelled name in the other order",
        )
    if _variant(q, r):
        return NameAgreement(
            FamilyLevel.VARIANT, r, "family name: another spelling or transliteration"
        )
    if _family_slip(q, r):
        return NameAgreement(FamilyLevel.FUZZY, r, "family name: one typing slip")
    if _sounds_alike(q, r):
        return NameAgreement(
            FamilyLevel.VARIANT, r, "family name: spelled another way, sounds alike"
        )
    for qt in query:
        for rt in roster:
            if len(qt) >= 4 and qt == rt:
                return NameAgreement(
                    FamilyLevel.PART, rt, "family name: shares one part of a multi-part name"
                )
    return NameAgreement(FamilyLevel.DIFFERENT, "", "family name: differs")
