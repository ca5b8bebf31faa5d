"""Per-source rate limiting: a token bucket for each source address, in bounded memory.

A source may send ``rate`` datagrams per second, in bursts of up to ``burst``; beyond that its
datagrams are dropped before anything else is done with them, so one address flooding the server at
full speed costs it a dictionary lookup per datagram and cannot crowd out everybody else. At most
``max_sources`` addresses are tracked; the least recently seen is forgotten first (a forgotten source
starts again with a full bucket, which costs a flooder nothing it did not already have).
"""

from __future__ import annotations

from collections import OrderedDict

from .wire import Addr


class RateLimiter:
    def __init__(self, rate: float, burst: float, *, max_sources: int = 65536) -> None:
        self.rate = rate
        self.burst = burst
        self.max_sources = max_sources
        self._buckets: OrderedDict[Addr, tuple[float, float]] = OrderedDict()  # addr -> (tokens, as of)
        self.dropped = 0

    def allow(self, addr: Addr, now: float) -> bool:
        """Take one datagram from ``addr``'s bucket; False if it is empty (the datagram is dropped)."""
        tokens, at = self._buckets.pop(addr, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - at) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        else:
            self.dropped += 1
        self._buckets[addr] = (tokens, now)  # now the most recently seen
        if len(self._buckets) > self.max_sources:
            self._buckets.popitem(last=False)
        return allowed

    def __len__(self) -> int:
        return len(self._buckets)
