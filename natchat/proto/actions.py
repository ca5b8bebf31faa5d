"""What a sans-I/O object that owns several UDP sockets asks its shell to do.

Sockets are numbers chosen by the object; the shell binds them, reports each new one's local address
back (``socket_opened``) and moves datagrams. Shared by the chat client and the mapping prober, and
carried out by :class:`natchat.shell.SocketsShell`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .wire import Addr


@dataclass(frozen=True, slots=True)
class Send:
    sock: int
    data: bytes
    addr: Addr
    not_before: float | None = None
    """Hold the datagram until this time (sub-millisecond: the shell spins rather than sleeps)."""


@dataclass(frozen=True, slots=True)
class OpenSocket:
    """Bind a fresh UDP socket (any port, the usual local address) and report it with ``socket_opened``."""

    sock: int


@dataclass(frozen=True, slots=True)
class CloseSocket:
    sock: int


Action = Send | OpenSocket | CloseSocket
