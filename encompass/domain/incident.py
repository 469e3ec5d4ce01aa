"""The incident report: the message police systems send, validated at the boundary.

The same model is the HTTP body of ``POST /v1/incidents`` and the AMQP message body; the
JSON Schema in ``schemas/`` is generated from it. Unknown fields are refused so that a typo
never silently drops data about a child.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Postcode = Annotated[
    str,
    StringConstraints(strip_whitespace=True, to_upper=True, min_length=2, max_length=10,
                      pattern=r"^[A-Za-z0-9 ]+$"),
]
IncidentRef = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64,
                      pattern=r"^[A-Za-z0-9][A-Za-z0-9/_.-]*$"),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Officer(_Strict):
    """The officer or team a Key Adult may contact about the incident."""

    name: ShortText = Field(description="The officer's or team's name as the Key Adult "
                                        "should ask for them, e.g. \"PC 1234 Jones\".")
    contact: ShortText = Field(description="How to reach them: a telephone number or a "
                                           "secure e-mail address.")


class ChildReport(_Strict):
    """One child who lives where the incident happened or was present at it."""

    given_name: ShortText = Field(description="The child's given name, as the police "
                                              "recorded it.")
    family_name: ShortText = Field(description="The child's family name, as the police "
                                               "recorded it.")
    date_of_birth: date | None = Field(description="The child's date of birth (YYYY-MM-DD), "
                                                   "or null when not known; the child must "
                                                   "be under 18 on occurred_at.")
    postcode: Postcode = Field(description="The postcode of the child's home address.")
    upn: Annotated[str, StringConstraints(strip_whitespace=True, to_upper=True,
                                          pattern=r"^[A-Za-z0-9]{13}$")] | None = Field(
        None, description="The child's Unique Pupil Number (13 characters) when the police "
                          "know it; null otherwise.")
    gender: Annotated[str, StringConstraints(max_length=20)] | None = Field(
        None, description="The child's gender as recorded, or null.")
    present: bool = Field(description="Whether the child was present during the incident.")
    where_during: Text | None = Field(None, description="Where the child was during the "
                                                        "incident, or null.")
    voice: Text | None = Field(None, description="What the child said or how they seemed "
                                                 "(the voice of the child), or null.")
    injured: bool = Field(False, description="Whether the child was injured.")
    school_hint: ShortText | None = Field(None, description="The school or nursery the "
                                                            "police believe the child "
                                                            "attends, to help matching; "
                                                            "or null.")


def _now(info: ValidationInfo) -> datetime:
    context = info.context if isinstance(info.context, dict) else {}
    now = context.get("now")
    return now if isinstance(now, datetime) else datetime.now(UTC)


def age_on(born: date, day: date) -> int:
    """Whole years between ``born`` and ``day``."""
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


class IncidentReport(_Strict):
    """A force's report of one domestic abuse incident (or a new version of one). The force
    is the sender's credential, never a field; fields beyond these are refused."""

    incident_ref: IncidentRef = Field(description="The force's own reference for the "
                                                  "incident; with version, it makes a "
                                                  "report idempotent.")
    version: Annotated[int, Field(ge=1, le=10_000)] = Field(
        1, description="1 for the first report; a higher number replaces the unsent "
                       "notices of earlier versions. The same version again is harmless; "
                       "different content under it is refused.")
    occurred_at: AwareDatetime = Field(description="When the incident happened: ISO 8601 "
                                                   "with an offset; not in the future.")
    location: ShortText = Field(description="Where it happened, in words the Key Adult "
                                            "will understand, e.g. \"the family home\".")
    circumstances: Text = Field(description="Brief circumstances of the incident, for the "
                                            "Key Adult.")
    police_actions: Text = Field(description="What the police did.")
    officer: Officer = Field(description="Whom the Key Adult may contact.")
    children: Annotated[list[ChildReport], Field(min_length=1, max_length=50)] = Field(
        description="Every child who lives there or was present; at least one. Each child "
                    "gets its own notice, to each setting they attend.")

    @field_validator("occurred_at")
    @classmethod
    def _not_in_future(cls, value: datetime, info: ValidationInfo) -> datetime:
        # A minute's grace absorbs clock skew between the force's system and ours.
        if (value - _now(info)).total_seconds() > 60:
            raise ValueError("occurred_at may not lie in the future")
        return value

    @model_validator(mode="after")
    def _children_under_18(self) -> IncidentReport:
        day = self.occurred_at.date()
        for index, child in enumerate(self.children):
            if child.date_of_birth is None:
                continue
            if child.date_of_birth > day:
                raise ValueError(f"children[{index}].date_of_birth is after occurred_at")
            if age_on(child.date_of_birth, day) >= 18:
                raise ValueError(f"children[{index}] is 18 or over on occurred_at")
        return self


def parse_report(body: bytes | str, *, now: datetime) -> IncidentReport:
    """Validate a report's JSON against the clock ``now``; raises pydantic's ValidationError."""
    return IncidentReport.model_validate_json(body, context={"now": now})


def report_context(now: datetime) -> dict[str, Any]:
    return {"now": now}


_FIELD_NAMES = frozenset(IncidentReport.model_fields) | frozenset(
    ChildReport.model_fields) | frozenset(Officer.model_fields)


def describe_invalid(exc: ValidationError, what: str = "invalid incident report") -> str:
    """Where and why a report is invalid, for a dead-letter reason or a log line.

    Only positions, counts, pydantic's fixed error codes and the field names of our own
    model appear: a key the sender invented is shown as ``*`` (it could be anything, a
    child's name included), and no submitted value is ever quoted.
    """
    places = []
    for error in exc.errors()[:10]:
        parts = [str(part) if isinstance(part, int) or part in _FIELD_NAMES else "*"
                 for part in error["loc"]]
        places.append(f"{'.'.join(parts) or 'body'} ({error['type']})")
    return f"{what}: {exc.error_count()} error(s) at {', '.join(places)}"
