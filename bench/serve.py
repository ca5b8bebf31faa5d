"""The server side of ``make bench``: natchat's Trio server shell, or a bare Trio UDP loop, in its own process.

Run by ``bench/run.py``; not meant for people. The first line on standard output is ``{"port": N}``;
then it answers one JSON command per line on standard input with one JSON line, and exits when standard
input closes. Commands (``op``):

* ``stats``: what the shell sent (datagrams, bytes, the largest), registry size and version;
* ``prefill``: put ``n`` clients straight into the registry, as a registration would but without telling
  anyone (a 100,000-client registry cannot be built over the wire in a benchmark: every client must
  learn every other, some 10^10 list entries in all; see "Performance" in README.md);
* ``peers``, ``tokens``: the registry, and each client's session token (the load generator's clients
  that do not read their replies learn theirs here);
* ``disappeared``: when (``time.monotonic()``, the same clock in every process) each ``disappeared``
  event was emitted.

Every event is also written as a JSON line, flushed, to /dev/null, as ``natchat serve --json`` would
write it to a terminal, so that the shell pays for its output as the real server does.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's natchat

from natchat.net import bind_udp, to_addr
from natchat.proto import wire
from natchat.proto.events import Disappeared, ServerEvent
from natchat.proto.server import RendezvousServer
from natchat.server import _Shell


def prefill(
    proto: RendezvousServer, n: int, first: int, now: float, ports: list[int] | None, *, signed: bool = True
) -> None:
    """Add clients ``c{first}`` ... as a registration adds a new one (fresh objects, as decoding makes
    them), skipping only the delta to everyone else (``Registry.preload``). Without ``ports``, public
    addresses are spread over 127.1.0.0/16 where nothing listens (deltas to them are sent and dropped by the kernel).
    ``signed``: each with an identity, as ``natchat join`` registers (False: without, as before identities)."""
    for i in range(first, first + n):
        cid = f"c{i}"
        if ports is not None:
            pub = to_addr(("127.0.0.1", ports[i - first]))
        else:
            pub = to_addr((f"127.1.{(i >> 8) & 255}.{i & 255}", 20000 + (i >> 16)))
        priv = wire.Addr(f"192.168.{(i >> 8) & 255}.{i & 255}", 10081)
        key = i.to_bytes(32, "big")  # a public key: 32 bytes of its own, as decoding makes it
        info = wire.PeerInfo(cid, pub, priv, key, wire.signed(*identity_of(i)) if signed else None)
        proto.registry.preload(info, token_of(i), now)


ISSUED = 1_764_000_000_000_000_000


def identity_of(i: int) -> tuple[bytes, bytes, int]:
    """Client ``i``'s made-up identity key, signature and issue time (the server stores them unverified,
    so their sizes are all that matters here: fresh bytes objects, as decoding makes them)."""
    return (i + 1).to_bytes(32, "big"), i.to_bytes(64, "big"), ISSUED + i


def token_of(i: int) -> str:
    return f"{i:032x}"


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


async def serve_natchat(args: argparse.Namespace) -> None:
    proto = RendezvousServer(timeout=args.timeout)
    disappeared: dict[str, float] = {}
    sink = open(os.devnull, "w")  # noqa: SIM115, ASYNC230 (once, before serving; lives as long as the process)

    def emit(event: ServerEvent) -> None:
        fields = event.as_dict()
        if isinstance(event, Disappeared):
            disappeared[fields["id"]] = time.monotonic()
        print(json.dumps(fields, ensure_ascii=False), file=sink, flush=True)

    sock = await bind_udp(args.host, args.port)
    with sock:
        shell = _Shell(proto, sock, emit)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(shell.sweeper)
            nursery.start_soon(shell.receive_loop)

            def answer(cmd: dict[str, Any]) -> object:
                match cmd["op"]:
                    case "stats":
                        return {
                            "registered": len(proto.peers()),
                            "version": proto.version,
                            "rss": rss_bytes(),
                            "dropped": proto.dropped,
                            **dataclasses.asdict(shell.stats),
                        }
                    case "prefill":
                        prefill(
                            proto,
                            cmd["n"],
                            cmd.get("first", 0),
                            trio.current_time(),
                            cmd.get("ports"),
                            signed=cmd.get("signed", True),
                        )
                        shell.timer.arm(proto.get_timer())
                        return {"registered": len(proto.peers())}
                    case "peers":  # the registry, as every client's list should end up
                        return [[p.id, msgspec.json.encode(p).decode()] for p in proto.peers()]
                    case "tokens":
                        return {p.id: proto.registry.token(p.id) for p in proto.peers()}
                    case "disappeared":
                        return disappeared
                    case "clock":
                        return {"trio": trio.current_time(), "monotonic": time.monotonic()}
                return {"error": f"unknown op {cmd['op']}"}

            await control(to_addr(sock.getsockname()).port, answer)
            nursery.cancel_scope.cancel()


async def serve_bare(args: argparse.Namespace) -> None:
    """The reference: receive a datagram, answer with its sender's address, nothing else."""
    sock = await bind_udp(args.host, args.port)
    with sock:
        async with trio.open_nursery() as nursery:

            async def loop() -> None:
                while True:
                    _, source = await sock.recvfrom(2048)
                    await sock.sendto(f"{source[0]}:{source[1]}".encode(), source)

            nursery.start_soon(loop)
            await control(sock.getsockname()[1], lambda cmd: {"rss": rss_bytes()})
            nursery.cancel_scope.cancel()


async def control(port: int, answer: Any) -> None:
    """Say the port, then answer commands from standard input until it closes."""
    print(json.dumps({"port": port}), flush=True)
    stdin = trio.wrap_file(sys.stdin)
    while line := await stdin.readline():
        print(json.dumps(answer(json.loads(line))), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bare", action="store_true", help="the bare Trio UDP loop instead of natchat")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    trio.run(serve_bare if args.bare else serve_natchat, args)


if __name__ == "__main__":
    main()
