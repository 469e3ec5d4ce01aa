"""Building the async engine and session factory for SQLite or PostgreSQL."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm.exc import StaleDataError

if TYPE_CHECKING:
    from encompass.adapters.data_keys import DataKeys

# A connection older than this is replaced at checkout (a server or proxy may drop
# connections idle for long); one idle for IDLE_PING_SECONDS is tested first.
POOL_RECYCLE_SECONDS = 1800
IDLE_PING_SECONDS = 5.0
_IDLE_SINCE = "encompass_idle_since"

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
    kwargs.setdefault("pool_recycle", POOL_RECYCLE_SECONDS)
    engine = create_async_engine(url, **kwargs)
    ping_when_idle(engine)
    return engine


def ping_when_idle(engine: AsyncEngine, idle: float = IDLE_PING_SECONDS) -> None:
    """Test a pooled connection before use only when it has lain idle for ``idle``
    seconds, rather than on every checkout (``pool_pre_ping`` costs a round trip each
    time, three per item on a busy worker). A connection that fails the test is replaced
    (the pool tries again with a fresh one). A busy pool is never idle that long: a
    connection dropped under load fails its statement instead, which invalidates the
    whole pool, and the caller's one retry (a message put back, a 503 with Retry-After,
    the dispatcher's next tick) finds fresh connections."""

    @event.listens_for(engine.sync_engine.pool, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine.sync_engine.pool, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop(_IDLE_SINCE, None)
        if since is None or time.monotonic() - since < idle:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError("a pooled connection failed its idle check") from exc


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


async def ping(engine: AsyncEngine) -> None:
    """Raise unless the database answers a trivial query (``/readyz``)."""
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


def changed_concurrently(exc: BaseException) -> bool:
    """Whether ``exc`` says another writer changed the same versioned row first
    (``tables.Notice``'s version counter): the request lost a race and is safe to retry."""
    return isinstance(exc, StaleDataError)
