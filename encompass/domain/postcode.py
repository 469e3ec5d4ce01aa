"""UK postcodes as the directory stores them and a report gives them.

One form is kept in the roster, ``canonical_postcode`` (``TF3 4NT``), so a reported
postcode in any spacing or case finds its pupils by equality. The matcher compares its own
normalised form (``domain/matching/postcodes.py``), which ignores punctuation as well.
"""

from __future__ import annotations

import re
from typing import Final

UK_POSTCODE: Final = re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]?[0-9][A-Z]{2}$")
_WHITESPACE: Final = re.compile(r"\s+")


def compact_postcode(value: str) -> str:
    """Upper case, whitespace removed: ``tf3 4nt`` -> ``TF34NT``."""
    return _WHITESPACE.sub("", value).upper()


def is_uk_postcode(value: str) -> bool:
    """Whether ``value`` (in any spacing or case) has the shape of a UK postcode."""
    return UK_POSTCODE.match(compact_postcode(value)) is not None


def canonical_postcode(value: str) -> str:
    """Upper case with one space before the inward code: ``tf34nt`` -> ``TF3 4NT``.

    The roster stores this form, so a reported postcode in any spacing finds it by equality.
    """
    key = compact_postcode(value)
    return f"{key[:-3]} {key[-3:]}" if len(key) > 3 else key
