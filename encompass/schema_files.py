"""The files in ``schemas/``: generated from the models, checked by a test for drift.

Regenerate with ``python -m encompass.schema_files schemas``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from encompass.api.asyncapi import build_asyncapi
from encompass.api.openapi import build_openapi
from encompass.domain.incident import IncidentReport


def _dump(document: object) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def render_all() -> dict[str, str]:
    """Every generated file's name and exact content."""
    report = IncidentReport.model_json_schema()
    report["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    report["$id"] = "https://encompass.invalid/schemas/incident_report.schema.json"
    return {
        "incident_report.schema.json": _dump(report),
        "openapi.json": _dump(build_openapi()),
        "asyncapi.json": _dump(build_asyncapi()),
    }


def write_all(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_all().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "schemas")):
        print(path)
