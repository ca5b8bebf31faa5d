"""Who is online and what the session knows of them: the list mirror, the peer directory and
``@show_list``, fed by the server's list messages (``page``, ``delta``, ``details``).

Owns: the :class:`~natchat.proto.peerlist.PeerList`, the :class:`~natchat.proto.directory.PeerDirectory`,
the ``@show_list`` in progress and the last answer shown, and the requests that keep them current
(``sync``, ``lookup``), which it sends to the server through the callable it is given, only while the
session is registered (``token`` says). May not: touch paths or streams, or decide what a change means
for them: it returns each :class:`~natchat.proto.peerlist.ListUpdate` and the details learned, and the
session acts on them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Generic, TypeVar

from . import wire
from .directory import PeerDirectory, ShowList
from .events import ClientEvent, ListShown, Notice
from .peerlist import ListUpdate, PeerList
from .wire import PeerInfo

SHOW_EVERY = 1.0
"""Seconds between two lookups of everyone (``@show_list``) the server answers one client (its
``SHOW_EVERY``): within that, the last answer is shown again if the list has not changed."""

_H = TypeVar("_H")


class Roster(Generic[_H]):
    def __init__(
        self,
        my_id: str,
        token: Callable[[], str | None],
        send: Callable[[wire.Message], None],
        emit: Callable[[ClientEvent], None],
        rng: random.Random,
    ) -> None:
        """``token``: the session's token while it is registered with the server (else None); ``send``:
        to the server; ``emit``: the session's events (``@show_list``'s answer and notices)."""
        self.id = my_id
        self._token = token
        self._send = send
        self._emit = emit
        self._rng = rng
        self.list = PeerList()
        self.directory: PeerDirectory[_H] = PeerDirectory()
        self._show: ShowList | None = None
        self._shown: tuple[int, tuple[PeerInfo, ...], float] | None = None  # (version, list, when) last shown

    def __contains__(self, peer: object) -> bool:
        return peer in self.list

    def need(self, peer: str, now: float) -> None:
        """The session needs ``peer``'s details: looked up with the next :meth:`flush`."""
        if peer in self.list and peer != self.id:
            self.directory.need(peer, now)

    def flush(self) -> None:
        """Send the lookups wanted since the last call (a datagram per 16 peers)."""
        if self.directory.has_wanted and (token := self._token()) is not None:
            for batch in self.directory.lookups():
                self._send(wire.Lookup(id=self.id, token=token, q=0, peers=batch))

    def get_timers(self) -> list[float]:
        timers = [self.directory.asked_at]
        if self.list.sync_at is not None:
            timers.append(self.list.sync_at)
        if self._show is not None:
            timers.append(self._show.send_at)
        return timers

    def handle_timer(self, now: float) -> None:
        if self.list.sync_due(now):
            self.sync(now)
        if now >= self.directory.asked_at:
            batches = self.directory.ask_again(now, self.list.ids)
            if (token := self._token()) is not None:
                for batch in batches:
                    self._send(wire.Lookup(id=self.id, token=token, q=0, peers=batch))
        if self._show is not None and now >= self._show.send_at:
            self._send_show(now)

    def sync(self, now: float) -> None:
        """Ask for the changes after our version (unless one such request is on its way)."""
        if (token := self._token()) is not None and (since := self.list.sync(now)) is not None:
            self._send(wire.Sync(id=self.id, token=token, since=since))

    def alive(self, ver: int, now: float) -> None:
        """A keepalive answer: the registry is at ``ver``."""
        if self.list.behind(ver):
            self.sync(now)

    def on_page(self, page: wire.ListPage) -> ListUpdate | None:
        return self.list.on_page(page)

    def on_delta(self, delta: wire.ListDelta) -> ListUpdate:
        return self.list.on_delta(delta)

    def too_often(self, text: str, now: float) -> bool:
        """The server refused a ``@show_list`` lookup for now; False if none is in progress."""
        if self._show is None:
            return False
        self._show.too_often(text, now)
        return True

    def on_details(self, msg: wire.Details) -> tuple[list[PeerInfo], tuple[PeerInfo, ...] | None]:
        """Details from the server: those still current (to learn), and, if this page completes the
        ``@show_list`` in progress, everyone it listed (then call :meth:`answered`)."""
        fresh = []
        for info in msg.peers:
            changed = self.list.ids.get(info.id)
            if changed is not None and changed <= msg.ver:
                fresh.append(info)  # (not in our list, or changed since the answer: asked again if needed)
        show = self._show
        if show is None or (peers := show.page(msg.q, msg.ver, msg.index, msg.count, msg.peers)) is None:
            return fresh, None
        self._show = None
        return fresh, peers

    def answered(self, peers: tuple[PeerInfo, ...], ver: int, now: float) -> ListUpdate | None:
        """``@show_list``'s answer, as of registry version ``ver``, is about to be shown: if it is newer than
        our list, it is the list now (the update; else None)."""
        update = None
        if self.list.ver is None or ver > self.list.ver:
            update = self.list.replace((p.id for p in peers), ver)
        self._shown = (self.list.ver or 0, peers, now)
        return update

    def show_list(self, now: float) -> None:
        """``@show_list``: look up everyone's details (the list holds IDs only); a ``ListShown`` follows, or a
        ``list_unavailable`` notice. Within a second of the last answer, the same answer is shown again if
        the list has not changed since, else the lookup waits out the second."""
        if self._token() is None:
            self._emit(Notice("list_unavailable", "not registered with the server: the list is unavailable"))
            return
        if self._show is not None:
            return  # one is on its way: its answer is shown
        shown = self._shown
        if shown is not None and now < shown[2] + SHOW_EVERY:
            if shown[0] == self.list.ver:
                self._emit(ListShown(shown[1]))
                return
            self._show = ShowList(q=0, send_at=shown[2] + SHOW_EVERY)
            return
        self._show = ShowList(q=0, send_at=now)
        self._send_show(now)

    def _send_show(self, now: float) -> None:
        show = self._show
        assert show is not None
        token = self._token()
        if show.exhausted or token is None:
            self._show = None
            self._emit(Notice("list_unavailable", show.unavailable()))
            return
        show.retry(self._rng.randrange(1, 2**53), now)
        self._send(wire.Lookup(id=self.id, token=token, q=show.q, peers=None))
