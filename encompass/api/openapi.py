"""The OpenAPI document, built from the same pydantic models that validate requests."""

from __future__ import annotations

from typing import Any

from encompass.domain.incident import IncidentReport

REF = "#/components/schemas/{model}"


def _error() -> dict[str, Any]:
    return {"description": "error", "content": {"application/json": {
        "schema": {"$ref": REF.format(model="Error")}}}}


def build_openapi() -> dict[str, Any]:
    """The API description served at ``/openapi.json`` and kept in ``schemas/openapi.json``."""
    report = IncidentReport.model_json_schema(ref_template=REF)
    components: dict[str, Any] = dict(report.pop("$defs", {}))
    components["IncidentReport"] = report
    components["Error"] = {
        "type": "object", "required": ["error"],
        "properties": {"error": {"type": "object", "required": ["code", "message"],
                                 "properties": {"code": {"type": "string"},
                                                "message": {"type": "string"},
                                                "details": {"type": "array"}}}}}
    components["Accepted"] = {
        "type": "object", "required": ["incident_id"],
        "properties": {"incident_id": {"type": "string"}, "version": {"type": "integer"},
                       "duplicate": {"type": "boolean"}}}
    bearer: list[dict[str, list[str]]] = [{"bearer": []}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Encompass", "version": "1"},
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/v1/incidents": {"post": {
                "summary": "Report an incident or a new version of one (idempotent on "
                           "force + incident_ref + version); 202 once the broker confirmed it",
                "security": bearer,
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": REF.format(model="IncidentReport")}}}},
                "responses": {"202": {"description": "accepted", "content": {
                    "application/json": {"schema": {"$ref": REF.format(model="Accepted")}}}},
                    "400": _error(), "401": _error(), "409": _error(), "413": _error(),
                    "422": _error(), "503": _error()}}},
            "/v1/incidents/{incident_id}": {"get": {
                "summary": "Per-child, per-setting status of the force's own incident",
                "security": bearer,
                "parameters": [{"name": "incident_id", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "responses": {"200": {"description": "the incident's status"},
                              "401": _error(), "404": _error()}}},
            "/healthz": {"get": {"summary": "Liveness",
                                 "responses": {"200": {"description": "ok"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics",
                                 "responses": {"200": {"description": "metrics"}}}},
        },
    }
