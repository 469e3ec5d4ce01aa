"""The Key Adult in a browser: set-up link, sign-in with the device key, the inbox.

Pages are HTML; the calls the page's script makes are JSON under ``/inbox/api``. A session
is a cookie (HttpOnly, SameSite=Strict, never in a URL) opened by a signed challenge;
every state-changing call also carries the session's CSRF token. Nothing these routes
send holds a notice in clear: envelopes are opened in the browser.
"""

from __future__ import annotations

import base64
from typing import Annotated, Final

from aiohttp import web
from pydantic import BaseModel, ConfigDict, StringConstraints

from encompass.api.app_keys import CONTAINER, METRICS
from encompass.api.errors import ApiError, read_body
from encompass.api.settings_routes import record_acknowledgement
from encompass.api.web_session import (
    clear_session_cookie,
    cookie_value,
    require_csrf,
    set_session_cookie,
    submitted_csrf,
)
from encompass.services.access.web_sessions import KEY_ADULT, WebSession
from encompass.services.receiving import devices
from encompass.services.receiving.inbox import inbox_items
from encompass.services.receiving.portal import fetch_envelope
from encompass.web.render import render

routes = web.RouteTableDef()
MAX_ID: Final = 64
ANSWERS: Final = {
    "received": "Acknowledged: received",
    "not_our_pupil": "Answered: not our pupil",
    "child_absent": "Acknowledged: child absent",
}

B64Key = Annotated[str, StringConstraints(min_length=44, max_length=44)]
Signature = Annotated[str, StringConstraints(min_length=4, max_length=200)]


class EnrolRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    x25519: B64Key
    ed25519: B64Key
    label: Annotated[str, StringConstraints(max_length=100)] = "browser"
    signature: Signature


class SignInRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    device_id: Annotated[str, StringConstraints(min_length=1, max_length=36)]
    challenge: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    signature: Signature


def _service_key(request: web.Request) -> str:
    public = request.app[CONTAINER].signing_key.public_key()
    return base64.b64encode(public.public_bytes_raw()).decode("ascii")


def _refused(exc: devices.DeviceError) -> ApiError:
    return ApiError(exc.status, exc.code, str(exc))


async def _current(request: web.Request) -> WebSession | None:
    container = request.app[CONTAINER]
    return await devices.current(
        container.sessions, container.clock, cookie_value(request, KEY_ADULT)
    )


async def _signed_in(request: web.Request, *, csrf: bool) -> WebSession:
    """The signed-in device's session, else 401; with ``csrf``, its token must come too."""
    held = await _current(request)
    if held is None or held.device_id is None:
        raise ApiError(401, "unauthorised", "sign in with this browser first")
    if csrf:
        require_csrf(held, await submitted_csrf(request))
    return held


def _notice_id(request: web.Request) -> str:
    notice_id = request.match_info["notice_id"]
    if len(notice_id) > MAX_ID:
        raise ApiError(404, "not_found", "no such notice")
    return notice_id


@routes.get("/enrol/{token}")
async def enrol_form(request: web.Request) -> web.Response:
    container = request.app[CONTAINER]
    try:
        await devices.check_invite(
            container.sessions, container.clock, request.match_info["token"][:100]
        )
    except devices.DeviceError:
        return render(request, "inbox/enrol.html", status=410, title="Set-up link", usable=False)
    return render(
        request,
        "inbox/enrol.html",
        title="Set up this browser",
        usable=True,
        service_key=_service_key(request),
    )


@routes.post("/enrol/{token}")
async def enrol(request: web.Request) -> web.Response:
    body = await read_body(request, EnrolRequest, code="invalid_enrolment", what="the enrolment")
    container = request.app[CONTAINER]
    try:
        enrolled = await devices.enrol(
            container.sessions,
            container.clock,
            request.match_info["token"][:100],
            x25519=body.x25519,
            ed25519=body.ed25519,
            label=body.label,
            signature=body.signature,
        )
    except devices.DeviceError as exc:
        raise _refused(exc) from None
    return web.json_response(
        {"device_id": enrolled.device_id, "key_adult_id": enrolled.key_adult_id}, status=201
    )


@routes.post("/inbox/challenge")
async def challenge(request: web.Request) -> web.Response:
    container = request.app[CONTAINER]
    return web.json_response(
        {"challenge": await devices.new_challenge(container.sessions, container.clock)}
    )


@routes.post("/inbox/sign-in")
async def sign_in(request: web.Request) -> web.Response:
    body = await read_body(request, SignInRequest, code="invalid_sign_in", what="the sign-in")
    container = request.app[CONTAINER]
    try:
        signed = await devices.sign_in(
            container.sessions,
            container.clock,
            device_id=body.device_id,
            challenge=body.challenge,
            signature=body.signature,
        )
    except devices.DeviceError as exc:
        raise _refused(exc) from None
    response = web.json_response({"device_id": signed.session.device_id})
    set_session_cookie(response, request, KEY_ADULT, signed.cookie, signed.session.expires_at)
    return response


@routes.post("/inbox/sign-out")
async def sign_out(request: web.Request) -> web.Response:
    held = await _current(request)
    if held is not None:
        require_csrf(held, await submitted_csrf(request))
    container = request.app[CONTAINER]
    await devices.sign_out(container.sessions, container.clock, cookie_value(request, KEY_ADULT))
    # Back to the inbox, which offers to sign in again (the keys stay in this browser).
    response = web.Response(status=303, headers={"Location": "/inbox?signed-out=1"})
    clear_session_cookie(response, KEY_ADULT)
    return response


async def _inbox(request: web.Request, focus: str | None) -> web.Response:
    held = await _current(request)
    if held is None or held.device_id is None:
        automatic = "signed-out" not in request.query
        return render(request, "inbox/sign_in.html", title="Inbox", automatic=automatic)
    container = request.app[CONTAINER]
    items = await inbox_items(
        container.sessions,
        container.clock,
        key_adult_id=held.subject_id,
        device_id=held.device_id,
    )
    return render(
        request,
        "inbox/inbox.html",
        title="Inbox",
        items=items,
        unread=sum(i.unread for i in items),
        answers=ANSWERS,
        focus=focus,
        csrf_token=held.csrf_token,
        service_key=_service_key(request),
    )


@routes.get("/inbox")
async def inbox(request: web.Request) -> web.Response:
    return await _inbox(request, None)


@routes.get("/inbox/notices/{notice_id}")
async def inbox_notice(request: web.Request) -> web.Response:
    """Where the e-mail pointer leads: the inbox with that notice opened."""
    return await _inbox(request, _notice_id(request))


@routes.get("/inbox/api/notices/{notice_id}")
async def get_envelope(request: web.Request) -> web.Response:
    held = await _signed_in(request, csrf=False)
    kind = request.query.get("kind", "notice")
    if kind not in ("notice", "retraction"):
        raise ApiError(400, "bad_request", "kind must be notice or retraction")
    container = request.app[CONTAINER]
    served = await fetch_envelope(
        container.sessions,
        container.clock,
        held.subject_id,
        _notice_id(request),
        kind=kind,
        device_id=held.device_id or "",
    )
    if served is None:
        raise ApiError(404, "not_found", "no such notice")
    request.app[METRICS].portal_envelopes_served.inc()
    return web.json_response(served.as_json(), headers={"Cache-Control": "no-store"})


@routes.post("/inbox/api/notices/{notice_id}/ack")
async def post_ack(request: web.Request) -> web.Response:
    held = await _signed_in(request, csrf=True)
    recorded = await record_acknowledgement(
        request, held.subject_id, _notice_id(request), device_id=held.device_id or ""
    )
    return web.json_response(
        {"kind": recorded.kind, "at": recorded.at.isoformat(), "status": recorded.notice_status},
        status=201,
    )
