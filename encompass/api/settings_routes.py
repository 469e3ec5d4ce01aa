"""Routes for Key Adults (and their settings' systems): the portal and acknowledgements.

A Key Adult's token sees only the envelopes sealed to that Key Adult; anything else is
``404``, exactly like a notice that does not exist. The service's public key is open to
anyone: receivers pin it to verify where an envelope came from.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema

from encompass.adapters.key_files import public_key_pem
from encompass.api.app_keys import CONTAINER, METRICS
from encompass.api.auth import authenticated_key_adult
from encompass.api.errors import ApiError, read_body
from encompass.domain.envelope import AckKind
from encompass.services.receiving.acknowledge import AckRecorded, AckRefused, acknowledge
from encompass.services.receiving.device_keys import DIRECTORY_DEVICE
from encompass.services.receiving.portal import MAX_LIST, fetch_envelope, list_envelopes

routes = web.RouteTableDef()
MAX_ID: Final = 64  # our ids are UUIDs; a longer one cannot exist


class AckRequest(BaseModel):
    """``POST /v1/notices/{id}/ack``: the values the Key Adult signed, and the signature
    (base64 Ed25519 over ``ack_payload(notice_id, envelope_hash, kind, reply)``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Inline in the schema, as a plain string enum (the values are AckKind's).
    kind: Annotated[
        AckKind,
        WithJsonSchema(
            {"enum": [kind.value for kind in AckKind], "title": "Kind", "type": "string"}
        ),
    ] = Field(
        description="What the Key Adult says: received, not_our_pupil "
        "(sends the notice back to review) or child_absent.",
        examples=["received"],
    )
    reply: Annotated[str, StringConstraints(max_length=500)] | None = Field(
        default=None,
        description="An optional short reply to the force.",
        examples=["Child not in school today; we will follow up."],
    )
    envelope_hash: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] = Field(
        description="SHA-256 (hex) of the sealed envelope as served, so the acknowledgement "
        "names exactly what was read.",
        examples=["9f2c" + "0" * 60],
    )
    signature: Annotated[str, StringConstraints(min_length=4, max_length=200)] = Field(
        description="Base64 Ed25519 signature by the Key Adult's key over "
        "ack_payload(notice_id, envelope_hash, kind, reply).",
        examples=["q83vEjRWeJA="],
    )


def _notice_id(request: web.Request) -> str:
    notice_id = request.match_info["notice_id"]
    if len(notice_id) > MAX_ID:
        raise ApiError(404, "not_found", "no such notice for this Key Adult")
    return notice_id


def _limit(request: web.Request, default: int, most: int) -> int:
    text = request.query.get("limit", str(default))
    # "²".isdigit() is True yet int("²") raises, as does int() of 5,000 digits.
    if not (text.isascii() and text.isdigit() and len(text) <= 9) or not 1 <= int(text) <= most:
        raise ApiError(400, "bad_request", f"limit must be a whole number from 1 to {most}")
    return int(text)


@routes.get("/v1/service-key")
async def service_key(request: web.Request) -> web.Response:
    """The service's Ed25519 public key (PEM), which signs every envelope."""
    return web.Response(
        text=public_key_pem(request.app[CONTAINER].signing_key),
        content_type="application/x-pem-file",
    )


@routes.get("/v1/notices")
async def get_notices(request: web.Request) -> web.Response:
    key_adult = await authenticated_key_adult(request)
    container = request.app[CONTAINER]
    served = await list_envelopes(
        container.sessions,
        container.clock,
        key_adult.key_adult_id,
        limit=_limit(request, 100, MAX_LIST),
    )
    request.app[METRICS].portal_envelopes_served.inc(len(served))
    return web.json_response({"notices": [item.as_json() for item in served]})


@routes.get("/v1/notices/{notice_id}")
async def get_notice(request: web.Request) -> web.Response:
    key_adult = await authenticated_key_adult(request)
    kind = request.query.get("kind", "notice")
    if kind not in ("notice", "retraction"):
        raise ApiError(400, "bad_request", "kind must be notice or retraction")
    container = request.app[CONTAINER]
    served = await fetch_envelope(
        container.sessions, container.clock, key_adult.key_adult_id, _notice_id(request), kind=kind
    )
    if served is None:
        raise ApiError(404, "not_found", "no such notice for this Key Adult")
    request.app[METRICS].portal_envelopes_served.inc()
    return web.json_response(served.as_json())


@routes.post("/v1/notices/{notice_id}/ack")
async def post_ack(request: web.Request) -> web.Response:
    key_adult = await authenticated_key_adult(request)
    recorded = await record_acknowledgement(request, key_adult.key_adult_id, _notice_id(request))
    result: Literal["acknowledged", "returned_to_review"] = (
        "returned_to_review" if recorded.kind == AckKind.NOT_OUR_PUPIL else "acknowledged"
    )
    return web.json_response(
        {
            "ack_id": recorded.ack_id,
            "notice_id": recorded.notice_id,
            "key_adult_id": recorded.key_adult_id,
            "kind": recorded.kind,
            "at": recorded.at.isoformat(),
            "result": result,
            "notice_status": recorded.notice_status,
        },
        status=201,
    )


async def record_acknowledgement(
    request: web.Request,
    key_adult_id: str,
    notice_id: str,
    *,
    device_id: str = DIRECTORY_DEVICE,
) -> AckRecorded:
    """Read an :class:`AckRequest` from ``request`` and record it for ``key_adult_id``
    (signed by ``device_id``'s key), counted; a refusal is the ApiError it names. Shared by
    the API (``/v1/notices/{id}/ack``) and the browser inbox."""
    body = await read_body(
        request, AckRequest, code="invalid_acknowledgement", what="the acknowledgement"
    )
    container, metrics = request.app[CONTAINER], request.app[METRICS]
    try:
        recorded = await acknowledge(
            container.sessions,
            container.clock,
            key_adult_id,
            notice_id=notice_id,
            kind=body.kind,
            reply=body.reply,
            envelope_hash=body.envelope_hash,
            signature=body.signature,
            device_id=device_id,
        )
    except AckRefused as exc:
        metrics.acknowledgements_refused.labels(exc.code).inc()
        raise ApiError(exc.status, exc.code, str(exc)) from None
    metrics.acknowledgements.labels(recorded.kind).inc()
    return recorded
