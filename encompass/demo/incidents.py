"""The demo night's incident reports, as a force's system would send them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any


def _child(
    given: str,
    family: str,
    born: str,
    postcode: str,
    *,
    present: bool = True,
    where: str | None = None,
    voice: str | None = None,
) -> dict[str, Any]:
    return {
        "given_name": given,
        "family_name": family,
        "date_of_birth": born,
        "postcode": postcode,
        "upn": None,
        "gender": None,
        "present": present,
        "where_during": where,
        "voice": voice,
        "injured": False,
        "school_hint": None,
    }


def night_of_incidents(night: datetime, *, run: str) -> list[dict[str, Any]]:
    """Six incidents in the hours before ``night``: siblings at a school and a nursery,
    a child at two settings, a twin, a child on no roll, a child at a Welsh school, and
    one the force will withdraw (the last)."""

    def report(
        n: int, hours_before: float, location: str, children: list[dict[str, Any]]
    ) -> dict[str, Any]:
        return {
            "incident_ref": f"DEMO-{run}-{n:03d}",
            "version": 1,
            "occurred_at": (night - timedelta(hours=hours_before)).isoformat(),
            "location": location,
            "circumstances": "Verbal argument between adults; police called by a neighbour.",
            "police_actions": "Officers attended; one adult left the address for the night.",
            "officer": {"name": "PC 1234 Jones", "contact": "0300 000 0000"},
            "children": children,
        }

    return [
        report(
            1,
            1.5,
            "the family home",
            [
                _child(
                    "Amelia",
                    "Smith",
                    "2015-03-02",
                    "TF3 4NT",
                    where="upstairs bedroom",
                    voice="said she was scared",
                ),
                _child("Oliver", "Smith", "2017-07-19", "TF3 4NT", where="upstairs bedroom"),
                _child("Freddie", "Smith", "2022-02-14", "TF3 4NT", where="living room"),
            ],
        ),
        report(
            2,
            1.0,
            "the family home",
            [
                _child("Noah", "Jones", "2018-01-30", "TF3 5AB", present=False),
            ],
        ),
        report(
            3,
            0.75,
            "a street near the home",
            [
                _child("Isla", "Patel", "2016-05-11", "TF3 4QQ", where="in the car"),
            ],
        ),
        report(
            4,
            0.5,
            "the family home",
            [
                _child("Harry", "Brown", "2013-06-01", "TF1 2ZZ", where="kitchen"),
            ],
        ),
        report(
            5,
            0.25,
            "the family home",
            [
                _child("Cerys", "Evans", "2014-10-09", "LL11 1AB", where="hallway"),
            ],
        ),
        report(
            6,
            0.1,
            "the family home",
            [
                _child("Oliver", "Smith", "2017-07-19", "TF3 4NT", present=False),
            ],
        ),
    ]
