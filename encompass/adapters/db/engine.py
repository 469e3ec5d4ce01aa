"""Building the async engine and session factory for SQLite or PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

if TYPE_CHECKING:
    from encompass.adapters.data_keys import DataKeys

SESSION_KEYS = "data_keys"
"""The key of the :class:`DataKeys` in every session's ``info`` (``records/at_rest.py``)."""


def private_sqlite_file(url: str) -> None:
    """Create the SQLite file of ``url`` with mode 0600 before SQLite does (it would follow
    the umask, often world-readable), and take an existing one we own down to 0600. The
    ``-wal`` and ``-shm`` files SQLite makes later copy the database file's mode."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_uid == os.getuid():
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An engine for ``url`` (already normalised to an async driver).

    On SQLite, foreign keys are switched on and a busy timeout set, because several
    workers may share the embedded database file, and deleted content is overwritten.
    """
    if url.startswith("sqlite"):
        private_sqlite_file(url)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            # Overwrite what is deleted or replaced: a value sealed in place of clear text,
            # or a data key destroyed by retention, must not linger in a free page.
            cursor.execute("PRAGMA secure_delete=ON")
            cursor.close()

        return engine
    return create_async_engine(url, pool_pre_ping=True, **kwargs)


def make_sessions(
    engine: AsyncEngine, data_keys: DataKeys | None = None
) -> async_sessionmaker[AsyncSession]:
    """Sessions on ``engine``; each carries ``data_keys`` in ``session.info`` so that the
    fields sealed at rest are sealed and opened inside the caller's transaction without
    every use case passing the keys along. Without them, such fields cannot be touched."""
    info: dict[str, Any] = {} if data_keys is None else {SESSION_KEYS: data_keys}
    return async_sessionmaker(engine, expire_on_commit=False, info=info)


async def forget_old_versions(
    sessions: async_sessionmaker[AsyncSession], tables: Sequence[str]
) -> None:
    """Make the old versions of rows just overwritten (clear text sealed, a data key
    destroyed) leave the database's files: PostgreSQL keeps them in the table until a
    vacuum, so ``tables`` are vacuumed; SQLite (which overwrites freed pages itself, see
    ``secure_delete``) keeps them in its write-ahead log until a checkpoint, so the log is
    checkpointed and truncated. Best effort: a busy database is left to its own routine."""
    async with sessions() as session:
        connection = await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        if connection.dialect.name == "postgresql":
            for table in tables:
                await connection.exec_driver_sql(f'VACUUM "{table}"')
        else:
            await connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
