"""The relay gate: whether a registered client's datagram may be relayed to another, now.

Owns: each sender's token buckets (datagrams and bytes per second, bursts of twice that), who has
had datagrams relayed to whom (so that :class:`~natchat.proto.events.RelayStarted` is said once per
pair and direction), and the counters of datagrams relayed and refused for the rate.

May not touch: the registry (the caller authenticates the sender and finds the receiver), the
outgoing queue (the caller sends the ``relayed`` message) or the clock (time is passed in).
"""

from __future__ import annotations

import enum

from .ratelimit import TokenBucket


class Verdict(enum.Enum):
    RELAY = "relay"
    """Relay it."""
    FIRST = "first"
    """Relay it: the first from this sender to this receiver."""
    LIMITED = "limited"
    """Drop it: the sender is over its rate."""


class RelayGate:
    def __init__(self, rate: float, byte_rate: float) -> None:
        self.rate = rate
        self.byte_rate = byte_rate
        self._buckets: dict[str, tuple[TokenBucket, TokenBucket]] = {}  # sender -> (datagrams, bytes)
        self._relaying: dict[str, set[str]] = {}  # sender -> receivers it has had relayed to
        self.relayed = 0
        """Datagrams relayed."""
        self.limited = 0
        """Datagrams not relayed because their sender was over its rate."""

    def admit(self, sender: str, receiver: str, size: int, now: float) -> Verdict:
        """Take one datagram of ``size`` bytes from ``sender`` to ``receiver``, if its buckets hold it."""
        buckets = self._buckets.get(sender)
        if buckets is None:
            buckets = self._buckets[sender] = (
                TokenBucket(self.rate, 2 * self.rate, now),
                TokenBucket(self.byte_rate, 2 * self.byte_rate, now),
            )
        datagrams, sizes = buckets
        held, held_bytes = datagrams.level(now), sizes.level(now)  # (both refilled, as of now)
        if held < 1 or held_bytes < size:
            self.limited += 1  # dropped without a word: the sender retransmits, more slowly
            return Verdict.LIMITED
        datagrams.take(now, 1)
        sizes.take(now, size)
        self.relayed += 1
        receivers = self._relaying.setdefault(sender, set())
        if receiver in receivers:
            return Verdict.RELAY
        receivers.add(receiver)
        return Verdict.FIRST

    def forget(self, client_id: str) -> None:
        """``client_id`` is gone: its buckets, and its place as a sender and as a receiver."""
        if self._relaying:
            self._buckets.pop(client_id, None)
            self._relaying.pop(client_id, None)
            for receivers in self._relaying.values():
                receivers.discard(client_id)

    def relaying(self) -> dict[str, frozenset[str]]:
        """Who has had datagrams relayed to whom (a copy)."""
        return {sender: frozenset(receivers) for sender, receivers in self._relaying.items()}

    def metered(self) -> frozenset[str]:
        """The senders whose rates it keeps."""
        return frozenset(self._buckets)
