"""INSERT … ON CONFLICT for whichever database the session is on: PostgreSQL and SQLite
spell it alike, but SQLAlchemy offers it only through each dialect's own ``insert``."""

from __future__ import annotations

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def dialect_insert(session: AsyncSession, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT into ``table`` that offers ``on_conflict_do_nothing`` and
    ``on_conflict_do_update`` on the session's database."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
