"""Creating or upgrading the database schema (``encompass migrate``).

Alembic is configured here in code and its migrations ship inside the package, so the
command works from an installed wheel with no ``alembic.ini`` on disk.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import pool
from sqlalchemy.engine import Connection

from encompass.adapters.db.engine import make_engine
from encompass.config import normalise_database_url

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

# Any fixed number: every process that migrates the same PostgreSQL database takes this
# lock, so workers started together do not race to create the same tables.
_PG_LOCK_KEY = 0x656E636F6D70


def alembic_config(url: str | None = None) -> Config:
    """An Alembic config pointing at the packaged migrations (and at ``url`` when given)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        # Config is a ConfigParser: a literal '%' (e.g. in a password) must be doubled.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest revision the packaged migrations know."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS}")
    return head


def _upgrade(connection: Connection, config: Config) -> str:
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
    revision = MigrationContext.configure(connection).get_current_revision()
    if revision is None:
        raise RuntimeError("the upgrade left no revision recorded")
    return revision


async def migrate(url: str) -> str:
    """Upgrade the database at ``url`` to the newest schema and return its revision id.

    ``url`` may be any form :func:`encompass.config.normalise_database_url` accepts. Safe to
    run again and again (an up-to-date database is left as it is) and, on PostgreSQL, from
    several processes at once. On PostgreSQL the whole upgrade is one transaction.
    """
    url = normalise_database_url(url)
    engine = make_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                # Batch migrations copy and drop tables; with foreign keys enforced, dropping
                # a referenced table would fail or cascade. Only for this connection.
                await connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            revision = await connection.run_sync(_upgrade, alembic_config(url))
            await connection.commit()
    finally:
        await engine.dispose()
    return revision
