"""The token cache: a holder is kept for at most its time to live, keyed by the token's
hash (never the token), the least recently used dropped first."""

from __future__ import annotations

import asyncio

from encompass.services.access.token_cache import SharedLookups, TokenCache


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_holder_is_kept_for_its_time_to_live_only() -> None:
    ticks = Ticks()
    cache: TokenCache[str] = TokenCache(ttl=1.0, clock=ticks)
    cache.put("tok-a", "force A")
    ticks.now += 0.99
    assert cache.get("tok-a") == "force A"
    ticks.now += 0.02
    assert cache.get("tok-a") is None
    assert cache.get("never-seen") is None


def test_the_token_itself_is_not_kept_and_the_oldest_go_first() -> None:
    cache: TokenCache[str] = TokenCache(size=2, clock=Ticks())
    for token in ("tok-a", "tok-b", "tok-c"):
        cache.put(token, token.upper())
    assert cache.get("tok-a") is None
    assert (cache.get("tok-b"), cache.get("tok-c")) == ("TOK-B", "TOK-C")
    assert "tok-b" not in repr(cache._entries)


async def test_lookups_of_one_token_at_once_share_one_query() -> None:
    lookups: SharedLookups[str | None] = SharedLookups()
    queries: list[str] = []
    release = asyncio.Event()

    async def load(token: str) -> str | None:
        queries.append(token)
        await release.wait()
        return f"holder of {token}"

    waiting = [
        asyncio.create_task(lookups.run(token, lambda t=token: load(t)))  # type: ignore[misc]
        for token in ("a", "a", "b", "a")
    ]
    await asyncio.sleep(0)
    waiting[0].cancel()  # one caller giving up leaves the others their answer
    release.set()
    answers = await asyncio.gather(*waiting[1:])
    assert answers == ["holder of a", "holder of b", "holder of a"]
    assert sorted(queries) == ["a", "b"]
    # Once answered, the next lookup queries again (the cache in front decides how often)
    assert await lookups.run("a", lambda: load("a")) == "holder of a"
    assert sorted(queries) == ["a", "a", "b"]
