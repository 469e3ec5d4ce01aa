"""Every field an integrator reads in our published documents is described, with an example."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from encompass.api.asyncapi import build_asyncapi
from encompass.api.openapi import build_openapi


def _undocumented(node: Any, path: str = "") -> Iterator[str]:
    """Paths of object properties and operation parameters lacking a description or example."""
    if isinstance(node, dict):
        for name, schema in node.get("properties", {}).items():
            where = f"{path}.{name}"
            if "description" not in schema:
                yield f"{where}: no description"
            if "examples" not in schema and "example" not in schema:
                yield f"{where}: no example"
        if "in" in node and "name" in node:  # an operation parameter
            for key in ("description", "example"):
                if key not in node:
                    yield f"{path}: parameter {node['name']} has no {key}"
        for key, value in node.items():
            yield from _undocumented(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _undocumented(value, f"{path}[{index}]")


def test_every_openapi_field_has_a_description_and_an_example() -> None:
    # Given the OpenAPI document, When every property and parameter is walked,
    # Then none lacks a description or an example.
    assert list(_undocumented(build_openapi())) == []


def test_every_asyncapi_field_has_a_description_and_an_example() -> None:
    assert list(_undocumented(build_asyncapi())) == []


def test_the_walker_notices_a_missing_description() -> None:
    # A positive control: the check above cannot pass by finding nothing to look at.
    document = {"properties": {"a": {"type": "string", "examples": ["x"]}}}
    assert list(_undocumented(document)) == [".a: no description"]
