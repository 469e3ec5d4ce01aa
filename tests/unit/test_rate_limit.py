"""The token bucket, with the time passed in: bursts, refill, keys apart, bounded memory."""

from __future__ import annotations

from encompass.domain.rate_limit import Limit, RateLimiter, retry_after_header


def test_a_burst_then_one_token_per_interval() -> None:
    limiter = RateLimiter(Limit(rate=2.0, burst=3))
    # Given a full bucket of 3, three requests at once pass and the fourth waits 0.5 s;
    assert [limiter.take("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a", 0.0) == 0.5
    # a refused request takes nothing, so after 0.25 s the wait is 0.25 s;
    assert limiter.take("a", 0.25) == 0.25
    # after 0.5 s one token is back, and only one.
    assert limiter.take("a", 0.5) == 0.0
    assert limiter.take("a", 0.5) > 0


def test_keys_have_buckets_of_their_own() -> None:
    limiter = RateLimiter(Limit(rate=1.0, burst=1))
    assert limiter.take("a", 0.0) == 0.0
    assert limiter.take("a", 0.0) == 1.0
    assert limiter.take("b", 0.0) == 0.0


def test_a_bucket_never_holds_more_than_its_burst() -> None:
    limiter = RateLimiter(Limit(rate=10.0, burst=2))
    limiter.take("a", 0.0)
    assert [limiter.take("a", 1_000.0) for _ in range(3)][2] > 0


def test_rate_zero_means_no_limit() -> None:
    limiter = RateLimiter(Limit(rate=0, burst=1))
    assert all(limiter.take("a", 0.0) == 0.0 for _ in range(1_000))
    assert len(limiter) == 0


def test_memory_is_bounded_and_full_buckets_go_first() -> None:
    limiter = RateLimiter(Limit(rate=1.0, burst=2), max_keys=3)
    # Given two callers seen long ago (full again by now) and one that just emptied its
    # bucket (the least recently created),
    limiter.take("busy", 0.0)
    limiter.take("old-1", 0.0)
    limiter.take("old-2", 0.0)
    limiter.take("busy", 10.0)
    limiter.take("busy", 10.0)
    # when new callers arrive beyond the bound,
    for key in ("new-1", "new-2"):
        limiter.take(key, 10.0)
    # then memory stays bounded and the empty bucket is still remembered.
    assert len(limiter) <= 3
    assert limiter.take("busy", 10.0) > 0, "an empty bucket was forgotten"


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(1.0) == "1"
    assert retry_after_header(1.2) == "2"
