"""Alembic environment, configured from code (no alembic.ini).

:func:`encompass.adapters.db.migrate.migrate` hands us an open connection of its async
engine (through ``connection.run_sync``) in ``config.attributes["connection"]``. Without
one (the ``alembic`` command line, given ``-x url=…`` or ``sqlalchemy.url``) we build the
async engine ourselves. SQLite cannot ALTER most things in place, so its migrations run in
batch mode (copy and move tables); PostgreSQL runs them in one transaction.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection

from encompass.adapters.db.engine import make_engine
from encompass.adapters.db.tables import Base
from encompass.config import normalise_database_url

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise RuntimeError("no database URL: pass -x url=… or set sqlalchemy.url")
    return normalise_database_url(url)


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_on(connection: Connection) -> None:
    """Run the pending migrations on ``connection`` (a sync facade of an async one)."""
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = make_engine(_url(), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_on)
            await connection.commit()
    finally:
        await engine.dispose()


def _run_offline() -> None:
    # ``alembic upgrade --sql``: prints the DDL for a DBA to review instead of running it.
    url = _url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


given = config.attributes.get("connection")
if context.is_offline_mode():
    _run_offline()
elif isinstance(given, Connection):
    run_on(given)
else:
    asyncio.run(_run_async())
