"""The synthetic population and the matcher's quality on a small one (the benchmark runs the
large ones): seeded, labelled, and no false match."""

from __future__ import annotations

from collections import Counter

from encompass.domain.match import Decision, RosterIndex
from encompass.testing.population import Population

POPULATION = Population(seed=11, roster_size=8_000, n_queries=900)


def test_the_population_is_seeded_and_labelled() -> None:
    again = Population(seed=11, roster_size=8_000, n_queries=900)
    assert [q.query for q in again.queries] == [q.query for q in POPULATION.queries]
    pupils = list(POPULATION.pupils())
    assert len(pupils) >= 8_000
    for lq in POPULATION.queries:
        assert lq.truth == {pupils[row].setting_id for row in lq.truth_rows}
    kinds = Counter(q.kind for q in POPULATION.queries)
    off = sum(n for kind, n in kinds.items() if kind != "enrolled") / len(POPULATION.queries)
    assert 0.18 < off < 0.32
    assert {"unenrolled", "namesake", "absent_twin"} <= set(kinds)
    errors = Counter(e for q in POPULATION.queries for e in q.errors)
    assert {
        "nickname",
        "double_barrel_part",
        "dob_transposed",
        "moved_away",
        "postcode_typo",
    } <= set(errors)
    assert any(len(q.truth) == 2 for q in POPULATION.queries)  # two enrolments


def test_no_false_match_and_high_recall_on_a_small_population() -> None:
    index = RosterIndex.from_pupils(POPULATION.pupils())
    outcome: Counter[str] = Counter()
    on_roster = 0
    for lq in POPULATION.queries:
        rows = set(index.candidate_rows(lq.query).tolist())
        result = index.match(lq.query)
        on_roster += bool(lq.truth)
        outcome["blocked"] += len(lq.truth_rows & rows)
        outcome["truth_rows"] += len(lq.truth_rows)
        if result.decision == Decision.MATCH:
            assert set(result.setting_ids) <= lq.truth, (lq, result)
            outcome["auto"] += 1
        elif result.decision == Decision.REVIEW and lq.truth:
            outcome["review"] += 1
    assert outcome["blocked"] / outcome["truth_rows"] > 0.99
    assert outcome["auto"] / on_roster > 0.8
    assert (outcome["auto"] + outcome["review"]) / on_roster > 0.98
