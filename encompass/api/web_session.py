"""The browser's side of a web session: the cookie and the CSRF check.

The cookie is ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page
sends it), ``Path=/`` and ``Secure`` whenever the service is reached over HTTPS (the request
itself, or ``ENCOMPASS_PORTAL_URL`` saying so behind a TLS proxy). Admins and Key Adults
have separate cookies, so one browser used for both keeps them apart.

In a handler::

    found = await current_session(request, ADMIN)          # WebSession | None
    form = await request.post()
    require_csrf(found, form.get("csrf_token"))            # ApiError 403 otherwise
    set_session_cookie(response, request, ADMIN, opened.cookie, opened.session.expires_at)
    clear_session_cookie(response, ADMIN)
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from aiohttp import web

from encompass.api.app_keys import CONTAINER
from encompass.api.errors import ApiError
from encompass.services.access.web_sessions import (
    ADMIN,
    KEY_ADULT,
    SessionKind,
    WebSession,
    csrf_matches,
    session_for_cookie,
)

COOKIE_NAMES: Final[dict[SessionKind, str]] = {
    ADMIN: "encompass_admin",
    KEY_ADULT: "encompass_inbox",
}
# Where a page's script sends the CSRF token on fetch() requests; forms use a hidden field.
CSRF_HEADER: Final = "X-CSRF-Token"
CSRF_FIELD: Final = "csrf_token"


def cookie_value(request: web.Request, kind: SessionKind) -> str | None:
    value = request.cookies.get(COOKIE_NAMES[kind], "")
    return value or None


async def current_session(request: web.Request, kind: SessionKind) -> WebSession | None:
    """The open session of ``kind`` this browser holds, or None."""
    cookie = cookie_value(request, kind)
    if cookie is None:
        return None
    container = request.app[CONTAINER]
    return await session_for_cookie(
        container.sessions, cookie, kind=kind, now=container.clock.now()
    )


def require_csrf(session: WebSession, submitted: str | None) -> None:
    """Refuse (403 ``csrf_failed``) a state change without this session's CSRF token."""
    if not csrf_matches(session, submitted):
        raise ApiError(403, "csrf_failed", "the form's security token is missing or stale")


async def submitted_csrf(request: web.Request) -> str | None:
    """The CSRF token a request carries: the header, else a form field."""
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        value = (await request.post()).get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


def _secure(request: web.Request) -> bool:
    portal_url = request.app[CONTAINER].settings.portal_url
    return request.secure or portal_url.lower().startswith("https://")


def set_session_cookie(
    response: web.StreamResponse,
    request: web.Request,
    kind: SessionKind,
    cookie: str,
    expires_at: datetime,
) -> None:
    max_age = max(0, int((expires_at - request.app[CONTAINER].clock.now()).total_seconds()))
    response.set_cookie(
        COOKIE_NAMES[kind],
        cookie,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=_secure(request),
    )


def clear_session_cookie(response: web.StreamResponse, kind: SessionKind) -> None:
    response.del_cookie(COOKIE_NAMES[kind], path="/")


__all__ = [
    "ADMIN",
    "COOKIE_NAMES",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "KEY_ADULT",
    "clear_session_cookie",
    "current_session",
    "require_csrf",
    "set_session_cookie",
    "submitted_csrf",
]
