"""Browser sessions: who a signed-in browser is, kept on the server.

A browser signs in once (an admin with their token at ``/admin/login``; a Key Adult's
device with a signed challenge) and from then on sends only an opaque cookie. The cookie's
value is 256 random bits; the database keeps its SHA-256 (``web_sessions``), so a copy of
the database signs nobody in. Each session carries its own CSRF token, which every form and
every state-changing request must echo (``api/web_session.py`` checks it).

A session ends at sign-out, at its expiry, or at once when its admin or device is revoked
(``close_sessions_of``): every request reads the row, so nothing is cached.

Use::

    opened = await open_session(sessions, kind=ADMIN, subject_id=admin_id, now=now)
    cookie = opened.cookie            # set it with api.web_session.set_session_cookie
    found = await session_for_cookie(sessions, cookie, kind=ADMIN, now=now)  # or None
    await close_session(sessions, cookie, now=now)
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.db.tables import WebSessionRow

SessionKind = Literal["admin", "key_adult"]
ADMIN: Final[SessionKind] = "admin"
KEY_ADULT: Final[SessionKind] = "key_adult"

# An admin's working day, a Key Adult's morning: long enough not to interrupt either, short
# enough that a browser left signed in on a shared machine does not stay so for days.
DEFAULT_TTL: Final = {ADMIN: timedelta(hours=8), KEY_ADULT: timedelta(hours=12)}


@dataclass(frozen=True)
class WebSession:
    kind: SessionKind
    subject_id: str  # the admin_id, or the key_adult_id
    device_id: str | None  # the Key Adult's device that signed in; None for admins
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True)
class OpenedSession:
    cookie: str  # the cookie's value: shown to the browser once, stored only hashed
    session: WebSession


def _digest(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


async def open_session(
    sessions: async_sessionmaker[AsyncSession],
    *,
    kind: SessionKind,
    subject_id: str,
    now: datetime,
    device_id: str | None = None,
    ttl: timedelta | None = None,
) -> OpenedSession:
    """A new session for ``subject_id`` (and ``device_id``), valid for ``ttl``."""
    cookie = secrets.token_urlsafe(32)
    row = WebSessionRow(
        token_hash=_digest(cookie),
        kind=kind,
        subject_id=subject_id,
        device_id=device_id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        expires_at=now + (ttl or DEFAULT_TTL[kind]),
        closed_at=None,
    )
    async with sessions.begin() as session:
        session.add(row)
    return OpenedSession(cookie, _view(row))


async def session_for_cookie(
    sessions: async_sessionmaker[AsyncSession], cookie: str, *, kind: SessionKind, now: datetime
) -> WebSession | None:
    """The open, unexpired session of ``kind`` behind ``cookie``, or None."""
    if not cookie.isascii() or len(cookie) > 128:
        return None
    async with sessions() as session:
        row = await session.get(WebSessionRow, _digest(cookie))
    if row is None or row.kind != kind or row.closed_at is not None or row.expires_at <= now:
        return None
    return _view(row)


async def close_session(
    sessions: async_sessionmaker[AsyncSession], cookie: str, *, now: datetime
) -> None:
    """Sign out: the cookie stops working at once (unknown cookies are ignored)."""
    if not cookie.isascii():
        return
    async with sessions.begin() as session:
        await session.execute(
            update(WebSessionRow)
            .where(WebSessionRow.token_hash == _digest(cookie), WebSessionRow.closed_at.is_(None))
            .values(closed_at=now)
        )


async def close_sessions_of(
    session: AsyncSession,
    *,
    now: datetime,
    kind: SessionKind,
    subject_id: str | None = None,
    device_id: str | None = None,
) -> int:
    """Close every open session of a revoked admin (``subject_id``) or device (``device_id``).

    Takes the caller's transaction, so the revocation and the sign-outs commit together.
    Returns how many sessions were closed.
    """
    if (subject_id is None) == (device_id is None):
        raise ValueError("name exactly one of subject_id and device_id")
    where = [WebSessionRow.kind == kind, WebSessionRow.closed_at.is_(None)]
    if subject_id is not None:
        where.append(WebSessionRow.subject_id == subject_id)
    else:
        where.append(WebSessionRow.device_id == device_id)
    result = await session.execute(update(WebSessionRow).where(*where).values(closed_at=now))
    return int(getattr(result, "rowcount", 0) or 0)


def csrf_matches(session: WebSession, submitted: str | None) -> bool:
    """Whether ``submitted`` is this session's CSRF token (compared in constant time)."""
    return submitted is not None and hmac.compare_digest(
        session.csrf_token.encode(), submitted.encode("utf-8", "replace")
    )


def _view(row: WebSessionRow) -> WebSession:
    kind: SessionKind = ADMIN if row.kind == ADMIN else KEY_ADULT
    return WebSession(kind, row.subject_id, row.device_id, row.csrf_token, row.expires_at)
