"""Building the async engine and session factory for SQLite or PostgreSQL."""

from __future__ import annotations

import os
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
"""The key of the :class:`DataKeys` in every session's ``info`` (``services/at_rest.py``)."""


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
    workers may share the embedded database file.
    """
    if url.startswith("sqlite"):
        private_sqlite_file(url)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    return create_async_engine(url, pool_pre_ping=True, **kwargs)


def make_sessions(engine: AsyncEngine, data_keys: DataKeys | None = None
                  ) -> async_sessionmaker[AsyncSession]:
    """Sessions on ``engine``; each carries ``data_keys`` in ``session.info`` so that the
    fields sealed at rest are sealed and opened inside the caller's transaction without
    every use case passing the keys along. Without them, such fields cannot be touched."""
    info: dict[str, Any] = {} if data_keys is None else {SESSION_KEYS: data_keys}
    return async_sessionmaker(engine, expire_on_commit=False, info=info)
