"""Who is calling: a bearer token names a force, a Key Adult or an admin.

Every route asks for the one kind of caller it serves. No token, or one we do not know, is
``401``; a valid token of another kind (a force's token on an admin route) is ``403``, so a
caller learns it is authenticated but not allowed, and nothing about the data.
Tokens are looked up by their SHA-256 hash, as stored (``services/access/callers.py``); a
revoked force's or admin's token is refused like an unknown one (a force's within a
second: its token is looked up at most once a second, ``services/access/token_cache.py``).
Every refusal is logged (the reason, route and address; never the token) and counted in
``encompass_auth_failures_total``.
"""

from __future__ import annotations

from typing import TypeVar

import structlog
from aiohttp import web

from encompass.adapters.db.tables import Admin, Force, KeyAdultRow
from encompass.api.app_keys import CONTAINER, FORCE_TOKENS, METRICS, TOKEN_LOOKUPS
from encompass.api.errors import ApiError
from encompass.services.access.callers import Caller, is_revoked, token_holder

log = structlog.get_logger()
_C = TypeVar("_C", Force, KeyAdultRow, Admin)
_WHAT = {Force: "a police force's", KeyAdultRow: "a Key Adult's", Admin: "an admin's"}


def bearer_token(request: web.Request) -> str | None:
    """The token from ``Authorization: Bearer …``, or None. Never from the URL: a token in
    a URL lands in history, logs and referrers (browsers sign in at ``/admin/login``)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


async def _authenticated(request: web.Request, kind: type[_C]) -> _C:
    token = bearer_token(request)
    if token is None:
        _failed(request, "missing")
        raise ApiError(
            401, "unauthorised", f"send {_WHAT[kind]} token as 'Authorization: Bearer …'"
        )
    # A force's token (the ingest path, many requests a second) is looked up at most once
    # a second; a revocation takes effect within that second.
    forces, sessions = request.app[FORCE_TOKENS], request.app[CONTAINER].sessions
    caller: Caller | None = None
    if token.isascii():  # ours are; others are unknown without a lookup
        caller = forces.get(token)
        if caller is None:
            caller = await request.app[TOKEN_LOOKUPS].run(
                token, lambda: token_holder(sessions, token)
            )
            if isinstance(caller, Force):
                forces.put(token, caller)
    if caller is None or is_revoked(caller):
        _failed(request, "invalid" if caller is None else "revoked")
        raise ApiError(401, "unauthorised", "the token is not valid")
    if not isinstance(caller, kind):
        _failed(request, "wrong_kind", actor(caller))
        raise ApiError(403, "forbidden", f"this route needs {_WHAT[kind]} token")
    return caller


def _failed(request: web.Request, reason: str, who: str | None = None) -> None:
    # Never the token, nor any part of it: a log line must not become a credential.
    request.app[METRICS].auth_failures.labels(reason).inc()
    resource = request.match_info.route.resource
    log.warning(
        "auth.failed",
        reason=reason,
        method=request.method,
        route=resource.canonical if resource else request.path,
        remote=request.remote,
        caller=who,
    )


async def authenticated_force(request: web.Request) -> Force:
    """The force whose token came with ``request``; ApiError 401/403 otherwise."""
    return await _authenticated(request, Force)


async def authenticated_key_adult(request: web.Request) -> KeyAdultRow:
    """The Key Adult whose token came with ``request``; ApiError 401/403 otherwise."""
    return await _authenticated(request, KeyAdultRow)


async def authenticated_admin(request: web.Request) -> Admin:
    """The admin whose token came with ``request``; ApiError 401/403 otherwise.

    An admin of one area is served like any other: every admin use case filters by
    ``Area.of(admin)`` (``services/admin/scope.py``).
    """
    return await _authenticated(request, Admin)


def actor(caller: Caller) -> str:
    """The audit log's name for ``caller``: ``force:CODE``, ``key_adult:ID`` or ``admin:ID``."""
    if isinstance(caller, Force):
        return f"force:{caller.force_id}"
    if isinstance(caller, KeyAdultRow):
        return f"key_adult:{caller.key_adult_id}"
    return f"admin:{caller.admin_id}"
