"""The roster port: who a reported child could be, decided by the domain matcher.

Two rosters implement it:

- :class:`IndexedRoster` (the default): the whole roster held in memory as a ``RosterIndex``
  (columns, blocking keys, name frequencies), built once per worker process from
  ``all_pupils`` and rebuilt when the roster version (``roster_version``, changed by every
  pupils import in the import's own transaction) says the roster changed.
- :class:`DatabaseRoster`: blocks in SQL for each child and decides in the domain; no memory,
  no warm-up, but a query per child and default name frequencies.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Protocol

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from encompass.adapters.db.directory_repo import all_pupils, candidate_pupils, roster_version
from encompass.adapters.db.match_model_repo import latest_match_model, save_match_model
from encompass.domain.match import ChildQuery, MatchResult, RosterIndex, decide
from encompass.domain.matching.columns import ColumnBuilder, RosterColumns
from encompass.domain.matching.fit import (
    FittedModel,
    ModelMismatch,
    model_from_json,
    model_to_json,
    random_pair_levels,
    refit_u,
)
from encompass.domain.matching.index import INDEX_RANDOM_PAIRS

log = structlog.get_logger()

DEFAULT_CHECK_EVERY = 30.0
"""Seconds between two reads of the roster version, by default."""


class Roster(Protocol):
    async def warm(self) -> None:
        """Get ready to match (load what the roster keeps in memory), so that the first
        child is not kept waiting."""
        ...

    async def match(self, query: ChildQuery) -> MatchResult:
        """Decide which roster entries (if any) the child is. The roster reads the
        directory through its own sessions: the directory is not the caller's to write."""
        ...

    async def close(self) -> None:
        """Stop any background work; the roster is not used afterwards."""
        ...


async def _roster_model(
    sessions: async_sessionmaker[AsyncSession],
    version: str,
    columns: RosterColumns,
    keep: bool = True,
) -> FittedModel | None:
    """The matching model for roster ``version``: the one kept for it, or the newest kept
    one with its ``u`` refitted on this roster (and, with ``keep``, kept for this version),
    or None (the hand-set m) when none was ever kept or the kept one is not this
    matcher's."""
    async with sessions() as session:
        kept = await latest_match_model(session)
    if kept is None:
        return None
    kept_version, text = kept
    try:
        model = model_from_json(text)
    except ModelMismatch as exc:
        log.warning("roster.model_unusable", reason=str(exc))
        return None
    if kept_version == version:
        return model
    n = len(columns)
    refitted = await asyncio.to_thread(
        lambda: refit_u(model, random_pair_levels(columns.pupil, n, pairs=INDEX_RANDOM_PAIRS))
    )
    if keep:
        async with sessions() as session:
            await save_match_model(session, version, model_to_json(refitted), datetime.now(UTC))
            await session.commit()
        log.info("roster.model_refitted", random_pairs=refitted.random_pairs)
    return refitted


async def load_roster_index(
    sessions: async_sessionmaker[AsyncSession],
    postcodes: Iterable[str] | None = None,
    version: str | None = None,
    keep_model: bool = True,
) -> RosterIndex:
    """Index every pupil now in the database (``postcodes`` as for ``RosterIndex``); with
    the roster's ``version``, weighed by the matching model kept for it (see
    :func:`_roster_model`; ``keep_model``: keep a refitted model for this version).

    Pupils are streamed into compact columns as they arrive (no list of a million objects);
    the indexing itself, seconds of CPU for a large roster, runs in a worker thread so the
    event loop keeps serving meanwhile.
    """
    builder = ColumnBuilder()
    async with sessions() as session:
        async for p in all_pupils(session):
            builder.add(
                p.setting_id,
                p.upn,
                p.given_name,
                p.family_name,
                p.date_of_birth,
                p.postcode,
                p.gender,
            )
    columns = await asyncio.to_thread(builder.build)
    model = None if version is None else await _roster_model(sessions, version, columns, keep_model)
    return await asyncio.to_thread(lambda: RosterIndex(columns, postcodes, model))


class IndexedRoster:
    """The roster in memory, refreshed when it changes.

    Loaded once per process (by :meth:`warm` or the first match). Before matching, the roster
    version is read at most every ``check_every`` seconds (0: before every match); when it
    changed, a new index is built in the background while the old one keeps serving, and
    replaces it when complete. So a pupils import reaches matching within ``check_every``
    seconds plus the build time; until then children are matched against the previous roster.
    A failed rebuild is logged and tried again at the next check, the old index still serving.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        check_every: float = DEFAULT_CHECK_EVERY,
        postcodes: Iterable[str] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``postcodes``: every real postcode, if known (see ``RosterIndex``); ``monotonic``:
        the clock that spaces version checks (tests pass their own)."""
        if check_every < 0:
            raise ValueError("check_every must not be negative")
        self._sessions = sessions
        self._check_every = check_every
        self._postcodes = None if postcodes is None else tuple(postcodes)
        self._monotonic = monotonic
        self._index: RosterIndex | None = None
        self._version: str | None = None
        self._checked_at = 0.0
        self._first_load = asyncio.Lock()
        self._rebuild: asyncio.Task[None] | None = None
        # How many indexes were built, the first load included (for tests and operators).
        self.builds = 0

    @property
    def index(self) -> RosterIndex | None:
        """The serving index (None before loading)."""
        return self._index

    @property
    def version(self) -> str | None:
        """The roster version the serving index was built for (None before loading)."""
        return self._version

    async def warm(self) -> None:
        """Build the first index now, unless one is serving already."""
        await self._loaded()

    async def match(self, query: ChildQuery) -> MatchResult:
        """Decide with the serving index, having first checked the roster version if the
        last check is ``check_every`` seconds old."""
        await self._loaded()
        await self._check()
        index = self._index
        assert index is not None  # _loaded() set it, and it is never unset
        return index.match(query)

    async def wait_rebuilt(self) -> None:
        """Return once the rebuild in progress, if any, has finished (or failed)."""
        if self._rebuild is not None:
            await asyncio.wait([self._rebuild])

    async def close(self) -> None:
        """Cancel a rebuild in progress (its thread finishes on its own; the result is
        dropped)."""
        if self._rebuild is not None:
            self._rebuild.cancel()
            # wait(), not await: the task's CancelledError is not ours to raise.
            await asyncio.wait([self._rebuild])

    async def _loaded(self) -> None:
        if self._index is not None:
            return
        # Children matched concurrently before the first load share the one build.
        async with self._first_load:
            if self._index is None:
                await self._build()

    async def _check(self) -> None:
        now = self._monotonic()
        if self._rebuild is not None or now - self._checked_at < self._check_every:
            return
        self._checked_at = now
        async with self._sessions() as session:
            version = await roster_version(session)
        if version != self._version:
            log.info("roster.changed", builds=self.builds)
            self._rebuild = asyncio.create_task(self._rebuild_in_background())

    async def _rebuild_in_background(self) -> None:
        try:
            await self._build()
        except Exception as exc:
            # Only the class: a database error's message may quote the row it choked on.
            log.error("roster.rebuild_failed", error=exc.__class__.__name__)
        finally:
            self._rebuild = None

    async def _build(self) -> None:
        started = time.perf_counter()
        async with self._sessions() as session:
            # Read before the pupils, never after: an import committing in between makes
            # the index newer than its version, which costs one extra rebuild at the next
            # check, whereas the other order could label old pupils with the new version.
            version = await roster_version(session)
        self._checked_at = self._monotonic()
        index = await load_roster_index(self._sessions, self._postcodes, version)
        self._index, self._version = index, version
        self.builds += 1
        log.info(
            "roster.indexed",
            pupils=len(index),
            megabytes=round(index.nbytes / 2**20, 1),
            seconds=round(time.perf_counter() - started, 3),
        )


class DatabaseRoster:
    """Blocks in the database (UPN, date of birth, postcode), decides in the domain."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def warm(self) -> None:
        """Nothing to load: every match queries the database."""

    async def match(self, query: ChildQuery) -> MatchResult:
        async with self._sessions() as session:
            pupils = await candidate_pupils(
                session,
                upn=query.upn,
                date_of_birth=query.date_of_birth,
                postcode=query.postcode,
                family_name=query.family_name,
            )
        return decide(query, pupils)

    async def close(self) -> None:
        """Nothing to stop."""
