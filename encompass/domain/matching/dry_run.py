"""The dry run behind ``encompass match CHILDREN.jsonl``: decisions without side effects.

Each input line is one reported child as JSON::

    {"ref": "r1", "given_name": "Alfie", "family_name": "Smith", "date_of_birth": "2015-03-07",
     "postcode": "LS6 2QT", "upn": null, "gender": "M", "school_hint": null}

``date_of_birth`` may be null, ``upn``, ``gender`` and ``school_hint`` may be absent. Each
output is ``{"ref", "decision", "setting_ids", "score", "reasons"}``; a ``review`` also carries
``candidates``, ``[{"setting_id", "score", "reasons"}, ...]``, best first, at most
:data:`SHOWN_CANDIDATES` (one per setting; empty when there is none), so that a council can see
where an unsure child might be. A line that cannot be read gives ``decision: "error"`` with
the reason, and the run goes on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import date
from typing import Any

from encompass.domain.matching.index import RosterIndex
from encompass.domain.matching.model import Candidate, ChildQuery, Decision

SHOWN_CANDIDATES = 5
_REQUIRED = ("given_name", "family_name", "postcode")


def _text(record: dict[str, Any], key: str) -> str | None:
    value = record.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string")
    return value


def parse_child(line: str, number: int) -> ChildQuery:
    """One JSON line as a ``ChildQuery``; ``ValueError`` says what is wrong (never the values)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg})") from None
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    missing = [key for key in _REQUIRED if not isinstance(record.get(key), str)]
    if missing:
        raise ValueError(f"missing or not text: {', '.join(missing)}")
    dob_text = _text(record, "date_of_birth")
    try:
        dob = date.fromisoformat(dob_text) if dob_text else None
    except ValueError:
        raise ValueError("date_of_birth is not an ISO date (YYYY-MM-DD)") from None
    return ChildQuery(
        ref=_text(record, "ref") or f"line {number}",
        given_name=record["given_name"],
        family_name=record["family_name"],
        date_of_birth=dob,
        postcode=record["postcode"],
        upn=_text(record, "upn"),
        gender=_text(record, "gender"),
        school_hint=_text(record, "school_hint"),
    )


def match_children(index: RosterIndex, lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Match every child of a JSON-lines input against the roster index, one dict per child
    (blank lines skipped), in input order. Nothing is written or sent."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            query = parse_child(line, number)
        except ValueError as exc:
            yield {
                "ref": f"line {number}",
                "decision": "error",
                "setting_ids": [],
                "score": 0.0,
                "reasons": [f"invalid line: {exc}"],
            }
            continue
        result = index.match(query)
        out: dict[str, Any] = {
            "ref": query.ref,
            "decision": result.decision.value,
            "setting_ids": list(result.setting_ids),
            "score": result.score,
            "reasons": list(result.reasons),
        }
        if result.decision == Decision.REVIEW:
            out["candidates"] = candidates_json(result.candidates)
        yield out


def candidates_json(candidates: Iterable[Candidate]) -> list[dict[str, Any]]:
    """A reviewer's candidates as the dry run prints them: best first, one per setting (its
    best record), at most :data:`SHOWN_CANDIDATES`."""
    ranked = sorted(candidates, key=lambda c: c.score, reverse=True)
    best: dict[str, Candidate] = {}
    for c in ranked:
        best.setdefault(c.pupil.setting_id, c)
    return [
        {"setting_id": c.pupil.setting_id, "score": c.score, "reasons": list(c.reasons)}
        for c in list(best.values())[:SHOWN_CANDIDATES]
    ]
