"""API credentials: tokens are shown once and stored only as SHA-256 hashes.

Revocation sets ``revoked_at`` on the force's or admin's row: from that commit on, the token
is refused like an unknown one (``api/auth.py`` reads the row on every request, so nothing
caches it). Rows are kept so that incidents and the audit log still name who they were.
Re-adding a revoked force (``encompass forces add`` with its code) reinstates it under a
fresh token: the revoked token never works again. Admins are re-added as a new admin.
Every revocation and reinstatement is an audit entry by ``admin:cli``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.db.tables import Admin, Force
from encompass.clock import Clock
from encompass.services.access.web_sessions import ADMIN, close_sessions_of
from encompass.services.records import audit


def new_token(prefix: str) -> str:
    """A fresh bearer token; the prefix tells a reader what kind of caller holds it."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_token(token: str) -> str:
    # Tokens carry 256 bits of randomness, so a fast unsalted hash is enough to store them.
    return hashlib.sha256(token.encode()).hexdigest()


class CredentialError(Exception):
    """A credential could not be issued; the message is one line."""


@dataclass(frozen=True)
class Issued:
    subject_id: str
    token: str


async def add_force(
    sessions: async_sessionmaker[AsyncSession], clock: Clock, code: str, name: str
) -> Issued:
    """Register a police force and return its new token (shown once, stored hashed)."""
    code = code.strip().upper()
    if not code or not code.replace("-", "").replace("_", "").isalnum() or len(code) > 32:
        raise CredentialError("force code must be 1-32 letters, digits, '-' or '_'")
    token = new_token("force")
    async with sessions.begin() as session:
        existing = await session.get(Force, code, with_for_update=True)
        if existing is not None and existing.revoked_at is None:
            raise CredentialError(f"force {code} is already registered")
        if existing is None:
            session.add(
                Force(
                    force_id=code,
                    name=name.strip(),
                    token_hash=hash_token(token),
                    created_at=clock.now(),
                )
            )
        else:
            existing.name, existing.token_hash = name.strip(), hash_token(token)
            existing.revoked_at = None
            await audit.record(
                session,
                actor="admin:cli",
                action="force.reinstated",
                subject=f"force:{code}",
                at=clock.now(),
            )
    return Issued(code, token)


# The same rule as the directory's e-mail column; no whitespace, so no header injection.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def admin_email(value: str | None) -> str | None:
    """An admin's e-mail address, checked (CredentialError), or None when not given."""
    if value is None or not value.strip():
        return None
    address = value.strip()
    if len(address) > 254 or not _EMAIL.match(address):
        raise CredentialError("--email must be an e-mail address such as name@example.org")
    return address


async def add_admin(
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    name: str,
    area: str,
    email: str | None = None,
) -> Issued:
    """Register an admin for a local-authority area (or ``all``); returns the token once.
    ``email``, optional, is where overdue and failed-delivery e-mails reach them."""
    address = admin_email(email)
    token = new_token("admin")
    admin_id = str(uuid.uuid4())
    async with sessions.begin() as session:
        session.add(
            Admin(
                admin_id=admin_id,
                name=name.strip(),
                area=area.strip(),
                token_hash=hash_token(token),
                created_at=clock.now(),
                email=address,
            )
        )
    return Issued(admin_id, token)


async def force_for_token(session: AsyncSession, token: str) -> Force | None:
    """The force holding ``token`` (revoked or not: check ``revoked_at``), or None."""
    result = await session.execute(select(Force).where(Force.token_hash == hash_token(token)))
    return result.scalar_one_or_none()


@dataclass(frozen=True)
class Revoked:
    """What a revocation did: whose credential, and whether it was revoked just now
    (``already``: it had been revoked before, at ``at``)."""

    subject_id: str
    at: datetime
    already: bool


async def revoke_force(
    sessions: async_sessionmaker[AsyncSession], clock: Clock, code: str
) -> Revoked:
    """Revoke force ``code``'s token at once (audited ``force.revoked``); CredentialError
    for an unknown code. Revoking twice changes nothing."""
    code = code.strip().upper()
    async with sessions.begin() as session:
        force = await session.get(Force, code, with_for_update=True)
        if force is None:
            raise CredentialError(f"no force {code!r} is registered")
        if force.revoked_at is not None:
            return Revoked(code, force.revoked_at, already=True)
        force.revoked_at = clock.now()
        await audit.record(
            session,
            actor="admin:cli",
            action="force.revoked",
            subject=f"force:{code}",
            at=force.revoked_at,
        )
        return Revoked(code, force.revoked_at, already=False)


async def revoke_admin(
    sessions: async_sessionmaker[AsyncSession], clock: Clock, name: str
) -> Revoked:
    """Revoke the admin named ``name`` (or with that admin id) at once (audited
    ``admin.revoked``). CredentialError when no admin has that name, or when several
    unrevoked admins share it (then the admin id must be given). Revoking twice changes
    nothing."""
    async with sessions.begin() as session:
        admin = await find_admin(session, name, lock=True)
        if admin.revoked_at is not None:
            return Revoked(admin.admin_id, admin.revoked_at, already=True)
        admin.revoked_at = clock.now()
        # Signed-in browsers of the admin stop working in the same transaction.
        await close_sessions_of(
            session, now=admin.revoked_at, kind=ADMIN, subject_id=admin.admin_id
        )
        await audit.record(
            session,
            actor="admin:cli",
            action="admin.revoked",
            subject=f"admin:{admin.admin_id}",
            at=admin.revoked_at,
        )
        return Revoked(admin.admin_id, admin.revoked_at, already=False)


async def find_admin(session: AsyncSession, name: str, *, lock: bool = False) -> Admin:
    """The admin with this admin id, or else the one (unrevoked, if any) with this name.
    CredentialError when there is none, or several unrevoked admins share the name."""
    name = name.strip()
    admin = await session.get(Admin, name, with_for_update=lock) if len(name) <= 36 else None
    if admin is not None:
        return admin
    query = select(Admin).where(Admin.name == name).order_by(Admin.created_at)
    named = (await session.scalars(query.with_for_update() if lock else query)).all()
    active = [a for a in named if a.revoked_at is None]
    if not named:
        raise CredentialError(f"no admin named {name!r}")
    if len(active) > 1:
        raise CredentialError(
            f"{len(active)} admins are named {name!r}; give the "
            "admin id printed when each was added"
        )
    return active[0] if active else named[-1]
