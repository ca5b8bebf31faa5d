"""``natchat serve``: the Trio shell around :class:`~natchat.proto.server.RendezvousServer`.

One nursery, two tasks: the receive loop feeds datagrams to the protocol object and sends what it
returns; the sweeper sleeps until the protocol's next deadline (a cancel scope whose deadline the
receive loop moves) and lets it expire silent clients. Nothing here decides anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import trio

from .net import UDP_RECV_SIZE, bind_udp, to_addr
from .proto.events import Dropped, ServerEvent
from .proto.server import RendezvousServer
from .proto.wire import Addr


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "0.0.0.0"
    port: int = 10080
    timeout: float = 30.0


class _Shell:
    def __init__(self, proto: RendezvousServer, sock: trio.socket.SocketType, emit: Callable[[ServerEvent], None]):
        self.proto = proto
        self.sock = sock
        self.emit = emit
        self.sweep_scope = trio.CancelScope()
        self.send_errors = 0

    async def receive_loop(self) -> None:
        while True:
            try:
                data, source = await self.sock.recvfrom(UDP_RECV_SIZE)
            except OSError:  # e.g. an ICMP error reported on the socket: not ours to die of
                continue
            self.proto.receive_datagram(data, to_addr(source), trio.current_time())
            await self.flush()

    async def sweeper(self) -> None:
        while True:
            with self.sweep_scope:
                await trio.sleep_forever()
            self.sweep_scope = trio.CancelScope()
            self.proto.handle_timer(trio.current_time())
            await self.flush()

    async def flush(self) -> None:
        while (event := self.proto.next_event()) is not None:
            self.emit(event)
        for data, addr in self.proto.datagrams_to_send():
            try:
                await self.sock.sendto(data, addr.as_tuple())
            except OSError:
                self.send_errors += 1
        timer = self.proto.get_timer()
        self.sweep_scope.deadline = math.inf if timer is None else timer


async def serve(
    config: ServerConfig,
    emit: Callable[[ServerEvent], None],
    *,
    task_status: trio.TaskStatus[Addr] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the rendezvous server until cancelled; ``task_status.started`` gets the bound address."""
    sock = await bind_udp(config.host, config.port)
    with sock:
        shell = _Shell(RendezvousServer(timeout=config.timeout), sock, emit)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(shell.sweeper)
            nursery.start_soon(shell.receive_loop)
            task_status.started(to_addr(sock.getsockname()))


def print_event(verbose: bool) -> Callable[[ServerEvent], None]:
    def emit(event: ServerEvent) -> None:
        if isinstance(event, Dropped) and not verbose:
            return
        print(event.line(), flush=True)

    return emit
