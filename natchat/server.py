"""``natchat serve``: the Trio shell around :class:`~natchat.proto.server.RendezvousServer`.

The receive loop feeds datagrams to the protocol object, a batch at a time; a sender task sends what
it returns; the sweeper sleeps until the protocol's next deadline (a cancel scope whose deadline the
receive loop moves) and lets it expire silent clients. Nothing here decides anything.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass

import trio

from .console import print_err, print_out
from .net import UDP_RECV_SIZE, bind_listening_udp, sockaddr_for, to_addr
from .probe import ProbeService, bind_probe_port, serve_probes
from .proto import stun
from .proto.events import Dropped, ServerEvent
from .proto.probe import is_probe_message
from .proto.server import RELAY_BYTES, RELAY_RATE, RendezvousServer
from .proto.wire import Addr
from .timer import TimerLoop


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
    relay: bool = False
    """Also be a midPeer relay (``serve --midpeer``, ``natchat midpeer``)."""
    lists: bool = True
    """Send clients the peer list (a standalone midPeer does not)."""
    relay_rate: float = RELAY_RATE
    relay_bytes: float = RELAY_BYTES
    secret: bytes | None = None
    """``--secret``: registrations must prove they know it."""


BATCH = 64
"""Datagrams the receive loop takes from the socket (and feeds to the protocol) between checkpoints."""
BACKLOG = 65536
"""The receive loop waits while the sender has more than this many datagrams still to send (a few MB of
references to shared datagrams). Not much less: while it waits, the kernel's receive buffer overflows
and registrations are lost, and a 10,000-client join storm took 8 s to register instead of 3 (at 8,192)."""
RECEIVE_BUFFER = 4 << 20
"""Bytes of datagrams the kernel may hold for the server while it is busy (capped by net.core.rmem_max)."""


@dataclass(slots=True)
class SendStatistics:
    """What the shell has sent for the protocol (the benchmark reads these)."""

    datagrams: int = 0
    bytes: int = 0
    largest: int = 0


class _Shell:
    """Receives in batches on a non-blocking socket, feeds the protocol, and sends what it returns from a
    separate task, so that a large fan-out (a delta to every client) never holds up receiving or the
    sweeper. While the sender is busy, the protocol keeps what it has to send; changes made meanwhile
    travel together (see ``RendezvousServer._record``)."""

    def __init__(
        self,
        proto: RendezvousServer,
        sock: trio.socket.SocketType,
        emit: Callable[[ServerEvent], None],
        probes: ProbeService | None = None,
    ):
        self.proto = proto
        self.sock = sock
        self.family = sock.family
        self.emit = emit
        self.probes = probes
        self.timer = TimerLoop()
        self.stats = SendStatistics()
        self._wake = trio.Event()  # set when the protocol may have datagrams to send
        self.backlog = 0
        """Datagrams the sender has taken from the protocol and not sent yet."""
        self._caught_up = trio.Event()  # set when the backlog is down to BACKLOG

    async def receive_loop(self) -> None:
        """Receive and feed datagrams until cancelled, and (a second task) send what the protocol returns."""
        # The same socket as a plain non-blocking one: Trio's socket methods checkpoint on every call,
        # which costs more than everything natchat does with a keepalive.
        with socket.fromfd(self.sock.fileno(), self.sock.family, self.sock.type) as raw:
            raw.setblocking(False)
            with contextlib.suppress(OSError):
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._send_loop, raw)
                await self._receive(raw)

    async def _receive(self, raw: socket.socket) -> None:
        while True:
            if self.backlog > BACKLOG:  # feeding more now would only grow what waits to be sent
                self._caught_up = trio.Event()
                await self._caught_up.wait()
            await trio.lowlevel.wait_readable(raw)
            for _ in range(BATCH):
                try:
                    data, source = raw.recvfrom(UDP_RECV_SIZE)
                except BlockingIOError:
                    break
                except OSError:  # e.g. an ICMP error reported on the socket: not ours to die of
                    continue
                # STUN Binding (RFC 5389) and mapping probes share this port; see natchat/probe.py.
                if stun.is_stun(data):
                    if (answer := stun.binding_response(data, to_addr(source))) is not None:
                        with contextlib.suppress(OSError):
                            await self.sock.sendto(answer, source)
                elif self.probes is not None and is_probe_message(data):
                    await self.probes.receive_main(data, source)
                else:
                    self.proto.receive_datagram(data, self._addr(source), trio.current_time())
            self._collect()

    def _addr(self, source: tuple[str, int] | tuple[str, int, int, int]) -> Addr:
        """:func:`~natchat.net.to_addr`, without parsing the kernel's canonical text of an IPv4 address."""
        host = source[0]
        if self.family == socket.AF_INET6:
            if not (host.startswith("::ffff:") and "." in host):
                return to_addr(source)
            host = host[7:]  # IPv4-mapped: the IPv4 sender
        return Addr(host, source[1])

    async def sweeper(self) -> None:
        await self.timer.run(self._on_timer)

    async def _on_timer(self) -> None:
        self.proto.handle_timer(trio.current_time())
        self._collect()

    def _collect(self) -> None:
        """Emit the protocol's events, move the sweeper's deadline, and wake the sender."""
        while (event := self.proto.next_event()) is not None:
            self.emit(event)
        self.timer.arm(self.proto.get_timer())
        self._wake.set()

    async def _send_loop(self, raw: socket.socket) -> None:
        while True:
            out = self.proto.datagrams_to_send()
            if not out:
                await self._wake.wait()
                self._wake = trio.Event()
                continue
            for count, (data, addr) in enumerate(out, 1):
                while not self._send_now(raw, data, addr):
                    await trio.lowlevel.wait_writable(raw)  # the socket's send buffer is full
                if count % BATCH == 0:
                    self._set_backlog(len(out) - count)
                    await trio.lowlevel.checkpoint()  # let the receive loop and the sweeper in
            self._set_backlog(0)

    def _set_backlog(self, backlog: int) -> None:
        self.backlog = backlog
        if backlog <= BACKLOG:
            self._caught_up.set()

    def _send_now(self, raw: socket.socket, data: bytes, addr: Addr) -> bool:
        """Send one datagram (one that cannot be sent is lost, as on the wire); False if it must wait for
        the socket."""
        try:
            raw.sendto(data, sockaddr_for(self.family, addr))
        except BlockingIOError:
            return False
        except OSError:
            return True
        self.stats.datagrams += 1
        self.stats.bytes += len(data)
        self.stats.largest = max(self.stats.largest, len(data))
        return True


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
            proto = RendezvousServer(
                timeout=config.timeout,
                max_clients=config.max_clients,
                relay=config.relay,
                lists=config.lists,
                relay_rate=config.relay_rate,
                relay_bytes=config.relay_bytes,
                secret=config.secret,
                alt_port=alt.getsockname()[1] if alt is not None else None,
            )
            shell = _Shell(proto, sock, emit, probes)
            nursery.start_soon(shell.sweeper)
            nursery.start_soon(shell.receive_loop)
            task_status.started(to_addr(sock.getsockname()))


def _note(text: str) -> None:
    print_err(text)


def print_event(verbose: bool, as_json: bool = False) -> Callable[[ServerEvent], None]:
    """Print each event as its human line, or (``as_json``) as one JSON object; dropped datagrams
    only when ``verbose``."""

    def emit(event: ServerEvent) -> None:
        if isinstance(event, Dropped) and not verbose:
            return
        print_out(json.dumps(event.as_dict(), ensure_ascii=False) if as_json else event.line())

    return emit
