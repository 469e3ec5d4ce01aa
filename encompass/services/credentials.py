"""API credentials: tokens are shown once and stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.db.tables import Admin, Force
from encompass.clock import Clock


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


async def add_force(sessions: async_sessionmaker[AsyncSession], clock: Clock,
                    code: str, name: str) -> Issued:
    """Register a police force and return its new token (shown once, stored hashed)."""
    code = code.strip().upper()
    if not code or not code.replace("-", "").replace("_", "").isalnum() or len(code) > 32:
        raise CredentialError("force code must be 1-32 letters, digits, '-' or '_'")
    token = new_token("force")
    async with sessions.begin() as session:
        if await session.get(Force, code) is not None:
            raise CredentialError(f"force {code} is already registered")
        session.add(Force(force_id=code, name=name.strip(), token_hash=hash_token(token),
                          created_at=clock.now()))
    return Issued(code, token)


async def add_admin(sessions: async_sessionmaker[AsyncSession], clock: Clock,
                    name: str, area: str) -> Issued:
    """Register an admin for a local-authority area (or ``all``); returns the token once."""
    token = new_token("admin")
    admin_id = str(uuid.uuid4())
    async with sessions.begin() as session:
        session.add(Admin(admin_id=admin_id, name=name.strip(), area=area.strip(),
                          token_hash=hash_token(token), created_at=clock.now()))
    return Issued(admin_id, token)


async def force_for_token(session: AsyncSession, token: str) -> Force | None:
    """The force holding ``token``, or None."""
    result = await session.execute(select(Force).where(Force.token_hash == hash_token(token)))
    return result.scalar_one_or_none()
