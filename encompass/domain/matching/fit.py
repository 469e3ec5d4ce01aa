"""The Fellegi-Sunter parameters estimated from the data, as Splink estimates them.

``u`` (how often two different children show a comparison level) comes from random pairs of
roster records, which are almost all different children. ``m`` (how often the same child shows
it) comes from expectation-maximisation over blocked pairs (reported children and the roster
records blocking finds for them) with ``u`` held fixed: each pair's match probability is
computed from the current ``m`` and the share of matches ``lambda``, then ``m`` and ``lambda``
are re-estimated from those probabilities, until they settle. The hand-set values serve as a
Dirichlet prior (pseudo-counts), so a level seen rarely keeps a sensible value. A missing value
is neutral: it adds nothing to either side.

Pure: levels in, numbers out. ``encompass match --explain-model`` fits and shows the model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from enum import IntEnum
from typing import Protocol

import numpy as np
import numpy.typing as npt

from encompass.domain.directory import Pupil
from encompass.domain.matching.dates import DobLevel, compare_dob
from encompass.domain.matching.names import (
    FamilyLevel,
    GivenLevel,
    compare_family,
    compare_given,
    name_tokens,
)
from encompass.domain.matching.postcodes import (
    PostcodeLevel,
    compare_postcode,
    normalise_postcode,
)
from encompass.domain.matching.scoring import (
    DOB_MU,
    FAMILY_MU,
    GIVEN_MU,
    POSTCODE_MU,
    PRIOR_WEIGHT,
    RosterWeights,
)

MISSING = -1
"""The level code of a comparison with a value missing on one side: neutral."""

Levels = npt.NDArray[np.int64]
"""One row per pair, one column per comparison: the level index, or :data:`MISSING`."""


@dataclass(frozen=True, slots=True)
class Comparison:
    """One compared field: its level names (best first) and the hand-set (m, u) priors."""

    name: str
    levels: tuple[str, ...]
    prior_m: tuple[float, ...]
    prior_u: tuple[float, ...]


def _comparison(
    name: str,
    enum: Iterable[GivenLevel | FamilyLevel | DobLevel | PostcodeLevel],
    table: dict[int, tuple[float, float]],
) -> Comparison:
    kept = [level for level in enum if level in table]
    m = np.array([table[level][0] for level in kept])
    u = np.array([table[level][1] for level in kept])
    return Comparison(
        name,
        tuple(level.name.lower() for level in kept),
        tuple((m / m.sum()).tolist()),
        tuple((u / u.sum()).tolist()),
    )


COMPARISONS: tuple[Comparison, ...] = (
    _comparison("given name", GivenLevel, GIVEN_MU),
    _comparison("family name", FamilyLevel, FAMILY_MU),
    _comparison("date of birth", DobLevel, DOB_MU),
    _comparison("postcode", PostcodeLevel, POSTCODE_MU),
)
"""The compared fields, in the column order of :data:`Levels`."""


class Record(Protocol):
    """What is compared: a roster's pupil or a reported child."""

    @property
    def given_name(self) -> str: ...
    @property
    def family_name(self) -> str: ...
    @property
    def date_of_birth(self) -> date | None: ...
    @property
    def postcode(self) -> str: ...


def pair_levels(a: Record, b: Record) -> tuple[int, int, int, int]:
    """The level of each comparison for two records (:data:`MISSING` when a value is missing);
    ``a`` plays the reported child."""
    given = compare_given(name_tokens(a.given_name), name_tokens(b.given_name)).level
    family = compare_family(name_tokens(a.family_name), name_tokens(b.family_name)).level
    dob, _ = compare_dob(a.date_of_birth, b.date_of_birth)
    postcode, _ = compare_postcode(normalise_postcode(a.postcode), normalise_postcode(b.postcode))
    return (
        MISSING if given == GivenLevel.MISSING else int(given),
        MISSING if family == FamilyLevel.MISSING else int(family),
        MISSING if dob == DobLevel.MISSING else int(dob),
        MISSING if postcode == PostcodeLevel.MISSING else int(postcode),
    )


def _counts(
    levels: Levels, column: int, size: int, weights: npt.NDArray[np.float64] | None = None
) -> npt.NDArray[np.float64]:
    seen = levels[:, column] >= 0
    return np.bincount(
        levels[seen, column], minlength=size, weights=None if weights is None else weights[seen]
    ).astype(np.float64)


def estimate_u(
    levels: Levels, comparisons: Sequence[Comparison] = COMPARISONS, prior_strength: float = 1.0
) -> list[npt.NDArray[np.float64]]:
    """``u`` of every level of every comparison from random pairs (almost all non-matches):
    each level's share among the pairs where the comparison is not missing, smoothed by
    ``prior_strength`` pseudo-pairs spread as the hand-set ``u``."""
    out = []
    for column, comparison in enumerate(comparisons):
        counts = _counts(levels, column, len(comparison.levels))
        prior = np.array(comparison.prior_u)
        out.append((counts + prior_strength * prior) / (counts.sum() + prior_strength))
    return out


@dataclass(frozen=True, slots=True)
class EmFit:
    """The result of :func:`fit_m`: ``m`` per comparison, the share of matches among the pairs,
    the iterations run and whether the fit settled."""

    m: list[npt.NDArray[np.float64]]
    match_share: float
    iterations: int
    converged: bool


def fit_m(
    levels: Levels,
    u: Sequence[npt.NDArray[np.float64]],
    comparisons: Sequence[Comparison] = COMPARISONS,
    *,
    match_share: float = 0.1,
    prior_strength: float = 10.0,
    max_iterations: int = 100,
    tolerance: float = 1e-6,
    blocked_on: int | None = None,
) -> EmFit:
    """``m`` of every level, and the share of matches, by expectation-maximisation over blocked
    pairs with ``u`` fixed (Splink's method). ``blocked_on``: the comparison every pair agrees
    on by construction (pairs found by date of birth, say); it says nothing about matching
    among them, so it is left out and keeps its prior ``m``. ``prior_strength`` pseudo-matches
    spread as the hand-set ``m`` keep rare levels sensible. Promises: each ``m`` sums to one."""
    m = [np.array(c.prior_m, dtype=np.float64) for c in comparisons]
    share = match_share
    log_u = [np.log(x) for x in u]
    for iteration in range(1, max_iterations + 1):
        log_match = np.full(levels.shape[0], math.log(share))
        log_other = np.full(levels.shape[0], math.log1p(-share))
        for column in range(len(comparisons)):
            if column == blocked_on:
                continue
            seen = levels[:, column] >= 0
            lv = levels[seen, column]
            log_match[seen] += np.log(m[column])[lv]
            log_other[seen] += log_u[column][lv]
        p = 1.0 / (1.0 + np.exp(np.clip(log_other - log_match, -700, 700)))
        new_m = []
        for column, comparison in enumerate(comparisons):
            if column == blocked_on:
                new_m.append(m[column])
                continue
            counts = _counts(levels, column, len(comparison.levels), p)
            prior = np.array(comparison.prior_m)
            new_m.append((counts + prior_strength * prior) / (counts.sum() + prior_strength))
        new_share = float(np.clip(p.mean(), 1e-9, 1 - 1e-9))
        change = max(
            max(float(np.abs(a - b).max()) for a, b in zip(new_m, m, strict=True)),
            abs(new_share - share),
        )
        m, share = new_m, new_share
        if change < tolerance:
            return EmFit(m, share, iteration, True)
    return EmFit(m, share, max_iterations, False)


@dataclass(frozen=True, slots=True)
class FittedModel:
    """m and u of every level of every comparison, fitted on a roster and reported children."""

    comparisons: tuple[Comparison, ...]
    m: tuple[tuple[float, ...], ...]
    u: tuple[tuple[float, ...], ...]
    match_share: float
    random_pairs: int
    blocked_pairs: int
    iterations: int
    converged: bool

    def weight(self, comparison: int, level: int) -> float:
        """The match weight in bits of one level of one comparison, ``log2(m / u)``."""
        return math.log2(self.m[comparison][level] / self.u[comparison][level])

    def explain(self) -> list[str]:
        """The model as lines for people: each level's m, u and weight beside the hand-set."""
        lines = [
            f"Fellegi-Sunter model: u from {self.random_pairs:,} random roster pairs, m by "
            f"EM over {self.blocked_pairs:,} blocked pairs ({self.iterations} iterations"
            f"{'' if self.converged else ', not converged'}); share of matches among "
            f"blocked pairs {self.match_share:.4f}",
            f"{'comparison':<14} {'level':<11} {'m':>9} {'u':>11} {'bits':>7} "
            f"{'hand-set bits':>14}",
        ]
        for c, comparison in enumerate(self.comparisons):
            for level, name in enumerate(comparison.levels):
                hand = math.log2(comparison.prior_m[level] / comparison.prior_u[level])
                lines.append(
                    f"{comparison.name:<14} {name:<11} {self.m[c][level]:>9.5f} "
                    f"{self.u[c][level]:>11.7f} {self.weight(c, level):>7.2f} "
                    f"{hand:>14.2f}"
                )
        lines.append("a missing value adds 0 bits")
        return lines


def model_to_json(model: FittedModel) -> str:
    """The model as JSON to keep with a roster version: levels and numbers, no one's data."""
    return json.dumps(
        {
            "comparisons": [{"name": c.name, "levels": list(c.levels)} for c in model.comparisons],
            "m": [list(x) for x in model.m],
            "u": [list(x) for x in model.u],
            "match_share": model.match_share,
            "random_pairs": model.random_pairs,
            "blocked_pairs": model.blocked_pairs,
            "iterations": model.iterations,
            "converged": model.converged,
        }
    )


class ModelMismatch(ValueError):
    """A kept model does not fit this matcher's comparisons (written by another version)."""


def model_from_json(text: str, comparisons: tuple[Comparison, ...] = COMPARISONS) -> FittedModel:
    """A model kept by :func:`model_to_json`; :class:`ModelMismatch` when its comparisons or
    levels are not this matcher's, or its numbers are not probabilities."""
    try:
        data = json.loads(text)
        kept = [(c["name"], tuple(c["levels"])) for c in data["comparisons"]]
        m = tuple(tuple(float(v) for v in x) for x in data["m"])
        u = tuple(tuple(float(v) for v in x) for x in data["u"])
        model = FittedModel(
            comparisons,
            m,
            u,
            float(data["match_share"]),
            int(data["random_pairs"]),
            int(data["blocked_pairs"]),
            int(data["iterations"]),
            bool(data["converged"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelMismatch(f"not a matching model: {exc.__class__.__name__}") from None
    if kept != [(c.name, c.levels) for c in comparisons]:
        raise ModelMismatch("the model's comparisons are not this matcher's")
    sizes = [len(c.levels) for c in comparisons]
    if [len(x) for x in m] != sizes or [len(x) for x in u] != sizes:
        raise ModelMismatch("the model's levels are not this matcher's")
    for row in (*m, *u):
        if not all(0.0 < v <= 1.0 for v in row) or abs(sum(row) - 1.0) > 1e-6:
            raise ModelMismatch("the model's m and u are not probabilities")
    return model


def refit_u(model: FittedModel, random_pairs: Levels) -> FittedModel:
    """The model for a new roster: ``u`` measured again on ``random_pairs`` of its records,
    ``m`` kept. ``m`` says how reports of one child differ from its record (the reports'
    errors), which a new roster does not change; ``u`` is chance agreement among the roster's
    children, which it does."""
    u = estimate_u(random_pairs, model.comparisons)
    return replace(model, u=tuple(tuple(x.tolist()) for x in u), random_pairs=random_pairs.shape[0])


def fit_model(
    random_pairs: Levels,
    rounds: Sequence[tuple[int, Levels]],
    comparisons: tuple[Comparison, ...] = COMPARISONS,
) -> FittedModel:
    """u from ``random_pairs``, then m by EM in rounds, as Splink trains: each round's pairs
    were blocked on one comparison (``(column, levels)``), which that round leaves out. A
    comparison's m is the mean over the rounds that estimated it (the prior if none did);
    the share of matches is the last round's."""
    u = estimate_u(random_pairs, comparisons)
    estimates: list[list[npt.NDArray[np.float64]]] = [[] for _ in comparisons]
    share, iterations, converged, pairs = 0.0, 0, True, 0
    for column, levels in rounds:
        if not levels.shape[0]:
            continue
        em = fit_m(levels, u, comparisons, blocked_on=column)
        for c in range(len(comparisons)):
            if c != column:
                estimates[c].append(em.m[c])
        share, iterations = em.match_share, iterations + em.iterations
        converged, pairs = converged and em.converged, pairs + levels.shape[0]
    m = [
        np.mean(e, axis=0) if e else np.array(comparisons[c].prior_m)
        for c, e in enumerate(estimates)
    ]
    return FittedModel(
        comparisons,
        tuple(tuple(x.tolist()) for x in m),
        tuple(tuple(x.tolist()) for x in u),
        share,
        random_pairs.shape[0],
        pairs,
        iterations,
        converged,
    )


def levels_of(pairs: Iterable[tuple[Record, Record]]) -> Levels:
    """The :data:`Levels` of record pairs (the first of each plays the reported child)."""
    rows = [pair_levels(a, b) for a, b in pairs]
    return np.array(rows, dtype=np.int64).reshape(len(rows), len(COMPARISONS))


RANDOM_PAIRS = 50_000
"""Random roster pairs drawn for ``u`` (Splink's default order of magnitude)."""
MAX_BLOCKED_PAIRS = 200_000
"""Blocked pairs kept per EM round: enough for every level, bounded in time."""


def fit_roster(
    pupils: Sequence[Pupil], children: Sequence[Record] = (), *, seed: int = 1
) -> FittedModel:
    """The model of a roster: ``u`` from random pairs of its records, ``m`` by EM over the
    pairs blocked on the date of birth, then on the postcode. The pairs are the reported
    ``children`` against the roster when there are any (the incoming children), else the
    roster against itself (then few pairs are matches and ``m`` stays near its prior).
    Seeded: the same roster and children give the same model."""
    import random

    rng = random.Random(seed)
    n = len(pupils)
    if n < 2:
        return fit_model(np.zeros((0, len(COMPARISONS)), np.int64), [])
    random_pairs = levels_of(
        (pupils[a], pupils[b])
        for a, b in (rng.sample(range(n), 2) for _ in range(min(RANDOM_PAIRS, n * (n - 1) // 2)))
    )
    by_dob: dict[object, list[int]] = {}
    by_postcode: dict[str, list[int]] = {}
    for row, p in enumerate(pupils):
        by_dob.setdefault(p.date_of_birth, []).append(row)
        if p.postcode:
            by_postcode.setdefault(normalise_postcode(p.postcode), []).append(row)
    reported: list[Record] = list(children) or list(pupils)
    own = not children
    rounds: list[tuple[int, Levels]] = []
    for column in (2, 3):
        pairs: list[tuple[Record, Record]] = []
        for i, child in enumerate(reported):
            rows = (
                by_dob.get(child.date_of_birth, [])
                if column == 2
                else by_postcode.get(normalise_postcode(child.postcode), [])
                if child.postcode
                else []
            )
            for row in rows:
                if not (own and row == i):
                    pairs.append((child, pupils[row]))
            if len(pairs) >= MAX_BLOCKED_PAIRS:
                break
        rounds.append((column, levels_of(pairs)))
    return fit_model(random_pairs, rounds)


FIT_MIN_POPULATION = 1_000
"""Below this many pupils chance agreement cannot be measured: the hand-set weights are used."""


def random_pair_levels(
    pupil: Callable[[int], Record], n: int, *, seed: int = 1, pairs: int = RANDOM_PAIRS
) -> Levels:
    """The levels of up to ``pairs`` random pairs of distinct rows of a roster of ``n`` rows
    (``pupil(row)`` reads one). Seeded: one roster gives one sample."""
    import random

    rng = random.Random(seed)
    count = min(pairs, n * (n - 1) // 2) if n > 1 else 0
    return levels_of(
        (pupil(a), pupil(b)) for a, b in (rng.sample(range(n), 2) for _ in range(count))
    )


def roster_weights(random_pairs: Levels, population: int) -> RosterWeights:
    """The weights a roster of ``population`` pupils gives its matcher: the prior one in
    ``population`` (never above one in :data:`FIT_MIN_POPULATION`), and the date-of-birth and
    postcode levels' bits with ``u`` estimated from ``random_pairs`` of its records. ``m``
    stays the hand-set one (a roster alone holds no matches to learn it from), and a fitted
    ``u`` is never taken below the hand-set one (the weight of a level only ever falls), so
    this is never bolder than the hand-set model but for the prior of a smaller roster."""
    if population < FIT_MIN_POPULATION:
        return RosterWeights()
    u = estimate_u(random_pairs)

    def bits(
        table: dict[int, tuple[float, float]], fitted: npt.NDArray[np.float64]
    ) -> dict[int, float]:
        # the levels of a comparison are numbered as its columns of u
        return {
            level: math.log2(m / max(hand_u, float(fitted[level])))
            for level, (m, hand_u) in table.items()
        }

    return RosterWeights(
        prior=max(PRIOR_WEIGHT, -math.log2(population)),
        dob=bits(DOB_MU, u[2]),
        postcode=bits(POSTCODE_MU, u[3]),
    )


def model_weights(model: FittedModel, population: int) -> RosterWeights:
    """The weights a fitted model gives the matcher of a roster of ``population`` pupils:
    every level's ``m`` as fitted (the hand-set values entered the fit as its prior), its ``u``
    as fitted but never below the hand-set one (chance agreement on a small sample may look
    rarer than it is; a level's weight never rises through ``u``), and the prior one in
    ``population`` (never above one in :data:`FIT_MIN_POPULATION`). Exact names keep their
    term-frequency ``u``, scaled by the fitted ``u`` of the other name levels. Below
    :data:`FIT_MIN_POPULATION` pupils the hand-set weights are used."""
    if population < FIT_MIN_POPULATION and model.blocked_pairs == 0:
        return RosterWeights()
    tables = (GIVEN_MU, FAMILY_MU, DOB_MU, POSTCODE_MU)
    mu = [
        {
            level: (model.m[c][level], max(hand_u, model.u[c][level]))
            for level, (_, hand_u) in table.items()
        }
        for c, table in enumerate(tables)
    ]
    return RosterWeights(
        prior=max(PRIOR_WEIGHT, -math.log2(max(population, FIT_MIN_POPULATION))),
        dob={level: math.log2(m / u) for level, (m, u) in mu[2].items()},
        postcode={level: math.log2(m / u) for level, (m, u) in mu[3].items()},
        given=mu[0],
        family=mu[1],
    )


def _level_bits(bits: Mapping[int, float], names: type[IntEnum]) -> str:
    return ", ".join(
        f"{names(level).name.lower()} {value:.2f}" for level, value in sorted(bits.items())
    )


def explain_weights(weights: RosterWeights) -> list[str]:
    """The roster-dependent weights the matcher uses, as lines for people."""
    return [
        f"in use by the matcher for this roster: prior {weights.prior:.2f} bits; "
        f"date of birth {_level_bits(weights.dob, DobLevel)}; "
        f"postcode {_level_bits(weights.postcode, PostcodeLevel)}; "
        f"given name {_level_bits(_name_bits(weights.given), GivenLevel)}; "
        f"family name {_level_bits(_name_bits(weights.family), FamilyLevel)} "
        f"(exact names: u from the roster's name frequencies)"
    ]


def _name_bits(table: Mapping[int, tuple[float, float]]) -> dict[int, float]:
    return {level: math.log2(m / u) for level, (m, u) in table.items()}
