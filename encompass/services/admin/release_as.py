"""``encompass release --admin NAME``: an urgent release in a named admin's name.

The audit log then names that admin (``admin:ID``), and the notice must lie in their area.
Without ``--admin`` the command stays usable by scripts, audited as ``admin:cli``.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.db.tables import Notice, SettingRow
from encompass.clock import Clock
from encompass.services.access.credentials import CredentialError, find_admin
from encompass.services.admin.scope import Area
from encompass.services.scheduling.release_now import ReleaseRefused, UrgentRelease, release_now


async def release_as_admin(
    sessions: async_sessionmaker[AsyncSession], clock: Clock, notice_id: str, admin_name: str
) -> UrgentRelease:
    """Release ``notice_id`` now as the admin ``admin_name`` (a name or an admin id).
    ReleaseRefused for an unknown or revoked admin, or a notice outside their area."""
    async with sessions() as session:
        try:
            admin = await find_admin(session, admin_name)
        except CredentialError as exc:
            raise ReleaseRefused(str(exc)) from None
        if admin.revoked_at is not None:
            raise ReleaseRefused(f"admin {admin_name!r} was revoked")
        notice = await session.get(Notice, notice_id)
        setting = None if notice is None else await session.get(SettingRow, notice.setting_id)
        if notice is not None and not Area.of(admin).covers(setting):
            raise ReleaseRefused(f"no notice {notice_id!r} in area {admin.area}")
        actor = f"admin:{admin.admin_id}"
    return await release_now(sessions, clock, notice_id, actor=actor)
