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
    name: ShortText
    contact: ShortText


class ChildReport(_Strict):
    given_name: ShortText
    family_name: ShortText
    date_of_birth: date | None
    postcode: Postcode
    upn: Annotated[str, StringConstraints(strip_whitespace=True, to_upper=True,
                                          pattern=r"^[A-Za-z0-9]{13}$")] | None = None
    gender: Annotated[str, StringConstraints(max_length=20)] | None = None
    present: bool
    where_during: Text | None = None
    voice: Text | None = None
    injured: bool = False
    school_hint: ShortText | None = None


def _now(info: ValidationInfo) -> datetime:
    context = info.context if isinstance(info.context, dict) else {}
    now = context.get("now")
    return now if isinstance(now, datetime) else datetime.now(UTC)


def age_on(born: date, day: date) -> int:
    """Whole years between ``born`` and ``day``."""
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


class IncidentReport(_Strict):
    incident_ref: IncidentRef
    version: Annotated[int, Field(ge=1, le=10_000)] = 1
    occurred_at: AwareDatetime
    location: ShortText
    circumstances: Text
    police_actions: Text
    officer: Officer
    children: Annotated[list[ChildReport], Field(min_length=1, max_length=50)]

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
