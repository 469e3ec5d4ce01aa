"""Admins signing in from a browser: a token once, then a server-side session.

The token (from ``encompass admins add``) is typed into ``/admin/login`` once; from then on
the browser holds only the session cookie (``services/access/web_sessions.py``). A revoked
admin's sessions are closed at once (``credentials.revoke_admin``), and every page reads
the admin again, so a revocation is never outlived by a cached sign-in.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.db.tables import Admin
from encompass.clock import Clock
from encompass.services.access.credentials import hash_token
from encompass.services.access.web_sessions import (
    ADMIN,
    OpenedSession,
    WebSession,
    close_session,
    open_session,
)
from encompass.services.records import audit


async def sign_in(
    sessions: async_sessionmaker[AsyncSession], clock: Clock, token: str, *, remote: str | None
) -> tuple[Admin, OpenedSession] | None:
    """A new session for the admin holding ``token``, or None (unknown or revoked token,
    audited either way without the token)."""
    now = clock.now()
    admin: Admin | None = None
    if token.isascii() and 0 < len(token) <= 200:
        async with sessions() as session:
            admin = await session.scalar(select(Admin).where(Admin.token_hash == hash_token(token)))
    if admin is None or admin.revoked_at is not None:
        async with sessions.begin() as session:
            await audit.record(
                session,
                actor="anonymous",
                action="admin.sign_in_refused",
                subject="admin_session",
                detail={"remote": remote, "revoked": admin is not None},
                at=now,
            )
        return None
    opened = await open_session(sessions, kind=ADMIN, subject_id=admin.admin_id, now=now)
    async with sessions.begin() as session:
        await audit.record(
            session,
            actor=f"admin:{admin.admin_id}",
            action="admin.signed_in",
            subject="admin_session",
            detail={"remote": remote, "expires_at": opened.session.expires_at.isoformat()},
            at=now,
        )
    return admin, opened


async def admin_of(
    sessions: async_sessionmaker[AsyncSession], web_session: WebSession
) -> Admin | None:
    """The admin behind an open session, or None when since revoked."""
    async with sessions() as session:
        admin = await session.get(Admin, web_session.subject_id)
    return None if admin is None or admin.revoked_at is not None else admin


async def sign_out(
    sessions: async_sessionmaker[AsyncSession], clock: Clock, cookie: str, actor: str
) -> None:
    now = clock.now()
    await close_session(sessions, cookie, now=now)
    async with sessions.begin() as session:
        await audit.record(
            session, actor=actor, action="admin.signed_out", subject="admin_session", at=now
        )
