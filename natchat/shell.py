"""The Trio shell for a sans-I/O object that owns several UDP sockets (the chat client, the prober).

It moves bytes and sleeps; the object decides everything. One receiver task per socket feeds
``receive_datagram``; a :class:`~natchat.timer.TimerLoop` sleeps until ``get_timer`` (every flush moves
the deadline) and calls ``handle_timer``; :meth:`SocketsShell.flush` carries out the object's
:mod:`~natchat.proto.actions` and then calls the owner's ``after_flush`` (to show events, or to stop).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Protocol

import trio

from .net import UDP_RECV_SIZE, bind_udp, sockaddr_for, to_addr
from .proto.actions import Action, CloseSocket, OpenSocket, Send
from .proto.wire import Addr
from .timer import TimerLoop


class SocketOwner(Protocol):
    def actions(self) -> list[Action]: ...
    def receive_datagram(self, data: bytes, sock: int, addr: Addr, now: float) -> None: ...
    def handle_timer(self, now: float) -> None: ...
    def get_timer(self) -> float | None: ...
    def socket_opened(self, sock: int, local: Addr, now: float) -> None: ...


def spin_until(deadline: float) -> None:
    """Busy-wait until trio's clock reaches ``deadline`` (at most a few milliseconds away).

    Trio's timers are only as fine as the OS poll timeout (a millisecond); hole punching between nearby
    NATs needs a first probe placed to tens of microseconds. Bounded: never longer than 5 ms.
    """
    limit = time.perf_counter() + 0.005
    while trio.current_time() < deadline and time.perf_counter() < limit:
        pass


class SocketsShell:
    """Runs ``owner``'s sockets in ``nursery`` (which this shell spawns tasks into).

    ``bind_host`` is what fresh sockets bind to, ``local_ip`` the address reported for them (the one
    routed toward the server), ``after_flush`` is called after every batch of actions.
    """

    def __init__(
        self,
        owner: SocketOwner,
        nursery: trio.Nursery,
        *,
        bind_host: str,
        local_ip: str,
        after_flush: Callable[[], None] = lambda: None,
    ) -> None:
        self.owner = owner
        self.nursery = nursery
        self.bind_host = bind_host
        self.local_ip = local_ip
        self.after_flush = after_flush
        self.sockets: dict[int, trio.socket.SocketType] = {}
        self._receivers: dict[int, trio.CancelScope] = {}
        self._flushing = trio.Lock()
        """One flush at a time: opening a socket yields, and a flush that ran meanwhile (a datagram, the
        timer) could close a socket that is still being opened, which would then stay open."""
        self._timer = TimerLoop()

    async def start(self) -> None:
        """Start the timer task and carry out what the owner asked for so far."""
        self.nursery.start_soon(self._timer.run, self._on_timer)
        await self.flush()

    async def add_socket(self, sock_id: int, sock: trio.socket.SocketType) -> None:
        """Adopt an already bound socket (e.g. the registered one) and start receiving on it."""
        self.sockets[sock_id] = sock
        await self.nursery.start(self._receive_loop, sock_id)

    async def _receive_loop(
        self, sock_id: int, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        sock = self.sockets[sock_id]
        with trio.CancelScope() as scope:
            self._receivers[sock_id] = scope
            task_status.started()
            while True:
                try:
                    data, source = await sock.recvfrom(UDP_RECV_SIZE)
                except OSError:  # e.g. an ICMP error for an earlier send: keep listening
                    continue
                self.owner.receive_datagram(data, sock_id, to_addr(source), trio.current_time())
                await self.flush()

    async def _on_timer(self) -> None:
        self.owner.handle_timer(trio.current_time())
        await self.flush()

    async def flush(self) -> None:
        """Carry out the owner's actions, call ``after_flush``, and re-arm the timer."""
        async with self._flushing:
            await self._flush()

    async def _flush(self) -> None:
        while actions := self.owner.actions():
            for action in actions:
                match action:
                    case Send(not_before=float() as at) if at > trio.current_time():
                        self.nursery.start_soon(self._send_at, action, at)
                    case Send(sock=sock_id, data=data, addr=addr):
                        await self._send(sock_id, data, addr)
                    case OpenSocket(sock=sock_id):
                        await self._open_socket(sock_id)
                    case CloseSocket(sock=sock_id):
                        self._close_socket(sock_id)
        self.after_flush()
        self._timer.arm(self.owner.get_timer())

    async def _send(self, sock_id: int, data: bytes, addr: Addr) -> None:
        if (sock := self.sockets.get(sock_id)) is not None:
            # unreachable (now, or from this socket's family): lost; the owner retries or gives up
            with contextlib.suppress(OSError):
                await sock.sendto(data, sockaddr_for(sock.family, addr))

    async def _send_at(self, action: Send, at: float) -> None:
        """Send at ``at`` to within microseconds: sleep until just before, then spin."""
        await trio.sleep_until(at - 0.002)
        spin_until(at)
        await self._send(action.sock, action.data, action.addr)

    async def _open_socket(self, sock_id: int) -> None:
        sock = await bind_udp(self.bind_host, 0)
        await self.add_socket(sock_id, sock)
        local = Addr(self.local_ip, to_addr(sock.getsockname()).port)
        self.owner.socket_opened(sock_id, local, trio.current_time())

    def _close_socket(self, sock_id: int) -> None:
        if (scope := self._receivers.pop(sock_id, None)) is not None:
            scope.cancel()
        if (sock := self.sockets.pop(sock_id, None)) is not None:
            sock.close()

    def close_all(self) -> None:
        for sock_id in list(self.sockets):
            self._close_socket(sock_id)
