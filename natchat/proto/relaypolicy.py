"""When one peer's messages go through the midPeer relay, and when a relayed peer tries direct again.

A message that finds no direct path within ``relay_after`` seconds goes through the relay (at once with
``--relay-only``); while relayed, direct attempts start again after 1, 2, 4 ... (at most ``upgrade_max``)
seconds, for as long as the peer was chatted with in the last ``upgrade_for`` seconds.

Owns: whether the peer is relayed, since when a path has been looked for, when the next background
attempt is due and the gap after it, and when the peer was last chatted with. May not: punch, send,
or touch the streams: it answers the link's questions and the link acts.
"""

from __future__ import annotations

from dataclasses import dataclass

INF = float("inf")


@dataclass(frozen=True, slots=True)
class RelayConfig:
    mode: str = "auto"
    """``auto``, ``direct`` (``--direct-only``) or ``relay`` (``--relay-only``)."""
    relay_after: float = 3.0
    upgrade_max: float = 15.0
    upgrade_for: float = 120.0


class RelayPolicy:
    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self.relayed = False
        """No direct path: messages go through the relay."""
        self.trying_since: float | None = None
        """When the link began looking for a direct path (None: it is not looking)."""
        self.next_direct = INF
        """While relayed: when the next background direct attempt starts."""
        self.direct_gap = 1.0
        self.last_used = -INF
        """The last chat message to or from the peer."""

    def looking(self, now: float) -> None:
        if self.trying_since is None:
            self.trying_since = now

    def stop_looking(self) -> None:
        self.trying_since = None

    def fallback_at(self, *, up: bool, pending: bool, ready: bool) -> float | None:
        """When messages waiting for a direct path go through the relay instead (None: they do not)."""
        if self.relayed or up or not pending or not ready:
            return None
        if self.config.mode == "relay":
            return 0.0  # at once
        if self.trying_since is None:
            return None
        return self.trying_since + self.config.relay_after

    def relay(self, now: float, *, idle: bool) -> None:
        """From now on the relay carries the messages; an idle path tries direct again in a second."""
        self.relayed = True
        self.direct_gap = 1.0
        if idle:
            self.next_direct = now + self.direct_gap

    def attempt_failed(self, now: float) -> bool:
        """A direct attempt ended without a path. True if relayed (the next one comes later, less often);
        False: the link decides (try again at once while there is something to deliver)."""
        if not self.relayed:
            return False
        self.next_direct = now + self.direct_gap
        self.direct_gap = min(2 * self.direct_gap, self.config.upgrade_max)
        return True

    def direct_due(self, now: float) -> bool:
        """Relayed and idle, the background attempt is due: True to start it. Nobody chats: no more tries
        until somebody does."""
        if not (self.relayed and now >= self.next_direct) or self.config.mode == "relay":
            return False  # (--relay-only never punches)
        if now < self.last_used + self.config.upgrade_for:
            return True
        self.next_direct = INF
        return False

    def direct(self) -> bool:
        """A direct path came up: off the relay; True if the peer was relayed."""
        self.trying_since = None
        was, self.relayed, self.next_direct = self.relayed, False, INF
        return was

    def timers(self, *, idle: bool) -> list[float]:
        if self.config.mode == "relay":
            return []
        if self.relayed and idle and self.last_used + self.config.upgrade_for > self.next_direct:
            return [self.next_direct]
        return []
