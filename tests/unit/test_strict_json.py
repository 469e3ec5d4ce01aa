"""Strict JSON parsing: every hostile body is a JsonRefused with its code, never an
exception of another kind, and ordinary bodies parse exactly as json.loads does."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from encompass.strict_json import MAX_DEPTH, JsonRefused, bad_characters, parse_json


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "too_deep"),
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "too_deep"),
        (b"[" * 100_000, "too_deep"),
        (b"9" * 5_000, "number_too_large"),
        (b"-" + b"9" * 5_000, "number_too_large"),
        (b"1e999", "number_too_large"),
        (b"-1e999", "number_too_large"),
        (b"[NaN]", "invalid_json"),
        (b"[Infinity]", "invalid_json"),
        (b'{"a": 1, "a": 1}', "duplicate_key"),
        (b'{"a": {"b": 1, "b": 2}}', "duplicate_key"),
        (b'"\\u0000"', "invalid_characters"),
        (b'{"\\u0000": 1}', "invalid_characters"),
        (b'["\\ud800"]', "invalid_characters"),
        (b'{"a": ["\\udc00x"]}', "invalid_characters"),
        (b"\xff", "invalid_json"),
        (b'"\x00"', "invalid_json"),
        (b"", "invalid_json"),
    ],
)
def test_hostile_bodies_are_refused_with_their_code(raw: bytes, code: str) -> None:
    with pytest.raises(JsonRefused) as refused:
        parse_json(raw)
    assert refused.value.code == code


def test_the_depth_limit_itself_is_allowed_and_brackets_in_strings_do_not_count() -> None:
    assert parse_json(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None
    assert parse_json(b'{"a": "' + b"[" * 1_000 + b'\\"{{{"}') == {"a": "[" * 1_000 + '"{{{'}


def test_a_surrogate_pair_is_an_ordinary_character() -> None:
    assert parse_json(b'"\\ud83d\\ude00"') == "\U0001f600"
    assert not bad_characters("\U0001f600 ok")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**18), 10**18)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(
                st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=5
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@given(json_values)
def test_ordinary_json_parses_as_json_loads_does(value: object) -> None:
    raw = json.dumps(value).encode()
    assert parse_json(raw) == json.loads(raw)


@given(st.binary(max_size=200))
def test_any_bytes_are_parsed_or_refused_never_crash(raw: bytes) -> None:
    with contextlib.suppress(JsonRefused):
        parse_json(raw)
