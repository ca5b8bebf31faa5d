"""The chat session's UDP sockets, by number: which exist, what each is bound to, and whom a fresh one is for.

Socket :data:`MAIN` (0) is the one registered with the server. A hole-punching attempt that failed is
retried from a fresh local port (the conntrack trap, ``docs/PROTOCOL.md``), so the session asks its
shell for more sockets (:class:`~natchat.proto.actions.OpenSocket`); each fresh socket belongs to the one
peer it was opened for, and only that peer's datagrams count on it.

Owns: socket numbers, their owners and local addresses. May not: send anything, or decide when a socket
is needed (the direct path does); it appends its open and close requests to the session's action list,
in order with the sends, so that nothing is sent from a socket after it is closed.
"""

from __future__ import annotations

from collections.abc import Callable

from .actions import Action, CloseSocket, OpenSocket
from .wire import Addr

MAIN = 0
"""Socket number of the socket registered with the server."""


class SocketPool:
    def __init__(self, main_local: Addr, emit: Callable[[Action], None]) -> None:
        self._emit = emit
        self._local: dict[int, Addr] = {MAIN: main_local}
        self._owner: dict[int, str] = {}
        self._next = MAIN + 1

    def open_for(self, peer: str) -> int:
        """A fresh socket for ``peer``; its local address is known once :meth:`opened` is called."""
        sock = self._next
        self._next += 1
        self._owner[sock] = peer
        self._emit(OpenSocket(sock))
        return sock

    def opened(self, sock: int, local: Addr) -> str | None:
        """The shell bound ``sock`` to ``local``; the peer it is for (None: not ours any more)."""
        self._local[sock] = local
        return self._owner.get(sock)

    def release(self, sock: int) -> None:
        """Close a fresh socket (the registered one stays)."""
        if sock == MAIN:
            return
        self._emit(CloseSocket(sock))
        self._owner.pop(sock, None)
        self._local.pop(sock, None)

    def owner(self, sock: int) -> str | None:
        """The peer a fresh socket was opened for; None for :data:`MAIN` and unknown sockets."""
        return self._owner.get(sock)

    def local(self, sock: int) -> Addr:
        return self._local[sock]
