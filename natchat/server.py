"""``natchat serve``: the Trio shell around :class:`~natchat.proto.server.RendezvousServer`.

One nursery, two tasks: the receive loop feeds datagrams to the protocol object and sends what it
returns; the sweeper sleeps until the protocol's next deadline (a cancel scope whose deadline the
receive loop moves) and lets it expire silent clients. Nothing here decides anything.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass

import trio

from .net import UDP_RECV_SIZE, bind_listening_udp, sockaddr_for, to_addr
from .probe import ProbeService, bind_probe_port, serve_probes
from .proto import stun
from .proto.events import Dropped, ServerEvent
from .proto.probe import is_probe_message
from .proto.server import RendezvousServer
from .proto.wire import Addr


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "0.0.0.0"
    port: int = 10080
    timeout: float = 30.0
    max_clients: int | None = None
    """Refuse registrations beyond this many clients (None: no limit)."""
    probe: bool = True
    """Answer ``natchat probe-mapping`` (natchat/probe.py); STUN Binding is answered either way."""
    probe_port: int | None = None
    """The probes' second port; None: the main port minus one, or any free port if that is taken."""


class _Shell:
    def __init__(
        self,
        proto: RendezvousServer,
        sock: trio.socket.SocketType,
        emit: Callable[[ServerEvent], None],
        probes: ProbeService | None = None,
    ):
        self.proto = proto
        self.sock = sock
        self.emit = emit
        self.probes = probes
        self.sweep_scope = trio.CancelScope()
        self.send_errors = 0

    async def receive_loop(self) -> None:
        while True:
            try:
                data, source = await self.sock.recvfrom(UDP_RECV_SIZE)
            except OSError:  # e.g. an ICMP error reported on the socket: not ours to die of
                continue
            # STUN Binding (RFC 5389) and mapping probes share this port; see natchat/probe.py.
            if stun.is_stun(data):
                if (answer := stun.binding_response(data, to_addr(source))) is not None:
                    with contextlib.suppress(OSError):
                        await self.sock.sendto(answer, source)
                continue
            if self.probes is not None and is_probe_message(data):
                await self.probes.receive_main(data, source)
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
                await self.sock.sendto(data, sockaddr_for(self.sock.family, addr))
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
    sock = await bind_listening_udp(config.host, config.port, _note)  # '::' without IPv6: 0.0.0.0
    with sock:
        alt = await bind_probe_port(sock, config.probe_port, _note) if config.probe else None
        async with trio.open_nursery() as nursery:
            probes = await nursery.start(serve_probes, sock, alt) if alt is not None else None
            shell = _Shell(RendezvousServer(timeout=config.timeout, max_clients=config.max_clients), sock, emit, probes)
            nursery.start_soon(shell.sweeper)
            nursery.start_soon(shell.receive_loop)
            task_status.started(to_addr(sock.getsockname()))


def _note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def print_event(verbose: bool, as_json: bool = False) -> Callable[[ServerEvent], None]:
    """Print each event as its human line, or (``as_json``) as one JSON object; dropped datagrams
    only when ``verbose``."""

    def emit(event: ServerEvent) -> None:
        if isinstance(event, Dropped) and not verbose:
            return
        print(json.dumps(event.as_dict(), ensure_ascii=False) if as_json else event.line(), flush=True)

    return emit
