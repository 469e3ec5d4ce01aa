"""The EM fit of m and u: it recovers known parameters from pairs drawn with them."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from encompass.domain.directory import Pupil
from encompass.domain.matching.fit import (
    COMPARISONS,
    MISSING,
    Comparison,
    FittedModel,
    ModelMismatch,
    estimate_u,
    explain_weights,
    fit_m,
    fit_model,
    levels_of,
    model_from_json,
    model_to_json,
    model_weights,
    pair_levels,
    refit_u,
    roster_weights,
)
from encompass.domain.matching.scoring import RosterWeights

KNOWN = (
    Comparison("a", ("exact", "close", "differs"), (0.8, 0.15, 0.05), (0.05, 0.15, 0.8)),
    Comparison("b", ("exact", "differs"), (0.9, 0.1), (0.1, 0.9)),
    Comparison("c", ("exact", "close", "differs"), (0.7, 0.2, 0.1), (0.02, 0.08, 0.9)),
)
FLAT = tuple(
    Comparison(
        c.name,
        c.levels,
        tuple(1 / len(c.levels) for _ in c.levels),
        tuple(1 / len(c.levels) for _ in c.levels),
    )
    for c in KNOWN
)


def _draw(
    rng: np.random.Generator, n: int, share: float, missing: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    is_match = rng.random(n) < share
    columns = []
    for c in KNOWN:
        m = rng.choice(len(c.levels), size=n, p=c.prior_m)
        u = rng.choice(len(c.levels), size=n, p=c.prior_u)
        column = np.where(is_match, m, u)
        column[rng.random(n) < missing] = MISSING
        columns.append(column)
    return np.stack(columns, axis=1).astype(np.int64), is_match


def test_em_recovers_known_m_u_and_share() -> None:
    rng = np.random.default_rng(7)
    random_pairs, _ = _draw(rng, 50_000, share=0.0)
    blocked, truth = _draw(rng, 40_000, share=0.3, missing=0.1)
    # starting from flat priors, nothing of the truth given
    u = estimate_u(random_pairs, FLAT)
    fit = fit_m(blocked, u, FLAT, match_share=0.5, prior_strength=1.0)
    assert fit.converged
    for c, comparison in enumerate(KNOWN):
        assert np.allclose(u[c], comparison.prior_u, atol=0.01)
        assert np.allclose(fit.m[c], comparison.prior_m, atol=0.03), (c, fit.m[c])
    assert abs(fit.match_share - truth.mean()) < 0.02


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.05, 0.6))
def test_m_and_u_are_distributions_whatever_the_data(seed: int, share: float) -> None:
    rng = np.random.default_rng(seed)
    random_pairs, _ = _draw(rng, 500, share=0.0, missing=0.3)
    blocked, _ = _draw(rng, 500, share=share, missing=0.3)
    u = estimate_u(random_pairs, KNOWN)
    fit = fit_m(blocked, u, KNOWN)
    for values in (*u, *fit.m):
        assert np.all(values > 0) and abs(values.sum() - 1) < 1e-9
    assert 0 < fit.match_share < 1


def test_a_missing_value_is_neutral() -> None:
    a = Pupil("S", None, "", "Smith", date.fromisoformat("2015-03-07"), "LS6 2QT", None)
    b = Pupil("S", None, "Jack", "Smith", date.fromisoformat("2015-03-07"), "", None)
    assert pair_levels(a, b) == (MISSING, 0, 0, MISSING)


def test_the_roster_model_explains_every_level() -> None:
    pupils = [
        Pupil("S", None, g, f, date.fromisoformat(d), p, None)
        for g, f, d, p in [
            ("Jack", "Smith", "2015-03-07", "LS6 2QT"),
            ("Jack", "Smith", "2015-07-03", "LS6 2QT"),
            ("Amy", "Khan", "2016-01-02", "B23 6TH"),
            ("Ann", "Khan", "2016-01-02", "B23 6TH"),
        ]
    ]
    random = levels_of([(pupils[0], pupils[2]), (pupils[1], pupils[3])])
    blocked = levels_of([(pupils[0], pupils[1]), (pupils[2], pupils[3])])
    model = fit_model(random, [(2, blocked)])
    lines = model.explain()
    assert len(lines) == 2 + sum(len(c.levels) for c in COMPARISONS) + 1
    assert any(line.startswith("date of birth  transposed") for line in lines)


def test_a_small_roster_keeps_the_hand_set_weights() -> None:
    assert roster_weights(np.zeros((0, 4), np.int64), 500) == RosterWeights()


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(-1, 7), st.integers(-1, 4), st.integers(-1, 3), st.integers(-1, 3)),
        min_size=1,
        max_size=300,
    ),
    st.integers(1_000, 5_000_000),
)
def test_a_roster_never_makes_a_level_bolder_than_the_hand_set_weight(
    rows: list[tuple[int, int, int, int]], population: int
) -> None:
    fitted = roster_weights(np.array(rows, dtype=np.int64), population)
    hand = RosterWeights()
    assert all(fitted.dob[level] <= hand.dob[level] + 1e-9 for level in hand.dob)
    assert all(fitted.postcode[level] <= hand.postcode[level] + 1e-9 for level in hand.postcode)
    assert fitted.prior == max(hand.prior, -np.log2(population))


def test_a_roster_where_many_share_a_postcode_weighs_postcode_agreement_less() -> None:
    rng = np.random.default_rng(3)
    rows = np.stack(
        [
            rng.integers(0, 8, 20_000),
            rng.integers(0, 5, 20_000),
            np.where(rng.random(20_000) < 0.002, 0, 3),
            np.where(rng.random(20_000) < 0.01, 0, 3),
        ],
        axis=1,
    )
    fitted = roster_weights(rows.astype(np.int64), 2_000)
    hand = RosterWeights()
    assert fitted.postcode[0] < hand.postcode[0] - 5  # 1 in 100 share it, not 1 in 50,000
    assert fitted.prior == pytest.approx(-np.log2(2_000))
    lines = explain_weights(fitted)
    assert lines[0].startswith("in use by the matcher for this roster: prior -10.97 bits")


def test_the_matcher_weighs_names_dates_and_postcodes_with_the_fitted_m() -> None:
    rng = np.random.default_rng(11)
    random_pairs = np.stack(
        [rng.integers(0, 8, 30_000), rng.integers(0, 5, 30_000)]
        + [rng.integers(0, 4, 30_000) for _ in range(2)],
        axis=1,
    ).astype(np.int64)
    # blocked pairs where a quarter are matches whose family name is a slip half the time
    n = 20_000
    match = rng.random(n) < 0.25
    blocked = np.stack(
        [
            np.where(match, 0, 7),
            np.where(match, np.where(rng.random(n) < 0.5, 3, 0), 4),
            np.zeros(n, np.int64),
            np.where(match, 0, 3),
        ],
        axis=1,
    ).astype(np.int64)
    model = fit_model(random_pairs, [(2, blocked)])
    weights = model_weights(model, 100_000)
    hand = RosterWeights()
    fuzzy = 3  # FamilyLevel.FUZZY
    assert weights.family[fuzzy][0] == pytest.approx(model.m[1][fuzzy])
    assert weights.family[fuzzy][0] > 5 * hand.family[fuzzy][0]  # learned: slips are common
    for fitted, hand_set in ((weights.given, hand.given), (weights.family, hand.family)):
        assert all(fitted[level][1] >= hand_set[level][1] for level in hand_set)
    assert weights.prior == pytest.approx(-np.log2(100_000))
    assert weights.dob[0] == pytest.approx(np.log2(model.m[2][0] / max(model.u[2][0], 1 / 6000)))


def _a_model() -> FittedModel:
    rng = np.random.default_rng(5)
    random_pairs = np.stack(
        [rng.integers(0, len(c.levels), 2_000) for c in COMPARISONS], axis=1
    ).astype(np.int64)
    return fit_model(random_pairs, [(2, random_pairs[:500])])


def test_a_kept_model_reads_back_as_it_was_written() -> None:
    model = _a_model()
    assert model_from_json(model_to_json(model)) == model


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d.update(comparisons=d["comparisons"][:3]),
        lambda d: d["comparisons"][0]["levels"].append("new level"),
        lambda d: d["m"][0].__setitem__(0, 1.5),
        lambda d: d["u"][1].pop(),
        lambda d: d.pop("match_share"),
    ],
)
def test_a_kept_model_that_is_not_this_matchers_is_refused(damage: Any) -> None:
    data = json.loads(model_to_json(_a_model()))
    damage(data)
    with pytest.raises(ModelMismatch):
        model_from_json(json.dumps(data))
    with pytest.raises(ModelMismatch):
        model_from_json("not json")


def test_a_new_roster_refits_u_and_keeps_m() -> None:
    model = _a_model()
    everyone_shares_a_postcode = np.zeros((1_000, len(COMPARISONS)), np.int64)
    refitted = refit_u(model, everyone_shares_a_postcode)
    assert refitted.m == model.m
    assert refitted.u[3][0] > 0.99 and refitted.random_pairs == 1_000
