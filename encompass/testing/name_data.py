"""Weighted name lists for the synthetic population, read from ``encompass/data``."""

from __future__ import annotations

import bisect
import csv
import itertools
import random
from dataclasses import dataclass
from functools import cache
from importlib import resources


def _rows(filename: str) -> list[dict[str, str]]:
    text = resources.files("encompass.data").joinpath(filename).read_text(encoding="utf-8")
    return list(
        csv.DictReader(line for line in text.splitlines() if line and not line.startswith("#"))
    )


@dataclass(frozen=True)
class Weighted:
    """Values drawn in proportion to their weights (binary search on cumulative weights)."""

    values: tuple[str, ...]
    cumulative: tuple[float, ...]

    @classmethod
    def of(cls, pairs: list[tuple[str, float]]) -> Weighted:
        return cls(tuple(v for v, _ in pairs), tuple(itertools.accumulate(w for _, w in pairs)))

    def draw(self, rng: random.Random) -> str:
        return self.values[bisect.bisect_right(self.cumulative, rng.random() * self.cumulative[-1])]


@dataclass(frozen=True)
class NameData:
    """Everything the population draws names from."""

    boys: Weighted
    girls: Weighted
    surnames_common: Weighted
    surnames_tail: tuple[str, ...]
    variants: dict[str, tuple[str, ...]]  # a name -> every spelling of it (itself included)


@cache
def name_data() -> NameData:
    """Load the lists once: NISRA first names plus the English supplement, British surnames
    with their frequencies plus a uniform long tail."""
    boys = [(r["name"], float(r["count"])) for r in _rows("given_names_boys.csv")]
    girls = [(r["name"], float(r["count"])) for r in _rows("given_names_girls.csv")]
    groups: dict[str, list[str]] = {}
    for r in _rows("given_names_supplement.csv"):
        (boys if r["sex"] == "M" else girls).append((r["name"], float(r["count"])))
        groups.setdefault(r["variant_group"], []).append(r["name"])
    variants = {
        name: tuple(members) for members in groups.values() if len(members) > 1 for name in members
    }
    common = [(r["surname"], float(r["percent"])) for r in _rows("surnames_gb.csv")]
    tail = tuple(r["surname"] for r in _rows("surnames_tail.csv"))
    return NameData(Weighted.of(boys), Weighted.of(girls), Weighted.of(common), tail, variants)
