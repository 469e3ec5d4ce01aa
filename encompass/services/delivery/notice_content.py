"""What a Key Adult reads: the sealed notice built from one child of one incident version.

docs/receiving.md, and nothing more (data minimisation, need to know): the child's name and
date of birth; the police reference; when and where; whether the child was present and
where; the child's voice; brief circumstances; police actions; whom to contact; guidance.
Not the child's postcode, UPN, gender or injuries, nor any other child of the incident:
each notice is about one child only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal

from encompass.domain.envelope import ChildDetails, NoticeContent, OfficerContact
from encompass.domain.incident import IncidentReport, report_context

GUIDANCE: Final = (
    "Operation Encompass: the police are telling you so that you can support this child in "
    "school today. Treat this as confidential safeguarding information: record it on the "
    "child's safeguarding file and share it only with staff who need to know to support the "
    "child. Do not contact the child's parents or carers about the incident unless the "
    "police or children's social care advise it. Think about what the child may need today "
    "(a quiet space, a trusted adult, some flexibility) and watch for changes in them. If "
    "you are worried about the child's safety, follow your child protection procedures and "
    "contact children's social care; in an emergency call 999. Contact the officer or team "
    "named here if you need to know more. Acknowledge this notice when you have read it."
)

RETRACTION_GUIDANCE: Final = (
    "Operation Encompass: the police have withdrawn their earlier notice about this child "
    "and this incident. Do not act on it. Record on the child's safeguarding file that the "
    "notice was withdrawn, as your setting's policy requires, and tell the staff you shared "
    "it with. Contact the officer or team named here if you have questions."
)

RETRACTION_CIRCUMSTANCES: Final = "The police have withdrawn the notice about this incident."
RETRACTION_ACTIONS: Final = "Notice withdrawn by the police force."


def parse_stored_report(payload: str, received_at: datetime) -> IncidentReport:
    """The stored incident version as a report. It was validated when received; it is
    checked again against the clock of that moment, so an old report is never refused for
    lying "in the future" of a clock that has since moved."""
    return IncidentReport.model_validate_json(payload, context=report_context(received_at))


def build_notice_content(
    report: IncidentReport, *, position: int, notice_id: str, setting_id: str
) -> NoticeContent:
    """The notice for the child at ``position`` of ``report``, for one setting.

    Raises IndexError when the report has no child at ``position``, and pydantic's
    ValidationError if the content breaks the envelope's limits.
    """
    child = report.children[position]
    return _content(
        report,
        position,
        notice_id=notice_id,
        setting_id=setting_id,
        kind="notice",
        where_during=child.where_during,
        voice=child.voice,
        circumstances=report.circumstances,
        police_actions=report.police_actions,
        guidance=GUIDANCE,
    )


def build_retraction_content(
    report: IncidentReport, *, position: int, notice_id: str, setting_id: str
) -> NoticeContent:
    """The retraction of the notice for the child at ``position``: it names the same child
    and incident (so the Key Adult knows which notice to disregard) and repeats none of
    the incident's details."""
    return _content(
        report,
        position,
        notice_id=notice_id,
        setting_id=setting_id,
        kind="retraction",
        where_during=None,
        voice=None,
        circumstances=RETRACTION_CIRCUMSTANCES,
        police_actions=RETRACTION_ACTIONS,
        guidance=RETRACTION_GUIDANCE,
    )


def _content(
    report: IncidentReport,
    position: int,
    *,
    notice_id: str,
    setting_id: str,
    kind: Literal["notice", "retraction"],
    where_during: str | None,
    voice: str | None,
    circumstances: str,
    police_actions: str,
    guidance: str,
) -> NoticeContent:
    """What a notice and its retraction share (who, which incident, whom to contact), with
    the parts that differ given."""
    child = report.children[position]
    return NoticeContent(
        notice_id=notice_id,
        setting_id=setting_id,
        kind=kind,
        version=report.version,
        child=ChildDetails(
            given_name=child.given_name,
            family_name=child.family_name,
            date_of_birth=child.date_of_birth,
        ),
        police_reference=report.incident_ref,
        occurred_at=report.occurred_at,
        location=report.location,
        present=child.present,
        where_during=where_during,
        voice=voice,
        circumstances=circumstances,
        police_actions=police_actions,
        officer=OfficerContact(name=report.officer.name, contact=report.officer.contact),
        guidance=guidance,
    )
