"""The token cache: a holder is kept for at most its time to live, keyed by the token's
hash (never the token), the least recently used dropped first."""

from __future__ import annotations

from encompass.services.access.token_cache import TokenCache


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
