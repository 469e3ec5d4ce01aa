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

# Free text of a report (and of the sealed notice that repeats it).
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Postcode = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        to_upper=True,
        min_length=2,
        max_length=10,
        pattern=r"^[A-Za-z0-9 ]+$",
    ),
]
IncidentRef = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9/_.-]*$"
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Officer(_Strict):
    """The officer or team the Key Adult may contact about the incident."""

    name: ShortText = Field(
        description="The officer or team, as the Key Adult should ask for them.",
        examples=["PC 1234 Jones"],
    )
    contact: ShortText = Field(
        description="How to reach them: a telephone number or a secure e-mail address.",
        examples=["0300 000 0000"],
    )


class ChildReport(_Strict):
    """One child of the household, as the force knows them."""

    given_name: ShortText = Field(description="The child's given name.", examples=["Amelia"])
    family_name: ShortText = Field(description="The child's family name.", examples=["Smith"])
    date_of_birth: date | None = Field(
        description="The child's date of birth (YYYY-MM-DD), or null when unknown; the child "
        "must be under 18 on occurred_at.",
        examples=["2015-03-02"],
    )
    postcode: Postcode = Field(description="The child's home postcode.", examples=["TF3 4NT"])
    upn: (
        Annotated[
            str,
            StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[A-Za-z0-9]{13}$"),
        ]
        | None
    ) = Field(
        default=None,
        description="The child's Unique Pupil Number (13 characters), when the "
        "force knows it; an exact UPN on a roster places the child.",
        examples=["A123456789012"],
    )
    gender: Annotated[str, StringConstraints(max_length=20)] | None = Field(
        default=None, description="The child's gender as recorded, or null.", examples=["female"]
    )
    present: bool = Field(
        description="Whether the child was present at the incident.", examples=[True]
    )
    where_during: Text | None = Field(
        default=None,
        description="Where the child was during the incident.",
        examples=["upstairs bedroom"],
    )
    voice: Text | None = Field(
        default=None,
        description="The child's voice: whether they were spoken to, what they "
        "said, who else was there.",
        examples=["said she was scared"],
    )
    injured: bool = Field(
        default=False, description="Whether the child was injured.", examples=[False]
    )
    school_hint: ShortText | None = Field(
        default=None,
        description="The school or nursery the force believes the child "
        "attends, if any; a hint for matching, never trusted alone.",
        examples=["Hollinswood Primary"],
    )


def _now(info: ValidationInfo) -> datetime:
    context = info.context if isinstance(info.context, dict) else {}
    now = context.get("now")
    return now if isinstance(now, datetime) else datetime.now(UTC)


def age_on(born: date, day: date) -> int:
    """Whole years between ``born`` and ``day``."""
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


class IncidentReport(_Strict):
    """A police force's report of a domestic abuse incident involving children."""

    incident_ref: IncidentRef = Field(
        description="The force's own reference for the incident; with the force and the "
        "version it makes a report idempotent.",
        examples=["CH-2026-000123"],
    )
    version: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=1,
        description="The report's version: a higher version amends the incident "
        "and replaces its unsent notices.",
        examples=[1],
    )
    occurred_at: AwareDatetime = Field(
        description="When the incident happened, with its UTC offset; not in the future.",
        examples=["2026-11-22T23:10:00+00:00"],
    )
    location: ShortText = Field(
        description="Where the incident happened.", examples=["the family home"]
    )
    circumstances: Text = Field(
        description="Brief circumstances, written for the Key Adult.",
        examples=["Verbal argument between adults; neighbours called police."],
    )
    police_actions: Text = Field(
        description="What the police did.",
        examples=["One adult arrested; safeguarding referral made."],
    )
    officer: Officer = Field(
        description="Who the Key Adult may contact.",
        examples=[{"name": "PC 1234 Jones", "contact": "0300 000 0000"}],
    )
    children: Annotated[list[ChildReport], Field(min_length=1, max_length=50)] = Field(
        description="The children of the household (1 to 50); each becomes one notice per "
        "setting the child attends.",
        examples=[
            [
                {
                    "given_name": "Amelia",
                    "family_name": "Smith",
                    "date_of_birth": "2015-03-02",
                    "postcode": "TF3 4NT",
                    "present": True,
                    "where_during": "upstairs bedroom",
                    "voice": "said she was scared",
                }
            ]
        ],
    )

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


_FIELD_NAMES = (
    frozenset(IncidentReport.model_fields)
    | frozenset(ChildReport.model_fields)
    | frozenset(Officer.model_fields)
)


def describe_invalid(exc: ValidationError, what: str = "invalid incident report") -> str:
    """Where and why a report is invalid, for a dead-letter reason or a log line.

    Only positions, counts, pydantic's fixed error codes and the field names of our own
    model appear: a key the sender invented is shown as ``*`` (it could be anything, a
    child's name included), and no submitted value is ever quoted.
    """
    places = []
    for error in exc.errors()[:10]:
        parts = [
            str(part) if isinstance(part, int) or part in _FIELD_NAMES else "*"
            for part in error["loc"]
        ]
        places.append(f"{'.'.join(parts) or 'body'} ({error['type']})")
    return f"{what}: {exc.error_count()} error(s) at {', '.join(places)}"
