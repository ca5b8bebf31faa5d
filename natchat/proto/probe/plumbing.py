"""What the prober's units share: keyed deadlines (:class:`Timers`) and the shell's actions
(:class:`Outbox`).

Owns: no decision. A unit schedules and cancels only its own keys, and puts its datagrams and socket
openings in the outbox in the order it makes them; the shell carries them out in that order.

May not touch: any unit's state; the clock (deadlines are values the units compute from ``now``).
"""

from __future__ import annotations

import heapq
from typing import Final

from ..actions import Action, CloseSocket, OpenSocket, Send
from ..wire import Addr

CONTROL: Final = 0
"""The prober's control socket (hello, acknowledgements, heartbeat, cancel, bye)."""
MAP: Final = 1
"""Asks both server ports which public address they see."""
FILTER: Final = 2
"""The filtering test: sends to the main port only."""


class Timers:
    """One-shot deadlines by key: scheduling a key again replaces its deadline, cancelling forgets it.
    Due keys come out earliest first (equal deadlines: the smaller key first)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int]] = []
        self._gen: dict[int, int] = {}

    def schedule(self, key: int, when: float) -> None:
        gen = self._gen.get(key, 0) + 1
        self._gen[key] = gen
        heapq.heappush(self._heap, (when, key, gen))

    def cancel(self, key: int) -> None:
        self._gen[key] = self._gen.get(key, 0) + 1

    def next(self) -> float | None:
        while self._heap and self._gen.get(self._heap[0][1]) != self._heap[0][2]:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> int | None:
        """The next key whose deadline is ``now`` or earlier (it fires once), or None."""
        while self._heap and self._heap[0][0] <= now:
            _, key, gen = heapq.heappop(self._heap)
            if self._gen.get(key) != gen:
                continue  # cancelled or rescheduled since
            self._gen[key] = gen + 1
            return key
        return None

    def clear(self) -> None:
        self._heap.clear()


class Outbox:
    """The actions for the shell, in order, and which sockets are open (a socket is closed once)."""

    def __init__(self, server: Addr) -> None:
        self.server = server
        self._actions: list[Action] = []
        self._open: set[int] = set()

    def take(self) -> list[Action]:
        out, self._actions = self._actions, []
        return out

    def send(self, sock: int, data: bytes, addr: Addr | None = None) -> None:
        """``data`` from socket ``sock`` to ``addr`` (the server's main port if None)."""
        self._actions.append(Send(sock, data, self.server if addr is None else addr))

    def open(self, sock: int) -> None:
        self._open.add(sock)
        self._actions.append(OpenSocket(sock))

    def close(self, sock: int) -> None:
        if sock in self._open:
            self._open.remove(sock)
            self._actions.append(CloseSocket(sock))

    def close_all(self) -> None:
        for sock in sorted(self._open):
            self.close(sock)
