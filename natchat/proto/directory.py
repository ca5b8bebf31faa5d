"""Peers' details (addresses and the public key that seals what goes to and comes from them), looked up
from the server when first needed, and ``@show_list``'s lookup of everyone.

The list holds IDs only. A peer's details are looked up (``lookup``, 16 peers a datagram) when the
session first needs them: to chat, when the peer starts punching toward us, or when a datagram from it
arrives (kept, a few per peer, until its key is known). Keys are taken from the server the session
registered with only, never from a midPeer. ``docs/PROTOCOL.md`` (*The list converges*).

Owns: the details known, the lookups wanted, asked and due again, the datagrams held for a key
(:class:`PeerDirectory`); one ``@show_list`` in progress and the last one shown (:class:`ShowList`).
May not: send (it returns the lookups to send), judge who is listed (the session says), or open
datagrams.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from .wire import PeerInfo

LOOKUP_BATCH = 16
"""Peers per ``lookup`` datagram (the wire's limit)."""
LOOKUP_RETRY = 1.0
"""Seconds before a lookup without an answer is asked again ..."""
LOOKUP_FOR = 10.0
"""... for this long (a later need asks afresh)."""
HELD_MAX = 8
HELD_PEERS = 64
"""Datagrams kept per peer while its key is looked up (handled when it arrives), and for how many peers
at once: datagrams naming other peers are dropped meanwhile (a genuine peer sends again)."""
SHOW_TRIES = 4
SHOW_RETRY = 1.5
"""``@show_list`` asks the server this many times, this many seconds apart (the server answers one
client's ``@show_list`` at most once a second), before it says the list is unavailable."""

_H = TypeVar("_H")


def batches(peers: list[str]) -> list[list[str]]:
    return [peers[i : i + LOOKUP_BATCH] for i in range(0, len(peers), LOOKUP_BATCH)]


class PeerDirectory(Generic[_H]):
    """``_H``: what the session holds for a peer whose key is being looked up (a datagram and its way)."""

    def __init__(self) -> None:
        self._details: dict[str, PeerInfo] = {}
        self._wanted: dict[str, float] = {}  # to look up with the next lookups(): when first needed
        self._asked: dict[str, float] = {}  # looked up, no answer yet: when first asked
        self.asked_at = float("inf")
        """When the lookups still unanswered are due to be asked again."""
        self._held: dict[str, deque[_H]] = {}

    def get(self, peer: str) -> PeerInfo | None:
        return self._details.get(peer)

    def need(self, peer: str, now: float) -> None:
        """The session needs ``peer``'s details (the caller checked that it is listed and not us)."""
        if peer in self._details or peer in self._asked:
            return
        self._wanted.setdefault(peer, now)

    def lookups(self) -> list[list[str]]:
        """The lookups wanted since the last call, in batches, now asked."""
        if not self._wanted:
            return []
        wanted, self._wanted = self._wanted, {}
        for peer, since in wanted.items():
            self._asked.setdefault(peer, since)
            self.asked_at = min(self.asked_at, since + LOOKUP_RETRY)
        return batches(list(wanted))

    @property
    def has_wanted(self) -> bool:
        return bool(self._wanted)

    def ask_again(self, now: float, listed: set[str] | dict[str, int]) -> list[list[str]]:
        """Lookups not answered within a second are asked again, for ``LOOKUP_FOR`` seconds (and only for
        peers still ``listed``): the batches to send."""
        for peer, since in list(self._asked.items()):
            if peer not in listed or now >= since + LOOKUP_FOR:
                del self._asked[peer]
                self._held.pop(peer, None)
        self.asked_at = now + LOOKUP_RETRY if self._asked else float("inf")
        return batches(list(self._asked))

    def learn(self, infos: list[PeerInfo]) -> list[tuple[str, list[_H]]]:
        """Details from the server: kept; for each peer, what was held for its key (to handle now)."""
        for info in infos:
            self._details[info.id] = info
            self._asked.pop(info.id, None)
            self._wanted.pop(info.id, None)
        return [(info.id, list(self._held.pop(info.id, ()))) for info in infos]

    def hold(self, peer: str, item: _H, now: float) -> bool:
        """If ``peer``'s key is not known yet: keep ``item`` for when it is, and look it up; True if so.
        A few per peer at most (the peer retransmits the rest), for a bounded number of peers."""
        if peer in self._details:
            return False
        if peer not in self._held and len(self._held) >= HELD_PEERS:
            return True  # dropped: anyone can name any peer, and this must not become lookups without end
        self.need(peer, now)
        self._held.setdefault(peer, deque(maxlen=HELD_MAX)).append(item)
        return True

    def held(self) -> dict[str, int]:
        """How many datagrams are held for each peer's key."""
        return {peer: len(items) for peer, items in self._held.items()}

    def stale(self, peer: str) -> None:
        """``peer``'s details changed: forget them (a later need looks them up again)."""
        self._details.pop(peer, None)

    def forget(self, peer: str) -> None:
        """``peer`` left the list."""
        self._details.pop(peer, None)
        self._asked.pop(peer, None)
        self._wanted.pop(peer, None)
        self._held.pop(peer, None)

    def clear(self) -> None:
        """A new snapshot of the list: every detail may be stale."""
        self._details.clear()


@dataclass(slots=True)
class ShowList:
    """An ``@show_list`` in progress: the server's pages of everyone's details for lookup ``q``."""

    q: int
    send_at: float  # when to (re)send the lookup
    tries: int = 0
    count: int | None = None
    pages: dict[int, list[PeerInfo]] = field(default_factory=dict)
    refused: str | None = None  # what the server said when it last refused (too_often)

    @property
    def exhausted(self) -> bool:
        """Asked ``SHOW_TRIES`` times: the list cannot be had now."""
        return self.tries >= SHOW_TRIES

    def retry(self, q: int, now: float) -> None:
        """Ask (again) as lookup ``q``."""
        self.tries += 1
        self.q, self.count, self.pages = q, None, {}
        self.send_at = now + SHOW_RETRY

    def unavailable(self) -> str:
        """Why the list is not shown, once it cannot be had."""
        tried = f"asked {self.tries} times" if self.tries else "not registered"
        said = f": {self.refused}" if self.refused else ""
        return f"the server did not send the list{said} ({tried})"

    def too_often(self, text: str, now: float) -> None:
        self.send_at = now + SHOW_RETRY
        self.refused = text

    def page(self, q: int, ver: int, index: int, count: int, peers: list[PeerInfo]) -> tuple[PeerInfo, ...] | None:
        """A page of the answer: everyone, in registration order, once every page is in (else None)."""
        if q != self.q or self.count not in (None, count) or index >= count:
            return None
        self.count = count
        self.pages[index] = peers
        if len(self.pages) < count:
            return None
        return tuple(p for i in range(count) for p in self.pages[i])
