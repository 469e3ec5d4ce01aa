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
        *_admin_list_params(),
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
                "summary": "Notices of the admin's area (no child data) with deliver_at, "
                "setting name and the overdue flag; format=csv for CSV",
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
                "summary": "Resolve a review item to a setting of the admin's area (released by "
                "the rule from the time the child was reported) or to the local authority's "
                "contact (a notice to the setting of kind local_authority)",
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
        **_admin_console_paths(bearer),
    }


# --- The admin console's JSON API and its pages ---


def _admin_list_params() -> list[dict[str, Any]]:
    return [
        _param("setting_id", "query", {"type": "string"}, "Only this setting's.", "EY200002"),
        _param(
            "since",
            "query",
            {"type": "string", "format": "date"},
            "Made on or after this day (UK time).",
            "2026-11-23",
        ),
        _param(
            "until",
            "query",
            {"type": "string", "format": "date"},
            "Made on or before this day (UK time).",
            "2026-11-27",
        ),
        _param("offset", "query", {"type": "integer", "minimum": 0}, "Skip this many (paging).", 0),
        _param("format", "query", {"enum": ["json", "csv"]}, "json (default) or csv.", "csv"),
    ]


def _html(summary: str, **extra: Any) -> dict[str, Any]:
    return {
        "summary": summary,
        "responses": {
            "200": {
                "description": "HTML",
                "content": {"text/html": {"schema": {"type": "string"}}},
            },
            "303": {"description": "to /admin/login when not signed in, or after an action"},
            "403": _error(),
        },
        **extra,
    }


def _admin_console_paths(bearer: list[dict[str, list[str]]]) -> dict[str, Any]:
    """Every admin route sees and changes only the admin's area (``--area``; ``all``: all)."""
    paging = [
        _param(
            "limit", "query", {"type": "integer", "minimum": 1, "maximum": 500}, "Page size.", 100
        ),
        _param("offset", "query", {"type": "integer", "minimum": 0}, "Skip this many (paging).", 0),
    ]
    read = {"200": _json("JSON"), "400": _error(), "401": _error(), "403": _error()}
    act = {**read, "404": _error(), "409": _error()}
    return {
        "/v1/admin/today": {
            "get": {
                "summary": "What needs a person now: overdue notices (setting, Key Adult, how "
                "late), failed deliveries with their last error, review items, held notices, "
                "notices by status and the failure rate against 3%",
                "security": bearer,
                "responses": read,
            }
        },
        "/v1/admin/alerts": {
            "get": {
                "summary": "The admins' alerts, newest first; total counts every match",
                "security": bearer,
                "parameters": [
                    *paging,
                    _param(
                        "state", "query", {"enum": ["open", "all"]}, "Open only (default).", "open"
                    ),
                ],
                "responses": read,
            }
        },
        "/v1/admin/alerts/{alert_id}/acknowledge": {
            "post": {
                "summary": "Take an alert in hand (records who and when)",
                "security": bearer,
                "parameters": _path_id("alert_id"),
                "responses": act,
            }
        },
        "/v1/admin/alerts/{alert_id}/resolve": {
            "post": {
                "summary": "Close an alert (records who and when)",
                "security": bearer,
                "parameters": _path_id("alert_id"),
                "responses": act,
            }
        },
        "/v1/admin/dead-letters": {
            "get": {
                "summary": "Each work queue's dead letters with reason, attempts and size "
                "(never the body); deliveries with their setting",
                "security": bearer,
                "parameters": paging[:1],
                "responses": read,
            }
        },
        "/v1/admin/dead-letters/{queue}/{message_id}/replay": {
            "post": {
                "summary": "Send a dead letter back to its work queue, attempts counted afresh",
                "security": bearer,
                "parameters": [*_path_id("queue"), *_path_id("message_id")],
                "responses": act,
            }
        },
        "/v1/admin/incidents/timeline": {
            "get": {
                "summary": "An incident's timeline: versions, each child's decision, each "
                "notice's transitions, delivery attempts and acknowledgements, in order",
                "security": bearer,
                "parameters": [
                    _param(
                        "force",
                        "query",
                        {"type": "string"},
                        "The force code.",
                        "WMP",
                        required=True,
                    ),
                    _param(
                        "incident_ref",
                        "query",
                        {"type": "string"},
                        "The force's incident reference.",
                        "CH-2026-000123",
                        required=True,
                    ),
                ],
                "responses": {**read, "404": _error()},
            }
        },
        "/admin/login": {
            "get": _html("The sign-in form: a field Token and a button Sign in"),
            "post": _html(
                "Sign in with the admin token (form fields token and csrf_token): a session "
                "cookie (HttpOnly, SameSite=Strict) and 303 to /admin; 401 for a wrong token"
            ),
        },
        "/admin/logout": {"post": _html("Sign out (form field csrf_token)")},
        "/admin": {"get": _html("Today (HTML, signed-in admins)")},
        "/admin/review": {"get": _html("The review queue with a Resolve form per item")},
        "/admin/alerts": {"get": _html("Alerts, with Acknowledge and Resolve")},
        "/admin/dead-letters": {"get": _html("Dead letters, with Replay")},
        "/admin/incidents": {"get": _html("Incident timeline: search by force and reference")},
        "/admin/notices": {"get": _html("Notices: filter by status, setting, date, overdue")},
        "/admin/notices.csv": {"get": _html("The filtered notices as CSV")},
    }
