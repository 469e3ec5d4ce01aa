"""Unique Pupil Numbers: validated with ``stdnum.gb.upn`` and compared.

A UPN is 13 characters with a check letter, so a typing slip almost always fails validation:
an invalid reported UPN is ignored rather than trusted. Two *valid* UPNs that differ are a
conflict, which no amount of name agreement may override: such a child goes to review.
"""

from __future__ import annotations

from enum import IntEnum

from stdnum.exceptions import ValidationError
from stdnum.gb import upn as stdnum_upn


class UpnLevel(IntEnum):
    """How a reported UPN agrees with a roster's."""

    EXACT = 0
    CONFLICT = 1
    MISSING = 2


def valid_upn(upn: str | None) -> str | None:
    """The compact UPN when it passes its checks (format, LA number, check letter), else None."""
    if not upn:
        return None
    try:
        return str(stdnum_upn.validate(upn))
    except ValidationError:
        return None


def compare_upn(query: str | None, roster: str | None) -> tuple[UpnLevel, str]:
    """Compare a *validated* reported UPN with a roster's (validated here, cached by caller)."""
    if not query or not roster:
        return UpnLevel.MISSING, "UPN: not on both records"
    roster_clean = roster.replace(" ", "").upper()
    if query == roster_clean:
        return UpnLevel.EXACT, "UPN: exact"
    if valid_upn(roster_clean) is None:
        return UpnLevel.MISSING, "UPN: roster UPN invalid (ignored)"
    return UpnLevel.CONFLICT, "UPN: conflicts (two valid, different UPNs)"
