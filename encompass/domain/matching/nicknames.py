"""Diminutives: which two given names may be the same child's (Alfie and Alfred).

Two sources, loaded once per process: the ``nicknames`` package (a maintained, hand-curated
list of English names and nicknames, US-centred) and our British supplement
``encompass/data/nicknames_uk.csv`` (Maisie/Margaret, Alfie/Alfred, Ollie/Olivia, ...).
Only direct pairs count (full name and its short form, both ways): two short forms of one name
(Peggy and Maisie) or two full names sharing a short form (Henry and Harrison, via Harry) are
not taken as the same child, because twins are given exactly such pairs of names.
"""

from __future__ import annotations

import csv
import unicodedata
from functools import cache
from importlib import resources

_SUPPLEMENT = "nicknames_uk.csv"


def _clean(name: str) -> str:
    return "".join(ch for ch in name.lower() if "a" <= ch <= "z")


def _supplement_pairs() -> list[tuple[str, str]]:
    text = resources.files("encompass.data").joinpath(_SUPPLEMENT).read_text(encoding="utf-8")
    rows = csv.reader(line for line in text.splitlines() if line and not line.startswith("#"))
    next(rows)  # header
    return [(row[0], row[1]) for row in rows if len(row) >= 2]


def _package_pairs() -> list[tuple[str, str]]:
    from nicknames import NickNamer  # imported here: a large table we load once, lazily

    pairs: list[tuple[str, str]] = []
    for canonical, nicks in NickNamer.default_lookup().items():
        pairs.extend((canonical, nick) for nick in nicks)
    return pairs


@cache
def nickname_table() -> dict[str, frozenset[str]]:
    """Every known name mapped to the names it is a direct diminutive or full form of."""
    related: dict[str, set[str]] = {}
    for full, short in (*_package_pairs(), *_supplement_pairs()):
        a, b = _clean(full), _clean(short)
        if a and b and a != b:
            related.setdefault(a, set()).add(b)
            related.setdefault(b, set()).add(a)
    return {name: frozenset(names) for name, names in related.items()}


@cache
def _uk_pairs() -> frozenset[tuple[str, str]]:
    pairs = {(_clean(a), _clean(b)) for a, b in _supplement_pairs()}
    return frozenset(pairs | {(b, a) for a, b in pairs})


def are_nicknames(a: str, b: str, trusted_only: bool = False) -> bool:
    """True when one folded given name is a known diminutive of the other; with
    ``trusted_only``, only our British list counts (the US list pairs Aaron with Erin)."""
    if trusted_only:
        return (a, b) in _uk_pairs()
    return b in nickname_table().get(a, frozenset())


def related_names(name: str) -> frozenset[str]:
    """The full forms and short forms of a folded given name (empty when none is known)."""
    return nickname_table().get(name, frozenset())


@cache
def _sex_of_names() -> dict[str, str]:
    """'M' or 'F' for first names given (almost) only to boys or only to girls, from the
    baby-name lists in ``encompass/data``; unisex names are left out."""
    counts: dict[str, dict[str, float]] = {}
    data = resources.files("encompass.data")
    for filename, default_sex in (
        ("given_names_boys.csv", "M"),
        ("given_names_girls.csv", "F"),
        ("given_names_supplement.csv", ""),
    ):
        text = data.joinpath(filename).read_text(encoding="utf-8")
        rows = csv.DictReader(
            line for line in text.splitlines() if line and not line.startswith("#")
        )
        for row in rows:
            sex = row.get("sex") or default_sex
            name = _clean(unicodedata.normalize("NFKD", row["name"]))
            counts.setdefault(name, {"M": 0.0, "F": 0.0})[sex] += float(row["count"])
    return {
        name: ("M" if c["M"] > c["F"] else "F")
        for name, c in counts.items()
        if max(c["M"], c["F"]) >= 9 * min(c["M"], c["F"])
    }


def sexes_conflict(a: str, b: str) -> bool:
    """True when one folded name is a boy's and the other a girl's (Aaron and Erin): then one
    is not a short form of the other, whatever a nickname list says."""
    table = _sex_of_names()
    sa, sb = table.get(a), table.get(b)
    return sa is not None and sb is not None and sa != sb
