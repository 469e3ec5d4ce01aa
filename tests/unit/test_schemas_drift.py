"""The files in schemas/ are generated from the models: this fails when they drift."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from encompass.schema_files import render_all

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def test_generated_schemas_match_the_models() -> None:
    for name, text in render_all().items():
        path = SCHEMAS / name
        assert path.exists(), f"schemas/{name} is missing: run make schemas"
        assert path.read_text(encoding="utf-8") == text, (
            f"schemas/{name} differs from the models: run make schemas"
        )


def _properties(schema: Any, where: str) -> list[tuple[str, Any]]:
    found = [(f"{where}.{name}", prop) for name, prop in schema.get("properties", {}).items()]
    for name, inner in schema.get("$defs", {}).items():
        found += _properties(inner, f"{where}.{name}")
    return found


def test_the_asyncapi_document_describes_the_exchange_and_every_field() -> None:
    document = json.loads((SCHEMAS / "asyncapi.json").read_text(encoding="utf-8"))
    assert document["asyncapi"].startswith("3.")
    assert document["channels"]["incidents"]["address"] == "encompass.incidents"
    operation = document["operations"]["reportIncident"]
    assert operation["action"] == "send"
    schemas = document["components"]["schemas"]
    message = document["components"]["messages"]["IncidentReport"]
    assert message["payload"] == {"$ref": "#/components/schemas/IncidentReport"}
    assert set(schemas["PublishProperties"]["required"]) == {"message_id", "user_id"}
    # The payload is the very schema the HTTP body is validated with
    assert (
        schemas["IncidentReport"]["properties"]
        == json.loads((SCHEMAS / "openapi.json").read_text(encoding="utf-8"))["components"][
            "schemas"
        ]["IncidentReport"]["properties"]
    )
    undescribed = [
        where
        for name, schema in schemas.items()
        for where, prop in _properties(schema, name)
        if not prop.get("description")
    ]
    assert undescribed == []
    assert all(schema.get("description") for schema in schemas.values())
