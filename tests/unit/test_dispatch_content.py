"""What a Key Adult reads: what docs/receiving.md lists and nothing more (no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from encompass.domain.incident import IncidentReport
from encompass.services.delivery.notice_content import (
    GUIDANCE,
    build_notice_content,
    build_retraction_content,
    parse_stored_report,
)

OCCURRED = datetime(2026, 11, 20, 22, 10, tzinfo=UTC)


def report() -> IncidentReport:
    return IncidentReport.model_validate(
        {
            "incident_ref": "CH-2026-000123",
            "version": 2,
            "occurred_at": OCCURRED.isoformat(),
            "location": "the family home",
            "circumstances": "Argument between adults.",
            "police_actions": "Officers attended.",
            "officer": {"name": "PC 1234 Jones", "contact": "0300 000 0000"},
            "children": [
                {
                    "given_name": "Amelia",
                    "family_name": "Smith",
                    "date_of_birth": "2015-03-02",
                    "postcode": "TF3 4NT",
                    "upn": "A12345678901B",
                    "gender": "F",
                    "present": True,
                    "where_during": "upstairs bedroom",
                    "voice": "said she was scared",
                    "injured": True,
                    "school_hint": "Oakfield",
                },
                {
                    "given_name": "Freddie",
                    "family_name": "Smith",
                    "date_of_birth": "2022-02-14",
                    "postcode": "TF3 4NT",
                    "present": False,
                },
            ],
        },
        context={"now": OCCURRED + timedelta(hours=1)},
    )


def test_the_notice_holds_the_content_the_brief_lists() -> None:
    content = build_notice_content(report(), position=0, notice_id="N-1", setting_id="URN1")
    assert (content.notice_id, content.setting_id, content.kind, content.version) == (
        "N-1",
        "URN1",
        "notice",
        2,
    )
    assert content.child.given_name == "Amelia" and str(content.child.date_of_birth) == "2015-03-02"
    assert content.police_reference == "CH-2026-000123" and content.occurred_at == OCCURRED
    assert content.location == "the family home" and content.present is True
    assert content.where_during == "upstairs bedroom" and content.voice == "said she was scared"
    assert content.circumstances and content.police_actions and content.officer.contact
    assert content.guidance == GUIDANCE


def test_nothing_more_than_the_brief_lists() -> None:
    text = build_notice_content(
        report(), position=0, notice_id="N-1", setting_id="URN1"
    ).model_dump_json()
    # Not the postcode, UPN, gender, injuries or school hint; not the sibling
    for absent in (
        "TF3 4NT",
        "A12345678901B",
        "Oakfield",
        "injured",
        "gender",
        "Freddie",
        "2022-02-14",
    ):
        assert absent not in text


def test_each_child_gets_only_their_own_notice() -> None:
    content = build_notice_content(report(), position=1, notice_id="N-2", setting_id="EY2")
    assert content.child.given_name == "Freddie" and content.present is False
    assert content.where_during is None and "Amelia" not in content.model_dump_json()


def test_a_retraction_names_the_child_and_incident_but_repeats_no_detail() -> None:
    content = build_retraction_content(report(), position=0, notice_id="N-1", setting_id="URN1")
    assert content.kind == "retraction" and content.police_reference == "CH-2026-000123"
    assert content.child.family_name == "Smith"
    text = content.model_dump_json()
    for detail in ("Argument", "Officers attended", "upstairs", "scared"):
        assert detail not in text
    assert "withdrawn" in content.guidance


def test_a_stored_report_reads_back_whatever_the_clock_says_now() -> None:
    payload = report().model_dump_json()
    # Read years later (or by a drill clock set before it): still valid as received
    again = parse_stored_report(payload, received_at=OCCURRED + timedelta(minutes=5))
    assert again == report()
