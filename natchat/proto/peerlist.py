"""The peer list: a client's mirror of the server's registry, as IDs in registration order.

The server sends the whole list as pages after a registration, and every change after that as
versioned deltas; a client applies a delta only when it continues its version exactly, and asks for
the rest (``sync``) on a gap, when a keepalive answer names another version, or when no list followed
its registration within a second. ``docs/PROTOCOL.md`` (*The list converges*).

Used by the chat session and by the join-storm benchmark (``bench/run.py``), which keeps thousands of
lists the way a client does.

Owns: the IDs with the version of the last change about each, the version, the pages of a snapshot
being collected, when a sync may be asked for. May not: send (it says when a sync is due and from which
version), or know what a peer's details or paths are: what changed is returned as a :class:`ListUpdate`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from . import wire

SYNC_RETRY = 1.0
"""Seconds a sync (or the list after registering) is given before it is asked for again."""


@dataclass(frozen=True, slots=True)
class ListUpdate:
    joined: tuple[str, ...] = ()
    """IDs that joined, or (already listed) whose details changed: they are in ``changed`` too."""
    left: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    """Listed before and listed again ("+id"): their addresses or key changed."""
    count: int = 0
    snapshot: bool = False
    """A whole list replaced ours: any peer's details may have changed in what we missed."""
    reordered: bool = False
    gap: bool = False
    """Changes are missing before these: ask for the rest (:meth:`PeerList.sync`)."""

    @property
    def shown(self) -> bool:
        """Worth a ``ListChanged`` event."""
        return bool(self.joined or self.left or self.reordered)


class PeerList:
    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        """The list, in registration order: each ID with the version of the last change about it."""
        self.ver: int | None = None
        """The registry version the list is at (None: not known yet)."""
        self._pages: dict[int, list[str]] = {}
        self._pages_key: tuple[int, int] | None = None  # (version, page count)
        self.sync_at: float | None = None
        """Not before then may a sync be asked for (one is on its way), and then it is due."""
        self.dropped = 0

    def __contains__(self, peer: object) -> bool:
        return peer in self.ids

    def registered(self, now: float) -> None:
        """We (re)registered: the snapshot that follows is authoritative; ask if it does not come."""
        self.ver = None
        self.sync_at = now + SYNC_RETRY

    def behind(self, ver: int) -> bool:
        return ver != self.ver

    def sync(self, now: float) -> int | None:
        """The version to ask the rest after, if a sync may be sent now (None: one is on its way)."""
        if self.sync_at is not None and now < self.sync_at:
            return None
        self.sync_at = now + SYNC_RETRY
        return self.ver or 0

    def sync_due(self, now: float) -> bool:
        return self.sync_at is not None and now >= self.sync_at

    def on_page(self, page: wire.ListPage) -> ListUpdate | None:
        """A page of a snapshot: the update once every page of it is in (None until then)."""
        if page.index >= page.count or (self.ver is not None and page.ver < self.ver):
            self.dropped += 1  # malformed, or a page of a list older than ours (late, or repeated)
            return None
        key = (page.ver, page.count)
        if self._pages_key != key:
            if self._pages_key is not None and self._pages_key[0] > page.ver and self.ver is not None:
                return None  # a page of an older snapshot than the one being collected
            self._pages_key, self._pages = key, {}
        self._pages[page.index] = page.ids()
        if len(self._pages) < page.count:
            return None
        ids = [cid for i in range(page.count) for cid in self._pages[i]]
        self._pages_key, self._pages = None, {}
        return self.replace(ids, page.ver)

    def replace(self, ids: Iterable[str], ver: int) -> ListUpdate:
        """A whole list (a snapshot) replaces ours."""
        peers = dict.fromkeys(ids, ver)
        left = tuple(cid for cid in self.ids if cid not in peers)
        joined = tuple(cid for cid in peers if cid not in self.ids)
        reordered = list(peers) != list(self.ids)
        self.ids, self.ver, self.sync_at = peers, ver, None
        return ListUpdate(joined, left, (), len(peers), snapshot=True, reordered=reordered)

    def on_delta(self, delta: wire.ListDelta) -> ListUpdate:
        """Apply the changes that follow our version, in place; ``gap``: ask for the rest."""
        if self.ver is None:
            return ListUpdate(count=len(self.ids), gap=True)
        ver = self.ver
        joined: list[str] = []
        left: list[str] = []
        changed: list[str] = []
        gap = False
        for ver_of, (cid, gone) in enumerate(delta.parsed(), start=delta.ver):
            if ver_of <= ver:
                continue  # had it already
            if ver_of != ver + 1:
                gap = True
                break
            ver = ver_of
            if gone:
                if self.ids.pop(cid, None) is not None:
                    left.append(cid)
            else:
                joined.append(cid)
                if cid in self.ids:  # moved, or restarted with a new key: look it up again if in use
                    changed.append(cid)
                self.ids[cid] = ver
        self.ver = ver
        self.sync_at = None
        return ListUpdate(tuple(joined), tuple(left), tuple(changed), len(self.ids), gap=gap)
