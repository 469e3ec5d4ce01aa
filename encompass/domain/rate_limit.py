"""Token buckets: how many requests one caller may make, and how long to wait when over.

Pure (the caller passes the time), so the rule is tested without a clock or a server. Each
key (a credential's hash, a client address) has a bucket of ``burst`` tokens refilled at
``rate`` per second; a request takes one token or is refused with the seconds until one
is back. Memory is bounded: past ``max_keys`` buckets, those refilled to full are dropped
first (a full bucket is the same as a new one, so this forgets nothing), then the least
recently used.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

DEFAULT_MAX_KEYS: Final = 10_000


@dataclass(frozen=True)
class Limit:
    """``rate`` tokens per second, at most ``burst`` saved up; ``rate`` 0 means no limit."""

    rate: float
    burst: int

    @property
    def unlimited(self) -> bool:
        return self.rate <= 0


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """One :class:`Limit` applied separately to every key."""

    def __init__(self, limit: Limit, *, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self.limit, self.max_keys = limit, max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, now: float) -> float:
        """Take one token from ``key``'s bucket at time ``now`` (seconds, monotonic).
        Returns 0 when allowed, else the seconds until a token is back (nothing taken)."""
        if self.limit.unlimited:
            return 0.0
        bucket = self._refilled(key, now)
        self._buckets.move_to_end(key)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.limit.rate

    def _refilled(self, key: str, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            self._make_room(now)
            bucket = _Bucket(float(self.limit.burst), now)
            self._buckets[key] = bucket
            return bucket
        elapsed = max(0.0, now - bucket.at)
        bucket.tokens = min(float(self.limit.burst), bucket.tokens + elapsed * self.limit.rate)
        bucket.at = now
        return bucket

    def _make_room(self, now: float) -> None:
        if len(self._buckets) < self.max_keys:
            return
        # Dropping full buckets in one sweep keeps the sweep rare (amortised O(1)).
        full = [
            key
            for key, b in self._buckets.items()
            if b.tokens + (now - b.at) * self.limit.rate >= self.limit.burst
        ]
        for key in full:
            del self._buckets[key]
        while len(self._buckets) >= self.max_keys:
            self._buckets.popitem(last=False)


def retry_after_header(wait: float) -> str:
    """``Retry-After`` in whole seconds, rounded up (at least 1)."""
    return str(max(1, math.ceil(wait)))
