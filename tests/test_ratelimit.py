"""The one token bucket, and the per-source table of them."""

from __future__ import annotations

from natchat.proto.ratelimit import RateLimiter, TokenBucket
from natchat.proto.wire import Addr


def test_bucket_starts_full_takes_all_or_nothing_and_refills_at_its_rate() -> None:
    bucket = TokenBucket(2.0, 4.0, now=10.0)
    assert bucket.take(10.0, 3) and not bucket.take(10.0, 2) and bucket.level(10.0) == 1.0
    assert bucket.take(10.5, 2)  # one refilled
    assert bucket.level(100.0) == 4.0  # never over the burst
    assert bucket.level(50.0) == 4.0 and bucket.take(49.0, 4)  # a clock going back refills nothing
    assert not bucket.take(49.0)


def test_limiter_drops_over_the_rate_and_counts() -> None:
    limiter = RateLimiter(1.0, 2.0, max_sources=10)
    a = Addr("10.0.0.1", 1)
    assert [limiter.allow(a, 0.0) for _ in range(3)] == [True, True, False]
    assert limiter.dropped == 1 and limiter.allow(a, 1.0)


def test_limiter_forgets_the_least_recently_seen() -> None:
    limiter = RateLimiter(1.0, 1.0, max_sources=2)
    a, b, c = (Addr("10.0.0.1", p) for p in (1, 2, 3))
    assert limiter.allow(a, 0.0) and limiter.allow(b, 0.0)
    assert not limiter.allow(a, 0.0)  # a is now the most recently seen
    assert limiter.allow(c, 0.0) and len(limiter) == 2  # b is forgotten, not a
    assert not limiter.allow(a, 0.0) and limiter.allow(b, 0.0)
