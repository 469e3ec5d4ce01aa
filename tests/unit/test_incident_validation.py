"""The incident report boundary: what is accepted and what is refused, and why."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from encompass.domain.incident import IncidentReport, age_on, describe_invalid, parse_report

NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)


def valid() -> dict[str, Any]:
    return {
        "incident_ref": "CH-2026-000123",
        "version": 1,
        "occurred_at": "2026-11-22T23:10:00+00:00",
        "location": "the family home",
        "circumstances": "free text for the Key Adult",
        "police_actions": "free text",
        "officer": {"name": "PC 1234 Jones", "contact": "0300 000 0000"},
        "children": [
            {
                "given_name": "Amelia",
                "family_name": "Smith",
                "date_of_birth": "2015-03-02",
                "postcode": "TF3 4NT",
                "upn": None,
                "gender": None,
                "present": True,
                "where_during": "upstairs bedroom",
                "voice": "said she was scared",
                "injured": False,
                "school_hint": None,
            }
        ],
    }


def parse(data: dict[str, Any]) -> IncidentReport:
    return parse_report(json.dumps(data), now=NOW)


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as info:
        parse(data)
    return [".".join(str(p) for p in e["loc"]) + ": " + e["msg"] for e in info.value.errors()]


def test_the_interface_example_is_accepted() -> None:
    report = parse(valid())
    assert report.children[0].postcode == "TF3 4NT"
    assert report.version == 1


def test_postcode_and_upn_are_normalised_to_upper_case() -> None:
    data = valid()
    data["children"][0]["postcode"] = " tf3 4nt "
    data["children"][0]["upn"] = "a123456789012"
    child = parse(data).children[0]
    assert (child.postcode, child.upn) == ("TF3 4NT", "A123456789012")


@pytest.mark.parametrize("where", ["top", "child", "officer"])
def test_unknown_fields_are_refused_so_a_typo_never_drops_data(where: str) -> None:
    data = valid()
    target = {"top": data, "child": data["children"][0], "officer": data["officer"]}[where]
    target["date_of_brith"] = "2015-03-02"
    assert any("date_of_brith" in p and "Extra inputs" in p for p in problems(data))


def test_a_child_of_18_on_the_day_is_refused() -> None:
    data = valid()
    data["children"][0]["date_of_birth"] = "2008-11-22"
    assert any("18 or over" in p for p in problems(data))


def test_a_child_of_17_turning_18_tomorrow_is_accepted() -> None:
    data = valid()
    data["children"][0]["date_of_birth"] = "2008-11-23"
    assert parse(data).children[0].date_of_birth is not None


def test_a_birth_after_the_incident_is_refused() -> None:
    data = valid()
    data["children"][0]["date_of_birth"] = "2026-11-23"
    assert any("after occurred_at" in p for p in problems(data))


def test_an_unknown_date_of_birth_is_accepted() -> None:
    data = valid()
    data["children"][0]["date_of_birth"] = None
    assert parse(data).children[0].date_of_birth is None


def test_occurred_at_in_the_future_is_refused() -> None:
    data = valid()
    data["occurred_at"] = "2026-11-23T06:05:00+00:00"
    assert any("future" in p for p in problems(data))


def test_a_minute_of_clock_skew_is_tolerated() -> None:
    data = valid()
    data["occurred_at"] = "2026-11-23T06:00:30+00:00"
    assert parse(data).occurred_at.tzinfo is not None


def test_a_naive_occurred_at_is_refused() -> None:
    data = valid()
    data["occurred_at"] = "2026-11-22T23:10:00"
    assert any(p.startswith("occurred_at") and "timezone" in p for p in problems(data))


def test_at_least_one_child() -> None:
    data = valid()
    data["children"] = []
    assert any(p.startswith("children") for p in problems(data))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("incident_ref", ""),
        ("incident_ref", "has spaces"),
        ("version", 0),
        ("location", "   "),
        ("officer", None),
    ],
)
def test_bad_top_level_values_are_refused(field: str, value: object) -> None:
    data = valid()
    data[field] = value
    assert any(p.startswith(field) for p in problems(data))


def test_age_on_counts_whole_years() -> None:
    born = datetime(2010, 2, 28).date()
    assert age_on(born, datetime(2028, 2, 27).date()) == 17
    assert age_on(born, datetime(2028, 2, 28).date()) == 18


def test_a_dead_letter_reason_names_our_fields_and_positions_only() -> None:
    # Given a report with a key the sender invented (it could be a child's name), a value
    # of the wrong type and a missing field
    data = valid()
    data["Amelia Smith 2015-03-02"] = "TF3 4NT"
    data["children"][0]["present"] = "Amelia"
    del data["officer"]["contact"]
    with pytest.raises(ValidationError) as info:
        parse(data)
    reason = describe_invalid(info.value)
    # Then the reason counts the errors and names where, in our own vocabulary
    assert reason.startswith("invalid incident report: 3 error(s) at ")
    assert "children.0.present (bool_parsing)" in reason
    assert "officer.contact (missing)" in reason
    assert "* (extra_forbidden)" in reason
    # And quotes nothing the sender wrote
    for quoted in ("Amelia", "Smith", "2015", "TF3"):
        assert quoted not in reason


def test_a_body_that_is_not_json_is_described_without_quoting_it() -> None:
    with pytest.raises(ValidationError) as info:
        parse_report(b'{"Amelia": ', now=NOW)
    reason = describe_invalid(info.value)
    assert reason == "invalid incident report: 1 error(s) at body (json_invalid)"
