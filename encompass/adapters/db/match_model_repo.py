"""The matching model kept with each roster version (table ``match_models``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from encompass.adapters.db.tables import MatchModelRow


async def save_match_model(
    session: AsyncSession, roster_version: str, model_json: str, fitted_at: datetime
) -> None:
    """Keep ``model_json`` for ``roster_version`` (replacing one kept before); the caller
    commits."""
    row = await session.get(MatchModelRow, roster_version)
    if row is None:
        session.add(
            MatchModelRow(roster_version=roster_version, model=model_json, fitted_at=fitted_at)
        )
    else:
        row.model, row.fitted_at = model_json, fitted_at


async def latest_match_model(session: AsyncSession) -> tuple[str, str] | None:
    """The newest kept model as ``(roster_version, model_json)``; None when none was kept."""
    row = (
        await session.execute(
            select(MatchModelRow.roster_version, MatchModelRow.model)
            .order_by(MatchModelRow.fitted_at.desc())
            .limit(1)
        )
    ).first()
    return None if row is None else (row[0], row[1])
