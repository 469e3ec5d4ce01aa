"""Bearer tokens looked up once a second, not on every request.

A force's system reports incidents many times a second with one token; looking its hash
up for each request cost three database round trips (begin, select, rollback). The cache
keeps each token's holder for at most ``ttl`` seconds (one by default), so a revocation
or a replaced token takes effect within that time on every API process, as if the cached
entry carried a version stamp that expires each second. Only found holders are cached: a
token issued a moment ago works at once, and unknown tokens cost memory nothing. Entries
are keyed by the token's hash, never the token.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from encompass.services.access.credentials import hash_token

T = TypeVar("T")
V = TypeVar("V")

DEFAULT_TTL = 1.0
DEFAULT_SIZE = 4096


class TokenCache(Generic[T]):
    """Holders of tokens for ``ttl`` seconds, the ``size`` most recently used kept."""

    def __init__(
        self,
        *,
        ttl: float = DEFAULT_TTL,
        size: int = DEFAULT_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl, self._size, self._clock = ttl, size, clock
        self._entries: OrderedDict[str, tuple[float, T]] = OrderedDict()

    def get(self, token: str) -> T | None:
        """The holder cached for ``token``, or None (never seen, or looked up too long ago)."""
        key = hash_token(token)
        found = self._entries.get(key)
        if found is None:
            return None
        at, holder = found
        if self._clock() - at >= self._ttl:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return holder

    def put(self, token: str, holder: T) -> None:
        """Remember ``holder`` of ``token`` as of now."""
        key = hash_token(token)
        self._entries[key] = (self._clock(), holder)
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)


class SharedLookups(Generic[V]):
    """Lookups of one token running at once share one query. When a cached entry expires,
    every request in flight with that token misses it together: without this each would
    query the database (and take a pooled connection) for the same answer."""

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Future[V]] = {}

    async def run(self, token: str, load: Callable[[], Awaitable[V]]) -> V:
        """``load()``'s answer, from the lookup of ``token`` already running if any."""
        key = hash_token(token)
        running = self._running.get(key)
        if running is None:
            running = asyncio.ensure_future(load())
            self._running[key] = running
            running.add_done_callback(lambda _: self._running.pop(key, None))
        # One caller giving up must not cancel the lookup the others wait for.
        return await asyncio.shield(running)
