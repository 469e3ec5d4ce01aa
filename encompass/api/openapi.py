"""The OpenAPI document, built from the same pydantic models that validate requests."""

from __future__ import annotations

from typing import Any

from encompass.domain.incident import IncidentReport

REF = "#/components/schemas/{model}"


def _error() -> dict[str, Any]:
    return {
        "description": "error",
        "content": {"application/json": {"schema": {"$ref": REF.format(model="Error")}}},
    }


def _rate_limited() -> dict[str, Any]:
    return {
        **_error(),
        "description": "rate_limited: over the per-credential or per-address limit",
        "headers": {
            "Retry-After": {
                "description": "seconds to wait before the next request",
                "schema": {"type": "integer", "minimum": 1},
            }
        },
    }


def _door_responses(paths: dict[str, Any]) -> dict[str, Any]:
    """Add what the door (``api/door.py``, ``strict_json.py``) may answer on every
    operation: 400 (NUL or a lone surrogate in the path or query; for a JSON body also
    ``invalid_json``, ``too_deep``, ``number_too_large``, ``duplicate_key``,
    ``invalid_characters``), 415 for a body not declared ``application/json``, and 429."""
    for item in paths.values():
        for operation in item.values():
            responses = operation["responses"]
            responses.setdefault("400", _error())
            if "requestBody" in operation:
                responses.setdefault("415", _error())
            responses.setdefault("429", _rate_limited())
    return paths


def build_openapi() -> dict[str, Any]:
    """The API description served at ``/openapi.json`` and kept in ``schemas/openapi.json``."""
    report = IncidentReport.model_json_schema(ref_template=REF)
    components: dict[str, Any] = dict(report.pop("$defs", {}))
    components["IncidentReport"] = report
    components["Error"] = {
        "type": "object",
        "required": ["error"],
        "description": "Every error: a stable code, a sentence, and for invalid bodies where "
        "and why (never the submitted values).",
        "properties": {
            "error": _field(
                {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": _field(
                            {"type": "string"},
                            "A stable, machine-readable code.",
                            "invalid_incident",
                        ),
                        "message": _field(
                            {"type": "string"},
                            "One sentence for a person.",
                            "the incident report is not valid",
                        ),
                        "details": _field(
                            {"type": "array", "items": {"type": "object"}},
                            "For an invalid body: each field and its problem.",
                            [
                                {
                                    "field": "children.0.date_of_birth",
                                    "problem": "Input should be a valid date",
                                }
                            ],
                        ),
                    },
                },
                "The error.",
                {"code": "not_found", "message": "no such incident for this force"},
            )
        },
    }
    components["Accepted"] = {
        "type": "object",
        "required": ["incident_id"],
        "description": "The report is stored and queued.",
        "properties": {
            "incident_id": _field(
                {"type": "string"},
                "Our id of the incident (the same for every version).",
                "6f1c2e4a-0b7d-4c1e-9a55-2d8f0e3b7c10",
            ),
            "version": _field({"type": "integer"}, "The version accepted.", 1),
            "duplicate": _field(
                {"type": "boolean"},
                "True when this version had been received before (nothing new was queued).",
                False,
            ),
        },
    }
    bearer: list[dict[str, list[str]]] = [{"bearer": []}]
    components.update(_receiving_components())
    return {
        "openapi": "3.1.0",
        "info": {"title": "Encompass", "version": "1"},
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": _door_responses(
            {
                "/v1/incidents": {
                    "post": {
                        "summary": "Report an incident or a new version of one (idempotent on "
                        "force + incident_ref + version); 202 once the broker confirmed it",
                        "security": bearer,
                        "requestBody": {
                            "required": True,
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": REF.format(model="IncidentReport")}
                                }
                            },
                        },
                        "responses": {
                            "202": {
                                "description": "accepted",
                                "content": {
                                    "application/json": {
                                        "schema": {"$ref": REF.format(model="Accepted")}
                                    }
                                },
                            },
                            "400": _error(),
                            "401": _error(),
                            "403": _error(),
                            "409": _error(),
                            "413": _error(),
                            "422": _error(),
                            "503": _error(),
                        },
                    }
                },
                "/v1/incidents/{incident_id}": {
                    "get": {
                        "summary": "Per-child, per-setting status of the force's own incident",
                        "security": bearer,
                        "parameters": _path_id("incident_id"),
                        "responses": {
                            "200": {
                                "description": "the incident's status: per child, "
                                "per notice status, release time, overdue "
                                "flag, delivery failures, the Key Adult's "
                                "acknowledgement or return and reply"
                            },
                            "401": _error(),
                            "403": _error(),
                            "404": _error(),
                        },
                    }
                },
                **_receiving_paths(bearer),
                "/healthz": {
                    "get": {"summary": "Liveness", "responses": {"200": {"description": "ok"}}}
                },
                "/readyz": {
                    "get": {
                        "summary": "Readiness: the database and the broker answer",
                        "responses": {"200": {"description": "ready"}, "503": _error()},
                    }
                },
                "/metrics": {
                    "get": {
                        "summary": "Prometheus metrics",
                        "responses": {"200": {"description": "metrics"}},
                    }
                },
            }
        ),
    }


# --- The receiving side: withdrawal, the Key Adult's portal, admins ---


def _receiving_components() -> dict[str, Any]:
    from encompass.api.admin_routes import ResolveRequest
    from encompass.api.settings_routes import AckRequest

    return {
        "AckRequest": AckRequest.model_json_schema(ref_template=REF),
        "ResolveRequest": ResolveRequest.model_json_schema(ref_template=REF),
        "ServedEnvelope": {
            "type": "object",
            "description": "A sealed envelope as served to its Key Adult.",
            "required": ["notice_id", "status", "kind", "created_at", "delivered_at", "envelope"],
            "properties": {
                "notice_id": _field(
                    {"type": "string"}, "The notice's id.", "0b5e8f7a-3c2d-4e1f-8a9b-7c6d5e4f3a21"
                ),
                "status": _field({"type": "string"}, "The notice's status.", "delivered"),
                "kind": _field(
                    {"enum": ["notice", "retraction"]},
                    "A notice, or the retraction of one.",
                    "notice",
                ),
                "created_at": _field(
                    {"type": "string", "format": "date-time"},
                    "When the envelope was sealed.",
                    "2026-11-23T07:30:00+00:00",
                ),
                "delivered_at": _field(
                    {"type": "string", "format": "date-time"},
                    "When it was first handed over.",
                    "2026-11-23T07:30:02+00:00",
                ),
                "envelope": _field(
                    {"type": "object"},
                    "The sealed envelope (encompass-envelope/1).",
                    {"format": "encompass-envelope/1"},
                ),
            },
        },
    }


def _field(schema: dict[str, Any], description: str, example: Any) -> dict[str, Any]:
    """A schema with the description and example every field of the document carries."""
    return {**schema, "description": description, "examples": [example]}


def _json(description: str, model: str | None = None) -> dict[str, Any]:
    if model is None:
        return {"description": description}
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF.format(model=model)}}},
    }


def _path_id(name: str) -> list[dict[str, Any]]:
    return [
        _param(
            name,
            "path",
            {"type": "string"},
            f"The {name.replace('_', ' ')}.",
            "6f1c2e4a-0b7d-4c1e-9a55-2d8f0e3b7c10",
            required=True,
        )
    ]


def _param(
    name: str,
    where: str,
    schema: dict[str, Any],
    description: str,
    example: Any,
    *,
    required: bool = False,
) -> dict[str, Any]:
    param = {
        "name": name,
        "in": where,
        "schema": schema,
        "description": description,
        "example": example,
    }
    return {**param, "required": True} if required else param


def _receiving_paths(bearer: list[dict[str, list[str]]]) -> dict[str, Any]:
    def body(model: str) -> dict[str, Any]:
        return {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=model)}}},
        }

    query = [
        _param("status", "query", {"type": "string"}, "Only notices in this status.", "scheduled"),
        _param(
            "overdue",
            "query",
            {"enum": ["true", "false"]},
            "Only overdue (true) or only not overdue (false) notices.",
            "true",
        ),
        _param(
            "limit",
            "query",
            {"type": "integer", "minimum": 1, "maximum": 1000},
            "At most this many notices.",
            100,
        ),
    ]
    return {
        "/v1/incidents/{incident_id}/withdraw": {
            "post": {
                "summary": "Withdraw the force's incident: cancel unsent notices, retract sent "
                "ones (idempotent)",
                "security": bearer,
                "parameters": _path_id("incident_id"),
                "responses": {
                    "200": _json("counts of cancelled and retracted notices"),
                    "401": _error(),
                    "403": _error(),
                    "404": _error(),
                },
            }
        },
        "/v1/service-key": {
            "get": {
                "summary": "The service's Ed25519 public key (PEM) that signs every envelope",
                "responses": {
                    "200": {
                        "description": "PEM",
                        "content": {"application/x-pem-file": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/v1/notices": {
            "get": {
                "summary": "The Key Adult's sent envelopes (notices and retractions), newest "
                "first; handing one over the first time marks it delivered",
                "security": bearer,
                "parameters": [
                    _param(
                        "limit",
                        "query",
                        {"type": "integer", "minimum": 1, "maximum": 500},
                        "At most this many envelopes.",
                        50,
                    )
                ],
                "responses": {
                    "200": _json('{"notices": [ServedEnvelope]}'),
                    "400": _error(),
                    "401": _error(),
                    "403": _error(),
                },
            }
        },
        "/v1/notices/{notice_id}": {
            "get": {
                "summary": "One envelope of this Key Adult (404 for anything not theirs)",
                "security": bearer,
                "parameters": [
                    *_path_id("notice_id"),
                    _param(
                        "kind",
                        "query",
                        {"enum": ["notice", "retraction"], "default": "notice"},
                        "The notice itself, or its retraction.",
                        "notice",
                    ),
                ],
                "responses": {
                    "200": _json("the envelope", "ServedEnvelope"),
                    "400": _error(),
                    "401": _error(),
                    "403": _error(),
                    "404": _error(),
                },
            }
        },
        "/v1/notices/{notice_id}/ack": {
            "post": {
                "summary": "A signed acknowledgement: Ed25519 over ack_payload(notice_id, "
                "envelope_hash, kind, reply) with the Key Adult's registered key. "
                "not_our_pupil sends the notice back to review and tells the force",
                "security": bearer,
                "parameters": _path_id("notice_id"),
                "requestBody": body("AckRequest"),
                "responses": {
                    "201": _json("the recorded acknowledgement"),
                    "400": _error(),
                    "401": _error(),
                    "403": _error(),
                    "404": _error(),
                    "409": _error(),
                    "422": _error(),
                },
            }
        },
        "/v1/admin/notices": {
            "get": {
                "summary": "Notices (no child data) with deliver_at, setting and the overdue "
                "flag; admins of area 'all' only (settings carry no local authority "
                "yet)",
                "security": bearer,
                "parameters": query,
                "responses": {
                    "200": _json('{"notices": [...]}'),
                    "400": _error(),
                    "401": _error(),
                    "403": _error(),
                },
            }
        },
        "/v1/admin/review": {
            "get": {
                "summary": "The review queue, oldest first: unplaced children and notices in "
                "review, with candidates, reasons and age",
                "security": bearer,
                "responses": {"200": _json('{"items": [...]}'), "401": _error(), "403": _error()},
            }
        },
        "/v1/admin/review/{item_id}/resolve": {
            "post": {
                "summary": "Resolve a review item to a setting (released by the rule from the "
                "time the child was reported) or to the local authority's contact "
                "(recorded, admins alerted: no contact directory yet)",
                "security": bearer,
                "parameters": _path_id("item_id"),
                "requestBody": body("ResolveRequest"),
                "responses": {
                    "200": _json("what the resolution did"),
                    "400": _error(),
                    "401": _error(),
                    "403": _error(),
                    "404": _error(),
                    "409": _error(),
                    "422": _error(),
                },
            }
        },
        "/admin": {
            "get": {
                "summary": "The admin dashboard (HTML); the admin token as a bearer header or "
                "?token=",
                "parameters": [
                    _param(
                        "token",
                        "query",
                        {"type": "string"},
                        "The admin token (prefer the bearer header).",
                        "…",
                    )
                ],
                "responses": {
                    "200": {
                        "description": "HTML",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    },
                    "401": _error(),
                    "403": _error(),
                },
            }
        },
    }
