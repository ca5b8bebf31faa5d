"""The server side of figure 5 (``bench/relay.py``): natchat's midPeer relay in its Trio shell, or the
cheapest relay a Trio UDP loop can be, in its own process.

Run by ``bench/relay.py``; not meant for people. As ``bench/serve.py`` (whose ``control`` loop it uses):
the first line on standard output is ``{"port": N}``; then it answers one JSON command per line on
standard input with one JSON line, and exits when standard input closes.

* natchat (the default): ``RendezvousServer(relay=True, lists=False)``, as ``natchat midpeer`` runs it,
  in natchat's real shell (``natchat.server._Shell``), with the relay's per-client rates and the
  per-source rate set from the command line (the benchmark raises them, so that it measures the relay
  and not its token buckets). Every event is written as a JSON line, flushed, to /dev/null, as
  ``natchat midpeer --json`` would write it to a terminal. ``stats``: what it relayed, refused and sent.
* ``--bare``: the reference. Receive a datagram, look its source up in a dictionary of routes, send the
  datagram unchanged to the address found there; nothing else (no parsing, no checks, no rates), with
  Trio's socket methods, one datagram per call, as ``bench/serve.py --bare`` answers keepalives.
* ``--raw``: the same forwarding with the I/O of natchat's shell (a plain non-blocking view of the
  socket, up to ``BATCH`` datagrams per wake-up): what relaying costs this process without natchat's
  protocol, the floor under both.

  The forwarders' routes come from the ``routes`` command: ``{"op": "routes", "routes": [[from_port,
  to_port], ...]}`` on 127.0.0.1. ``stats``: how many datagrams they forwarded.

Both ask the kernel for the same receive buffer (``natchat.server.RECEIVE_BUFFER``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import trio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # this checkout's natchat
sys.path.insert(0, str(HERE))  # bench/serve.py

from serve import control  # type: ignore[import-not-found]  # noqa: E402

from natchat.net import bind_udp, to_addr  # noqa: E402
from natchat.proto.events import ServerEvent  # noqa: E402
from natchat.proto.server import RELAY_BYTES, RELAY_RATE, SOURCE_RATE, RendezvousServer  # noqa: E402
from natchat.server import BATCH, RECEIVE_BUFFER, _Shell  # noqa: E402


async def serve_natchat(args: argparse.Namespace) -> None:
    proto = RendezvousServer(
        timeout=args.timeout,
        relay=True,
        lists=False,  # a standalone midPeer keeps no peer list (``natchat midpeer``)
        relay_rate=args.relay_rate,
        relay_bytes=args.relay_bytes,
        source_rate=args.source_rate,
    )
    sink = open(os.devnull, "w")  # noqa: SIM115, ASYNC230 (once, before serving; lives as long as the process)

    def emit(event: ServerEvent) -> None:
        print(json.dumps(event.as_dict(), ensure_ascii=False), file=sink, flush=True)

    sock = await bind_udp(args.host, args.port)
    with sock:
        shell = _Shell(proto, sock, emit)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(shell.sweeper)
            nursery.start_soon(shell.receive_loop)

            def answer(cmd: dict[str, Any]) -> object:
                if cmd["op"] == "stats":
                    return {
                        "registered": len(proto.peers()),
                        "relayed": proto.relayed,
                        "relay_limited": proto.relay_limited,
                        "rate_limited": proto.rate_limited,
                        "dropped": proto.dropped,
                        **dataclasses.asdict(shell.stats),
                    }
                return {"error": f"unknown op {cmd['op']}"}

            await control(to_addr(sock.getsockname()).port, answer)
            nursery.cancel_scope.cancel()


async def serve_forwarder(args: argparse.Namespace) -> None:
    """The references: receive, look the destination up, send the same bytes there (``--bare``: with
    Trio's socket methods; ``--raw``: as natchat's shell does its I/O)."""
    routes: dict[tuple[str, int], tuple[str, int]] = {}
    forwarded = 0
    sock = await bind_udp(args.host, args.port)

    async def bare() -> None:
        """One datagram per call, each of Trio's socket calls a checkpoint (as ``bench/serve.py --bare``)."""
        nonlocal forwarded
        while True:
            data, source = await sock.recvfrom(2048)
            dest = routes.get(source)
            if dest is not None:
                await sock.sendto(data, dest)
                forwarded += 1

    async def raw() -> None:
        """Up to ``BATCH`` datagrams per wake-up on a plain non-blocking view of the socket, as
        ``natchat.server._Shell`` receives (and sending straight away, waiting only on a full buffer)."""
        nonlocal forwarded
        with socket.fromfd(sock.fileno(), sock.family, sock.type) as view:
            view.setblocking(False)
            while True:
                await trio.lowlevel.wait_readable(view)
                for _ in range(BATCH):
                    try:
                        data, source = view.recvfrom(2048)
                    except BlockingIOError:
                        break
                    if (dest := routes.get(source)) is None:
                        continue
                    while True:
                        try:
                            view.sendto(data, dest)
                        except BlockingIOError:
                            await trio.lowlevel.wait_writable(view)
                            continue
                        break
                    forwarded += 1

    def answer(cmd: dict[str, Any]) -> object:
        match cmd["op"]:
            case "routes":
                for src, dst in cmd["routes"]:
                    routes[(args.host, src)] = (args.host, dst)
                return {"routes": len(routes)}
            case "stats":
                return {"forwarded": forwarded}
        return {"error": f"unknown op {cmd['op']}"}

    with sock:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(raw if args.raw else bare)
            await control(sock.getsockname()[1], answer)
            nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bare", action="store_true", help="the bare Trio forwarding loop instead of natchat")
    parser.add_argument("--raw", action="store_true", help="the forwarding loop with the shell's batched I/O")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds before a silent client expires")
    parser.add_argument("--relay-rate", type=float, default=RELAY_RATE, help="datagrams/s each client may relay")
    parser.add_argument("--relay-bytes", type=float, default=RELAY_BYTES, help="bytes/s each client may relay")
    parser.add_argument("--source-rate", type=float, default=SOURCE_RATE, help="datagrams/s taken from one source")
    args = parser.parse_args()
    trio.run(serve_forwarder if args.bare or args.raw else serve_natchat, args)


if __name__ == "__main__":
    main()
