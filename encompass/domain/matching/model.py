"""The matcher's vocabulary: a reported child, a candidate, a decision and its result.

Re-exported by ``encompass.domain.match``, which the rest of the system imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

from encompass.domain.directory import Pupil


class Decision(StrEnum):
    MATCH = "match"
    REVIEW = "review"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class ChildQuery:
    """A child as the police report them: all we have to find them on a roster."""

    ref: str
    given_name: str
    family_name: str
    date_of_birth: date | None
    postcode: str
    upn: str | None = None
    gender: str | None = None
    school_hint: str | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    """A roster entry considered for the child: its match probability and the reasons."""

    pupil: Pupil
    score: float
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MatchResult:
    """The decision, the settings to notify (only for ``match``), the best candidate's match
    probability, why, and the candidates a reviewer sees (best first)."""

    decision: Decision
    setting_ids: tuple[str, ...]
    score: float
    reasons: tuple[str, ...]
    candidates: tuple[Candidate, ...] = field(default_factory=tuple)
