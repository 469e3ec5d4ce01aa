"""Who is calling: a bearer token names a force, a Key Adult or an admin.

Every route asks for the one kind of caller it serves. No token, or one we do not know, is
``401``; a valid token of another kind (a force's token on an admin route) is ``403``, so a
caller learns it is authenticated but not allowed, and nothing about the data.
Tokens are looked up by their SHA-256 hash, as stored (``services/access/credentials.py``); a
revoked force's or admin's token is refused like an unknown one (a force's within a
second: its token is looked up at most once a second, ``services/access/token_cache.py``).
Every refusal is logged (the reason, route and address; never the token) and counted in
``encompass_auth_failures_total``.
"""

from __future__ import annotations

from typing import TypeVar

import structlog
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from encompass.adapters.db.tables import Admin, Force, KeyAdultRow
from encompass.api.app_keys import CONTAINER, FORCE_TOKENS, METRICS
from encompass.api.errors import ApiError
from encompass.services.access.credentials import force_for_token, hash_token

log = structlog.get_logger()
Caller = Force | KeyAdultRow | Admin
_C = TypeVar("_C", Force, KeyAdultRow, Admin)
_WHAT = {Force: "a police force's", KeyAdultRow: "a Key Adult's", Admin: "an admin's"}


def bearer_token(request: web.Request, *, allow_query: bool = False) -> str | None:
    """The token from ``Authorization: Bearer …`` (or, where ``allow_query``, ``?token=``
    — for the dashboard in a browser), or None."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if allow_query and request.query.get("token", "").strip():
        return request.query["token"].strip()
    return None


async def caller_for_token(session: AsyncSession, token: str) -> Caller | None:
    """The force, Key Adult or admin holding ``token``, or None (also when revoked)."""
    caller = await _holder(session, token)
    return None if caller is None or _revoked(caller) else caller


def _revoked(caller: Caller) -> bool:
    return not isinstance(caller, KeyAdultRow) and caller.revoked_at is not None


async def _holder(session: AsyncSession, token: str) -> Caller | None:
    if not token.isascii():
        # Ours are URL-safe base64; undecodable header bytes reach us as lone surrogates,
        # which would not even encode for hashing.
        return None
    digest = hash_token(token)
    force = await force_for_token(session, token)
    if force is not None:
        return force
    key_adult = await session.scalar(select(KeyAdultRow).where(KeyAdultRow.token_hash == digest))
    if key_adult is not None:
        return key_adult
    return await session.scalar(select(Admin).where(Admin.token_hash == digest))


async def _authenticated(request: web.Request, kind: type[_C], *, allow_query: bool = False) -> _C:
    token = bearer_token(request, allow_query=allow_query)
    if token is None:
        _failed(request, "missing")
        raise ApiError(
            401, "unauthorised", f"send {_WHAT[kind]} token as 'Authorization: Bearer …'"
        )
    # A force's token (the ingest path, many requests a second) is looked up at most once
    # a second; a revocation takes effect within that second.
    forces = request.app[FORCE_TOKENS]
    caller: Caller | None = forces.get(token) if token.isascii() else None
    if caller is None:
        async with request.app[CONTAINER].sessions() as session:
            caller = await _holder(session, token)
        if isinstance(caller, Force):
            forces.put(token, caller)
    if caller is None or _revoked(caller):
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


async def authenticated_admin(request: web.Request, *, allow_query: bool = False) -> Admin:
    """The admin whose token came with ``request``; ApiError 401/403 otherwise.

    Area scoping: an admin of area ``all`` sees everything. Settings carry no local
    authority yet, so we cannot tell which notices lie in an area: rather than show an
    area admin everything (or guess), their token is refused with ``403
    area_scoping_unavailable`` until the directory gains a setting → local-authority column.
    """
    admin = await _authenticated(request, Admin, allow_query=allow_query)
    if admin.area != "all":
        raise ApiError(
            403,
            "area_scoping_unavailable",
            "admin tokens scoped to one area cannot be served yet (settings carry "
            "no local authority); use an admin registered with --area all",
        )
    return admin


def actor(caller: Caller) -> str:
    """The audit log's name for ``caller``: ``force:CODE``, ``key_adult:ID`` or ``admin:ID``."""
    if isinstance(caller, Force):
        return f"force:{caller.force_id}"
    if isinstance(caller, KeyAdultRow):
        return f"key_adult:{caller.key_adult_id}"
    return f"admin:{caller.admin_id}"
