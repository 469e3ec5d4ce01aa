"""Parsing a request body as JSON without trusting it.

``json.loads`` alone turns hostile input into a 500: a body nested 100,000 deep raises
RecursionError, a 5,000-digit integer trips Python's int-size guard (ValueError), NUL and
lone surrogates parse into strings the database and the UTF-8
encoder then refuse, and a repeated key silently keeps the last value. :func:`parse_json`
refuses each of these up front with :class:`JsonRefused`, whose ``code`` names the problem
and whose message never quotes the body.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any, Final

MAX_DEPTH: Final = 32  # an incident report is 4 deep; 32 leaves room and stops abuse
MAX_NUMBER_CHARS: Final = 40  # a 64-bit integer is 20 digits; floats need fewer than 25
_STRING: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET: Final = re.compile(rb"[^\[\]{}]")
_BRACKET_STEP: Final = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
# NUL (PostgreSQL text cannot hold it) and UTF-16 surrogate halves (not encodable as UTF-8).
_BAD_CHARACTER: Final = re.compile("[\x00\ud800-\udfff]")


class JsonRefused(ValueError):
    """The body was refused; ``code`` is the machine-readable reason, the message one line."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def bad_characters(text: str) -> bool:
    """True when ``text`` holds NUL or a lone UTF-16 surrogate."""
    return _BAD_CHARACTER.search(text) is not None


def _depth(raw: bytes) -> int:
    brackets = _NOT_BRACKET.sub(b"", _STRING.sub(b"", raw))
    if len(brackets) <= MAX_DEPTH:
        return len(brackets)
    return max(accumulate(_BRACKET_STEP[b] for b in brackets), default=0)


def _number(text: str) -> None:
    if len(text) > MAX_NUMBER_CHARS:
        raise JsonRefused(
            "number_too_large", f"a number in the body has more than {MAX_NUMBER_CHARS} characters"
        )


def _int(text: str) -> int:
    _number(text)
    return int(text)


def _float(text: str) -> float:
    _number(text)
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise JsonRefused("number_too_large", "a number in the body is out of range")
    return value


def _constant(name: str) -> Any:
    raise JsonRefused("invalid_json", f"{name} is not JSON")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise JsonRefused("duplicate_key", "the body repeats a key in one object")
    return result


def _check_strings(value: Any) -> None:
    if isinstance(value, str):
        if bad_characters(value):
            raise JsonRefused(
                "invalid_characters", "a string in the body holds NUL or a lone surrogate"
            )
    elif isinstance(value, list):
        for item in value:
            _check_strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key)
            _check_strings(item)


def parse_json(raw: bytes) -> Any:
    """``raw`` parsed as strict JSON (UTF-8; no NaN or Infinity; at most :data:`MAX_DEPTH`
    arrays and objects deep; numbers of at most :data:`MAX_NUMBER_CHARS` characters; no
    repeated key in an object; no NUL or lone surrogate in a string).
    Raises :class:`JsonRefused` (``invalid_json``, ``too_deep``, ``number_too_large``,
    ``duplicate_key`` or ``invalid_characters``) otherwise."""
    if _depth(raw) > MAX_DEPTH:
        raise JsonRefused("too_deep", f"the body is nested more than {MAX_DEPTH} deep")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise JsonRefused("invalid_json", "the body is not UTF-8") from None
    try:
        value = json.loads(
            text,
            object_pairs_hook=_object,
            parse_int=_int,
            parse_float=_float,
            parse_constant=_constant,
        )
    except json.JSONDecodeError:
        raise JsonRefused("invalid_json", "the body is not valid JSON") from None
    except RecursionError:  # the depth check above should make this unreachable
        raise JsonRefused("too_deep", "the body is nested too deep") from None
    _check_strings(value)
    return value
