"""The roster index: columns instead of objects, blocking that finds the child, the dry run."""

from __future__ import annotations

import json
from datetime import date

from encompass.domain.directory import Pupil
from encompass.domain.match import ChildQuery, Decision, RosterHolder, RosterIndex
from encompass.domain.matching.columns import columns_from_sequences
from encompass.domain.matching.dry_run import match_children

DOB = date(2015, 3, 7)
PUPILS = [
    Pupil("PRI-1", "B801200005001", "Alfred", "Okonkwo-Smith", DOB, "LS6 2QT", "M"),
    Pupil("PRI-1", None, "Chidi", "Okonkwo-Smith", date(2017, 9, 1), "LS6 2QT", "M"),
    Pupil("PRI-2", None, "Grace", "Hughes", DOB, "M14 5RR", "F"),
    Pupil("EY-3", None, "Zoë", "Brontë", date(2021, 8, 30), "LS6 3AD", None),
]


def test_pupils_round_trip_through_the_columns() -> None:
    index = RosterIndex.from_pupils(iter(PUPILS))  # a generator is enough
    assert len(index) == 4
    assert [index.columns.pupil(i) for i in range(4)] == PUPILS
    assert index.nbytes < 2_000


def test_columns_from_sequences_build_the_same_index() -> None:
    columns = columns_from_sequences(
        *(
            list(col)
            for col in zip(
                *(
                    (
                        p.setting_id,
                        p.upn,
                        p.given_name,
                        p.family_name,
                        p.date_of_birth,
                        p.postcode,
                        p.gender,
                    )
                    for p in PUPILS
                ),
                strict=True,
            )
        )
    )
    assert RosterIndex(columns).candidates(ChildQuery("r", "Grace", "Hughes", DOB, "")) == [
        PUPILS[2]
    ]


def test_blocking_finds_the_child_through_any_single_error() -> None:
    index = RosterIndex.from_pupils(PUPILS)
    alfred = PUPILS[0]
    queries = [
        ChildQuery("upn only", "X", "Y", None, "", upn="B801200005001"),
        ChildQuery("moved", "Alfie", "Smith", DOB, "SW1A 1AA"),
        ChildQuery("new surname", "Alfred", "Brown", DOB, "SW1A 1AA"),
        ChildQuery("wrong date", "Alfred", "Okonkwo", date(2012, 1, 1), "LS6 2QT"),
        ChildQuery("transposed, moved", "Alfred", "Okonkwo", date(2015, 7, 3), "SW1A 1AA"),
        ChildQuery("year slip, moved", "Alfred", "Smith", date(2016, 3, 7), "SW1A 1AA"),
        ChildQuery("swapped, moved", "Okonkwo", "Alfred", DOB, "SW1A 1AA"),
    ]
    for query in queries:
        assert alfred in index.candidates(query), query.ref


def test_blocking_does_not_compare_everyone() -> None:
    index = RosterIndex.from_pupils(PUPILS)
    assert index.candidates(ChildQuery("r", "Nobody", "Known", date(2009, 1, 1), "EX1 1AA")) == []


def test_the_holder_rebuilds_only_when_the_version_changes() -> None:
    holder, loads = RosterHolder(), []

    def load() -> list[Pupil]:
        loads.append(1)
        return PUPILS

    first = holder.get("v1", load)
    assert holder.get("v1", load) is first and len(loads) == 1
    assert holder.get("v2", load) is not first and len(loads) == 2


def test_dry_run_reports_one_line_per_child() -> None:
    index = RosterIndex.from_pupils(PUPILS)
    lines = [
        json.dumps(
            {
                "ref": "a",
                "given_name": "Alfie",
                "family_name": "Okonkwo-Smith",
                "date_of_birth": "2015-03-07",
                "postcode": "LS6 2QT",
            }
        ),
        "",
        "{not json",
        json.dumps(
            {
                "ref": "c",
                "given_name": "Zoe",
                "family_name": "Bronte",
                "date_of_birth": "30/08/2021",
                "postcode": "LS6 3AD",
            }
        ),
        json.dumps(
            {
                "given_name": "Nobody",
                "family_name": "Known",
                "date_of_birth": None,
                "postcode": "EX1 1AA",
            }
        ),
    ]
    out = list(match_children(index, lines))
    assert [o["ref"] for o in out] == ["a", "line 3", "line 4", "line 5"]
    assert out[0]["decision"] == Decision.MATCH and out[0]["setting_ids"] == ["PRI-1"]
    assert out[1]["decision"] == "error" and "not JSON" in out[1]["reasons"][0]
    assert out[2]["decision"] == "error" and "ISO date" in out[2]["reasons"][0]
    assert out[3]["decision"] == Decision.NONE
    assert set(out[0]) == {"ref", "decision", "setting_ids", "score", "reasons"}
