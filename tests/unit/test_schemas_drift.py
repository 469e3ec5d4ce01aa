"""The files in schemas/ are generated from the models: this fails when they drift."""

from __future__ import annotations

from pathlib import Path

from encompass.schema_files import render_all

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def test_generated_schemas_match_the_models() -> None:
    for name, text in render_all().items():
        path = SCHEMAS / name
        assert path.exists(), f"schemas/{name} is missing: run make schemas"
        assert path.read_text(encoding="utf-8") == text, (
            f"schemas/{name} differs from the models: run make schemas")
