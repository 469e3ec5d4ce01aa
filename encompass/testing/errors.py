"""The errors a police record of a child carries, relative to the truth, at realistic rates.

Each function takes the true value and a random source and returns the reported value and the
names of the errors applied (the ground truth a test or benchmark can slice by).
"""

from __future__ import annotations

import random
import string
import unicodedata
from dataclasses import dataclass
from datetime import date, timedelta

from encompass.domain.matching.names import ASCII_SPELLINGS
from encompass.domain.matching.nicknames import related_names
from encompass.domain.postcode import compact_postcode


@dataclass(frozen=True)
class Rates:
    """Per-query probabilities of each error type (independent of one another)."""

    nickname: float = 0.08  # a diminutive or full form instead of the registered name
    middle_added: float = 0.04  # "Ellie Mae" for "Ellie"
    goes_by_middle: float = 0.01  # the middle name alone
    given_typo: float = 0.02
    transliteration: float = 0.40  # for names with several spellings (Mohammed/Muhammad)
    accents_dropped: float = 0.60  # for names with accents
    initial_only: float = 0.003
    family_typo: float = 0.02
    double_barrel_part: float = 0.35  # of double-barrelled names: one part only
    double_barrel_added: float = 0.01
    names_swapped: float = 0.01
    surname_changed: float = 0.015
    dob_transposed: float = 0.015
    dob_digit: float = 0.015
    dob_missing: float = 0.005
    dob_wrong: float = 0.003
    postcode_typo: float = 0.015
    moved_nearby: float = 0.04
    moved_away: float = 0.04
    postcode_missing: float = 0.01
    upn_reported: float = 0.08
    upn_conflicting: float = 0.003
    upn_invalid: float = 0.005
    gender_reported: float = 0.9


RATES = Rates()


def typo(text: str, rng: random.Random) -> str:
    """One slip: a letter substituted, dropped, doubled or two swapped."""
    if len(text) < 4:
        return text
    i = rng.randrange(1, len(text) - 1)
    kind = rng.randrange(4)
    letter = rng.choice(string.ascii_lowercase)
    if kind == 0:
        out = text[:i] + letter + text[i + 1 :]
    elif kind == 1:
        out = text[:i] + text[i + 1 :]
    elif kind == 2:
        out = text[:i] + text[i] + text[i:]
    else:
        out = text[: i - 1] + text[i] + text[i - 1] + text[i + 1 :]
    return out if out.lower() != text.lower() else text[:i] + "x" + text[i + 1 :]


def fold_accents(text: str) -> str:
    """Accents dropped as an ASCII-only system drops them ('Zoë' -> 'Zoe', 'Łukasz' -> 'Lukasz')."""
    decomposed = unicodedata.normalize("NFKD", text.translate(ASCII_SPELLINGS))
    return decomposed.encode("ascii", "ignore").decode()


def report_given(
    first: str,
    middle: str | None,
    rng: random.Random,
    variants: dict[str, tuple[str, ...]],
    r: Rates = RATES,
) -> tuple[str, list[str]]:
    """The given name as reported."""
    errors: list[str] = []
    name = first
    related = sorted(related_names(first.lower()))
    if related and rng.random() < r.nickname:
        name, errors = rng.choice(related).title(), ["nickname"]
    elif first in variants and rng.random() < r.transliteration:
        others = [v for v in variants[first] if fold_accents(v) != fold_accents(first)]
        if others:
            name, errors = rng.choice(others), ["transliteration"]
    elif middle and rng.random() < r.goes_by_middle:
        name, errors = middle, ["goes_by_middle"]
    elif rng.random() < r.given_typo:
        name, errors = typo(first, rng), ["given_typo"]
    elif rng.random() < r.initial_only:
        name, errors = first[0], ["initial_only"]
    if middle and not errors and rng.random() < r.middle_added:
        name, errors = f"{name} {middle}", ["middle_added"]
    if name != fold_accents(name) and rng.random() < r.accents_dropped:
        name, errors = fold_accents(name), [*errors, "accents_dropped"]
    return name, errors


def report_family(
    family: str, rng: random.Random, new_surname: str, other_surname: str, r: Rates = RATES
) -> tuple[str, list[str]]:
    """The family name as reported (before any swap with the given name)."""
    if rng.random() < r.surname_changed:
        return new_surname, ["surname_changed"]
    if "-" in family and rng.random() < r.double_barrel_part:
        parts = family.split("-")
        return rng.choice(parts), ["double_barrel_part"]
    if "-" not in family and rng.random() < r.double_barrel_added:
        return f"{other_surname}-{family}", ["double_barrel_added"]
    if rng.random() < r.family_typo:
        return typo(family, rng), ["family_typo"]
    if family != fold_accents(family) and rng.random() < r.accents_dropped:
        return fold_accents(family), ["accents_dropped"]
    return family, []


def _valid(day: int, month: int, year: int) -> date | None:
    try:
        return date(year, month, day)
    except ValueError:
        return None


def report_dob(dob: date, rng: random.Random, r: Rates = RATES) -> tuple[date | None, list[str]]:
    """The date of birth as reported."""
    roll = rng.random()
    if roll < r.dob_missing:
        return None, ["dob_missing"]
    roll -= r.dob_missing
    if roll < r.dob_transposed and dob.day <= 12 and dob.day != dob.month:
        return date(dob.year, dob.day, dob.month), ["dob_transposed"]
    roll -= r.dob_transposed
    if roll < r.dob_digit:
        digits = list(f"{dob.day:02d}{dob.month:02d}{dob.year:04d}")
        for _ in range(20):
            i = rng.choice((0, 1, 2, 3, 6, 7))
            trial = digits.copy()
            trial[i] = str(rng.randrange(10))
            text = "".join(trial)
            slipped = _valid(int(text[:2]), int(text[2:4]), int(text[4:]))
            if (
                slipped
                and slipped != dob
                and abs(slipped.year - dob.year) <= 10
                and slipped < date(2025, 11, 10)
            ):
                return slipped, ["dob_digit"]
        return dob, []
    roll -= r.dob_digit
    if roll < r.dob_wrong:
        return dob + timedelta(days=rng.choice((-1, 1)) * rng.randrange(40, 400)), ["dob_wrong"]
    return dob, []


def postcode_typo(postcode: str, rng: random.Random) -> str:
    """One character of a postcode replaced by another of its kind (digit or letter)."""
    chars = list(postcode)
    positions = [i for i, c in enumerate(chars) if c != " "]
    i = rng.choice(positions[1:])
    pool = string.digits if chars[i].isdigit() else "ABDEFGHJLNPQRSTUWXYZ"
    chars[i] = rng.choice([c for c in pool if c != chars[i]])
    return "".join(chars)


def postcode_key(postcode: str) -> str:
    """A postcode compared as the matcher compares it (case and spaces ignored)."""
    return compact_postcode(postcode)


def near(a: str, b: str) -> bool:
    """Equal, or one character apart (substituted, dropped, added, or two swapped)."""
    from rapidfuzz.distance import DamerauLevenshtein

    return DamerauLevenshtein.distance(a, b, score_cutoff=1) <= 1
