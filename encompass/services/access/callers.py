"""Who holds a bearer token: a force, a Key Adult or an admin, looked up by its hash.

Tokens are stored only as SHA-256 hashes (``credentials.py``); a revoked force's or admin's
row is kept (incidents and the audit log still name it), so the caller is found and then
refused as revoked. Read on every request: nothing caches a token, so a revocation takes
effect from the next request on.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.db.tables import Admin, Force, KeyAdultRow
from encompass.services.access.credentials import force_for_token, hash_token

Caller = Force | KeyAdultRow | Admin


def is_revoked(caller: Caller) -> bool:
    """A force's or admin's credential revoked (a Key Adult's is replaced, never revoked)."""
    return not isinstance(caller, KeyAdultRow) and caller.revoked_at is not None


async def token_holder(sessions: async_sessionmaker[AsyncSession], token: str) -> Caller | None:
    """The force, Key Adult or admin whose token is ``token`` (revoked or not), or None."""
    async with sessions() as session:
        return await _holder(session, token)


async def caller_for_token(session: AsyncSession, token: str) -> Caller | None:
    """The force, Key Adult or admin holding ``token``, or None (also when revoked)."""
    caller = await _holder(session, token)
    return None if caller is None or is_revoked(caller) else caller


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
