"""The settings an admin may name: those of their area, with their names."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.db.tables import SettingRow
from encompass.domain.directory import SettingKind
from encompass.services.admin.scope import Area


@dataclass(frozen=True)
class SettingName:
    setting_id: str
    name: str
    kind: str
    la_code: str | None

    @property
    def local_authority(self) -> bool:
        return self.kind == SettingKind.LOCAL_AUTHORITY.value


async def settings_of(sessions: async_sessionmaker[AsyncSession], area: Area) -> list[SettingName]:
    """Every setting of ``area`` (local authority contacts included), by name."""
    async with sessions() as session:
        rows = await session.scalars(area.settings(select(SettingRow)).order_by(SettingRow.name))
        return [SettingName(r.setting_id, r.name, r.kind, r.la_code) for r in rows]


async def setting_names(sessions: async_sessionmaker[AsyncSession]) -> dict[str, str]:
    """Every setting's name by id: to show names beside ids (names are not personal data)."""
    async with sessions() as session:
        rows = await session.execute(select(SettingRow.setting_id, SettingRow.name))
        return {setting_id: name for setting_id, name in rows}
