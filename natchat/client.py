"""``natchat join``: the Trio shell around :class:`~natchat.proto.client.ClientSession`.

One nursery holds a receiver task per socket, the timer task, the command reader and the signal
watcher. ``@exit``, end of input, Ctrl-C, SIGTERM and SIGHUP all do the same: deregister, then cancel
the nursery. The shell moves bytes and prints; every decision is the session's.
"""

from __future__ import annotations

import contextlib
import math
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from .net import UDP_RECV_SIZE, bind_udp, family_of, local_ip_toward, to_addr
from .proto.client import MAIN, ClientConfig, ClientSession, CloseSocket, MessageTooLong, OpenSocket, Send, UnknownPeer
from .proto.events import ChatReceived, ClientEvent, Joined, Left, PathUp, Refused
from .proto.wire import Addr

ReadLine = Callable[[], Awaitable[str]]
"""Returns the next line of input with its newline; an empty string at end of input."""

Write = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class JoinConfig:
    client_id: str
    server: Addr
    bind: str | None = None
    """Local address to bind; None: all addresses of the server's family."""
    port: int = 10081
    verbose: bool = False
    session: ClientConfig = field(default_factory=ClientConfig)

    @property
    def bind_host(self) -> str:
        if self.bind is not None:
            return self.bind
        return "::" if family_of(self.server.host) == socket.AF_INET6 else "0.0.0.0"


async def read_stdin_line() -> str:
    """Read a line from standard input (a terminal or a pipe) without blocking the event loop.

    A worker thread does the blocking read; cancelling abandons it, which is harmless at exit.
    """
    return await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)


def _print(text: str) -> None:
    print(text, flush=True)


def _print_err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _spin_until(deadline: float) -> None:
    """Busy-wait until trio's clock reaches ``deadline`` (at most a few milliseconds away).

    Trio's timers are only as fine as the OS poll timeout (a millisecond); hole punching between nearby
    NATs needs the first probe placed to tens of microseconds. Bounded: never longer than 5 ms.
    """
    limit = time.perf_counter() + 0.005
    while trio.current_time() < deadline and time.perf_counter() < limit:
        pass


class _Shell:
    def __init__(
        self,
        config: JoinConfig,
        session: ClientSession,
        main: trio.socket.SocketType,
        nursery: trio.Nursery,
        out: Write,
        err: Write,
    ) -> None:
        self.config = config
        self.session = session
        self.sockets: dict[int, trio.socket.SocketType] = {MAIN: main}
        self.receivers: dict[int, trio.CancelScope] = {}
        self.nursery = nursery
        self.out = out
        self.err = err
        self.timer_scope = trio.CancelScope()
        self.registered = trio.Event()
        self.exit_code = 0

    async def receive_loop(
        self, sock_id: int, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        sock = self.sockets[sock_id]
        with trio.CancelScope() as scope:
            self.receivers[sock_id] = scope
            task_status.started()
            while True:
                try:
                    data, source = await sock.recvfrom(UDP_RECV_SIZE)
                except OSError:
                    continue
                self.session.receive_datagram(data, sock_id, to_addr(source), trio.current_time())
                await self.flush()

    async def timer_loop(self) -> None:
        while True:
            with self.timer_scope:
                await trio.sleep_forever()
            self.timer_scope = trio.CancelScope()
            self.session.handle_timer(trio.current_time())
            await self.flush()

    async def flush(self) -> None:
        """Carry out what the session asked for, show its events, and re-arm the timer."""
        while actions := self.session.actions():
            for action in actions:
                match action:
                    case Send(not_before=float() as at) if at > trio.current_time():
                        self.nursery.start_soon(self.send_at, action, at)
                    case Send(sock=sock_id, data=data, addr=addr):
                        await self.send(sock_id, data, addr)
                    case OpenSocket(sock=sock_id):
                        await self.open_socket(sock_id)
                    case CloseSocket(sock=sock_id):
                        if (scope := self.receivers.pop(sock_id, None)) is not None:
                            scope.cancel()
                        if (sock := self.sockets.pop(sock_id, None)) is not None:
                            sock.close()
        while (event := self.session.next_event()) is not None:
            self.show(event)
        timer = self.session.get_timer()
        self.timer_scope.deadline = math.inf if timer is None else timer

    async def send(self, sock_id: int, data: bytes, addr: Addr) -> None:
        if (sock := self.sockets.get(sock_id)) is not None:
            with contextlib.suppress(OSError):  # unreachable now: the session retries or gives up
                await sock.sendto(data, addr.as_tuple())

    async def send_at(self, action: Send, at: float) -> None:
        """Send at ``at`` to within microseconds: sleep until just before, then spin (see _spin_until)."""
        await trio.sleep_until(at - 0.002)
        _spin_until(at)
        await self.send(action.sock, action.data, action.addr)

    async def open_socket(self, sock_id: int) -> None:
        main_local = self.session.priv
        sock = await bind_udp(self.config.bind_host, 0)
        self.sockets[sock_id] = sock
        await self.nursery.start(self.receive_loop, sock_id)
        local = Addr(main_local.host, to_addr(sock.getsockname()).port)
        self.session.socket_opened(sock_id, local, trio.current_time())

    def show(self, event: ClientEvent) -> None:
        match event:
            case ChatReceived():
                self.out(event.line())
            case Left():
                self.nursery.cancel_scope.cancel()
            case Refused():
                self.err(event.line())
                self.exit_code = 1
                self.nursery.cancel_scope.cancel()
            case PathUp() if not self.config.verbose:
                pass
            case Joined():
                self.err(event.line())
                self.registered.set()
            case _:
                self.err(event.line())

    async def commands(self, read_line: ReadLine) -> None:
        await self.registered.wait()
        while True:
            line = await read_line()
            if not line:  # end of input: leave as @exit would
                break
            if not self.command(line.strip()):
                break
        await self.leave()

    def command(self, line: str) -> bool:
        """Run one command line; False means leave."""
        now = trio.current_time()
        word, _, rest = line.partition(" ")
        if not line:
            return True
        if word == "@show_list" and not rest.strip():
            for info in self.session.peers():
                self.out(f"{info.id} {info.pub}")
        elif word == "@exit" and not rest.strip():
            return False
        elif word == "@chat":
            peer, _, text = rest.strip().partition(" ")
            text = text.strip()
            if not peer or not text:
                self.err("usage: @chat <client id> <message>")
            elif peer == self.session.id:
                self.err(f"error: {peer} is you; chat with another client")
            else:
                try:
                    self.session.chat(peer, text, now)
                except UnknownPeer:
                    self.err(f"error: {peer} is not in the list (see @show_list)")
                except MessageTooLong as exc:
                    self.err(f"error: message too long ({exc}); keep it under about 1000 bytes")
                else:
                    self.nursery.start_soon(self.flush)
        else:
            self.out("wrong instruction retype")
        return True

    async def leave(self) -> None:
        self.session.close(trio.current_time())
        await self.flush()

    async def watch_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
            async for _ in signals:
                await self.leave()


async def run_client(
    config: JoinConfig,
    read_line: ReadLine = read_stdin_line,
    out: Write = _print,
    err: Write = _print_err,
    *,
    handle_signals: bool = True,
) -> int:
    """Join, run commands until ``@exit``/end of input/a signal, deregister; returns the exit status."""
    main = await bind_udp(config.bind_host, config.port)
    with main:
        bound = to_addr(main.getsockname())
        local_ip = bound.host if bound.host not in ("0.0.0.0", "::") else local_ip_toward(config.server)
        session = ClientSession(config.client_id, config.server, Addr(local_ip, bound.port), config=config.session)
        async with trio.open_nursery() as nursery:
            shell = _Shell(config, session, main, nursery, out, err)
            await nursery.start(shell.receive_loop, MAIN)
            nursery.start_soon(shell.timer_loop)
            nursery.start_soon(shell.commands, read_line)
            if handle_signals:
                nursery.start_soon(shell.watch_signals)
            session.start(trio.current_time())
            await shell.flush()
        return shell.exit_code
