"""Token buckets: one kind for every limit the server keeps, and the per-source table of them.

:class:`TokenBucket` is the one rule: ``rate`` tokens a second, up to ``burst``; taking more than it
holds takes nothing. The server uses it for each source address (:class:`RateLimiter`), for each
client's relayed datagrams and bytes (``relaygate.py``) and for the server-wide budget of
everyone's-details pages (``server.py``).

A source may send ``rate`` datagrams per second, in bursts of up to ``burst``; beyond that its
datagrams are dropped before anything else is done with them, so one address flooding the server at
full speed costs it a dictionary lookup per datagram and cannot crowd out everybody else. At most
``max_sources`` addresses are tracked; the least recently seen is forgotten first (a forgotten source
starts again with a full bucket, which costs a flooder nothing it did not already have).

Owns: its buckets. Touches nothing else; time is passed in.
"""

from __future__ import annotations

from collections import OrderedDict

from .wire import Addr


class TokenBucket:
    """``rate`` tokens per second, at most ``burst``; full at ``now`` when made."""

    __slots__ = ("at", "burst", "rate", "tokens")

    def __init__(self, rate: float, burst: float, now: float = 0.0) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.at = now

    def level(self, now: float) -> float:
        """The tokens it holds at ``now`` (a clock that went back adds none)."""
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.at) * self.rate)
        self.at = now
        return self.tokens

    def take(self, now: float, n: float = 1.0) -> bool:
        """Take ``n`` tokens if it holds them at ``now``; if not, take none and say so."""
        tokens = min(self.burst, self.tokens + max(0.0, now - self.at) * self.rate)
        self.at = now
        if tokens < n:
            self.tokens = tokens
            return False
        self.tokens = tokens - n
        return True


class RateLimiter:
    """A :class:`TokenBucket` per source address, the ``max_sources`` most recently seen."""

    def __init__(self, rate: float, burst: float, *, max_sources: int = 65536) -> None:
        self.rate = rate
        self.burst = burst
        self.max_sources = max_sources
        self._buckets: OrderedDict[Addr, TokenBucket] = OrderedDict()  # least recently seen first
        self.dropped = 0

    def allow(self, addr: Addr, now: float) -> bool:
        """Take one datagram from ``addr``'s bucket; False if it is empty (the datagram is dropped)."""
        buckets = self._buckets
        bucket = buckets.get(addr)
        if bucket is None:
            bucket = buckets[addr] = TokenBucket(self.rate, self.burst, now)
            if len(buckets) > self.max_sources:
                buckets.popitem(last=False)
        else:
            buckets.move_to_end(addr)  # now the most recently seen
        if bucket.take(now):
            return True
        self.dropped += 1
        return False

    def __len__(self) -> int:
        return len(self._buckets)
