"""Trio shells of the mapping probes (``natchat probe-mapping`` and the server's probe responder).

Both only move bytes and sleep; every decision is made by the sans-I/O objects in
:mod:`natchat.proto.probe`:

* :func:`serve_probes` runs :class:`~natchat.proto.probe.ProbeResponder` in the server's nursery. It
  owns the second ("alt") socket (:func:`bind_probe_port`) and sends on the server's main socket too,
  which the server's own receive loop feeds it from (:meth:`ProbeService.receive_main`).
* :func:`probe_mapping` runs :class:`~natchat.proto.probe.MappingProber`: one receiver task per socket
  (hundreds: one fresh socket per tested idle time), one timer task, and an optional progress task, all
  in one nursery that is cancelled when the prober is finished.
"""

from __future__ import annotations

import contextlib
import errno
import resource
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

import trio

from .net import UDP_RECV_SIZE, bind_udp, family_of, local_ip_toward, sockaddr_for, to_addr
from .proto import stun
from .proto.probe import (
    MappingProber,
    ProbeConfig,
    ProbeFailed,
    ProbeResponder,
    Progress,
    Report,
    Via,
)
from .proto.wire import Addr
from .shell import SocketsShell
from .timer import TimerLoop

# --- server side --------------------------------------------------------------------------------------


class ProbeService:
    """The probe responder's shell: what arrives on either socket goes in, what it returns goes out from
    the socket it names, and a timer task sleeps until its next deadline."""

    def __init__(self, responder: ProbeResponder, main: trio.socket.SocketType, alt: trio.socket.SocketType):
        self.responder = responder
        self.sockets: dict[Via, trio.socket.SocketType] = {"main": main, "alt": alt}
        self.timer = TimerLoop()

    @property
    def alt_port(self) -> int:
        return self.responder.alt_port

    async def receive_main(self, data: bytes, source: Any) -> None:
        """A probe datagram the server's main socket received (the server's receive loop routes it here)."""
        self.responder.receive_datagram(data, to_addr(source), "main", trio.current_time())
        await self.flush()

    async def alt_loop(self) -> None:
        alt = self.sockets["alt"]
        while True:
            try:
                data, source = await alt.recvfrom(UDP_RECV_SIZE)
            except OSError:
                continue
            if stun.is_stun(data):  # STUN Binding, as on the main port: a client learns its mapping kind
                if (answer := stun.binding_response(data, to_addr(source))) is not None:
                    with contextlib.suppress(OSError):
                        await alt.sendto(answer, source)
                continue
            self.responder.receive_datagram(data, to_addr(source), "alt", trio.current_time())
            await self.flush()

    async def timer_loop(self) -> None:
        await self.timer.run(self._on_timer)

    async def _on_timer(self) -> None:
        self.responder.handle_timer(trio.current_time())
        await self.flush()

    async def flush(self) -> None:
        for data, addr, via in self.responder.datagrams_to_send():
            with contextlib.suppress(OSError):  # lost, as on the wire: the prober's deadlines cope with that
                await self.sockets[via].sendto(data, sockaddr_for(self.sockets[via].family, addr))
        self.timer.arm(self.responder.get_timer())


async def bind_probe_port(
    main: trio.socket.SocketType, port: int | None, note: Callable[[str], None] = lambda text: None
) -> trio.socket.SocketType:
    """The probes' second ("alt") socket, on ``main``'s address: ``port`` if given (it must work), else the
    main port minus one, else (if that is taken) any free port, which ``note`` is told about. Binding
    happens before the server's nursery opens, so a taken port is a plain :class:`OSError`."""
    host, main_port = main.getsockname()[:2]
    if port is not None:
        try:
            return await bind_udp(host, port)
        except OSError as exc:
            raise OSError(exc.errno, f"probe port {port}: {exc.strerror}") from None
    wanted = main_port - 1 if main_port > 1 else 0
    try:
        return await bind_udp(host, wanted)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
    sock = await bind_udp(host, 0)
    note(f"probe port {wanted} is in use; mapping probes use port {sock.getsockname()[1]} (see --probe-port)")
    return sock


async def serve_probes(
    main: trio.socket.SocketType,
    alt: trio.socket.SocketType,
    *,
    task_status: trio.TaskStatus[ProbeService] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer mapping probes until cancelled, then close ``alt`` (from :func:`bind_probe_port`). Hands the
    :class:`ProbeService` -- whose :meth:`~ProbeService.receive_main` the caller feeds with the probe
    datagrams that arrive on ``main`` -- to ``task_status.started``."""
    with alt:
        service = ProbeService(ProbeResponder(alt_port=alt.getsockname()[1]), main, alt)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(service.alt_loop)
            nursery.start_soon(service.timer_loop)
            task_status.started(service)


# --- client side --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProbeClientConfig:
    server: Addr
    bind: str | None = None
    """Local address to bind the sockets to; None: all addresses of the server's family."""
    probe: ProbeConfig = field(default_factory=ProbeConfig)

    @property
    def bind_host(self) -> str:
        if self.bind is not None:
            return self.bind
        return "::" if family_of(self.server.host) == socket.AF_INET6 else "0.0.0.0"


def _allow_sockets(count: int) -> None:
    """Raise the soft limit on open files to fit ``count`` sockets (plus slack), if the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = count + 64
    if soft != resource.RLIM_INFINITY and soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            raise ProbeFailed(
                f"this run needs {count} sockets but only {hard} files may be open (ulimit -n);"
                " use a larger --resolution or a smaller --max"
            )
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


async def probe_mapping(
    config: ProbeClientConfig,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    progress_every: float = 0.25,
) -> Report:
    """Measure the NAT between here and ``config.server``; raises :class:`ProbeFailed` with the reason
    when it cannot (server silent, refusing, ...). ``on_progress`` is called every ``progress_every``
    seconds while it runs."""
    prober = MappingProber(config.server, config.probe)
    _allow_sockets(prober.sockets_needed())
    local_ip = config.bind or local_ip_toward(config.server)
    shell: SocketsShell | None = None
    try:
        async with trio.open_nursery() as nursery:

            def stop_when_finished() -> None:
                if prober.finished:
                    nursery.cancel_scope.cancel()

            shell = SocketsShell(
                prober, nursery, bind_host=config.bind_host, local_ip=local_ip, after_flush=stop_when_finished
            )
            prober.start(trio.current_time())
            if on_progress is not None:
                nursery.start_soon(_report_progress, prober, on_progress, progress_every)
            await shell.start()
    finally:
        if shell is not None:
            shell.close_all()
    if on_progress is not None:
        on_progress(prober.progress(trio.current_time()))
    if prober.error is not None:
        raise ProbeFailed(prober.error)
    return prober.report()


async def _report_progress(prober: MappingProber, on_progress: Callable[[Progress], None], every: float) -> None:
    while True:
        on_progress(prober.progress(trio.current_time()))
        await trio.sleep(every)


class ProgressBar:
    """One self-overwriting status line on a terminal: elapsed time against the longest the run can take,
    and per kind of mapping the longest idle time survived so far (a check mark once answered)."""

    WIDTH = 24

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.shown = False

    def update(self, progress: Progress) -> None:
        done = all(answered for _, _, answered in progress.kinds) and bool(progress.kinds)
        fraction = 1.0 if done else min(1.0, progress.elapsed / progress.horizon)
        filled = round(fraction * self.WIDTH)
        parts = [f"probing [{'#' * filled}{'-' * (self.WIDTH - filled)}] {progress.elapsed:5.0f} s"]
        for kind, survived, answered in progress.kinds:
            longest = 0.0 if survived is None else survived
            parts.append(f"{kind} {longest:g} s ok" if answered else f"{kind} >={longest:g} s")
        self.stream.write("\r\x1b[K" + "  ".join(parts))
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False
