"""Sans-I/O timings of the rendezvous server's hot paths, for comparing two checkouts side by side.

    python bench/proto_timing.py --old /path/to/old/checkout [--rounds 3]

Runs each measurement in a fresh process for the old checkout and for this one, alternating, and
prints the medians of the CPU (process) time each took: 200,000 keepalives through ``receive_datagram``
(figure 1's path), a join storm of 3,000 registrations with the shell's send clock after every four
(figure 2's), and 3,000 clients expiring at once among 3,000 that stay (figure 4's). Only the public
API is used, so any two versions compare.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent


def _register(srv: Any, cid: str, addr: Any, now: float) -> None:
    from natchat.proto import auth, wire

    cookie = auth.cookie(b"k" * 32, addr, now)
    msg = wire.Register(id=cid, priv=wire.Addr("192.168.1.2", 10081), key=bytes(32), cookie=cookie)
    srv.receive_datagram(wire.encode(msg), addr, now)


def measure(what: str) -> float:
    from natchat.proto import wire
    from natchat.proto.server import RendezvousServer

    if what == "keepalive":
        n, count = 1000, 200_000
        srv = RendezvousServer(cookie_key=b"k" * 32, timeout=3600.0)
        addrs = [wire.Addr(f"10.1.{i >> 8}.{i & 255}", 20000) for i in range(n)]
        tokens = {}
        for i, addr in enumerate(addrs):
            _register(srv, f"c{i}", addr, 0.0)
            for data, _ in srv.datagrams_to_send():
                msg = wire.decode(data)
                if isinstance(msg, wire.Registered):
                    tokens[i] = msg.token
        payloads = [wire.encode(wire.KeepAlive(id=f"c{i}", token=tokens[i], ver=n, rtt=0.01)) for i in range(n)]
        started = time.process_time()
        now = 1.0
        for k in range(count):
            i = k % n
            now += 0.001
            srv.receive_datagram(payloads[i], addrs[i], now)
            if i == n - 1:
                srv.datagrams_to_send()
        srv.datagrams_to_send()
        return time.process_time() - started
    if what == "storm":
        n = 3000
        srv = RendezvousServer(cookie_key=b"k" * 32)
        started = time.process_time()
        for i in range(n):
            addr = wire.Addr(f"10.2.{i >> 8}.{i & 255}", 20000)
            _register(srv, f"c{i}", addr, 1.0)
            if i % 4 == 0:  # the shell's send clock: it asks for more every few registrations
                srv.datagrams_to_send()
        srv.datagrams_to_send()
        return time.process_time() - started
    if what == "expiry":
        n = 3000
        srv = RendezvousServer(cookie_key=b"k" * 32, timeout=30.0)
        for i in range(2 * n):
            addr = wire.Addr(f"10.3.{i >> 8}.{i & 255}", 20000)
            _register(srv, f"c{i}", addr, 1.0 if i < n else 20.0)
            if i % 64 == 0:
                srv.datagrams_to_send()
        srv.datagrams_to_send()
        started = time.process_time()
        srv.handle_timer(31.5)
        srv.datagrams_to_send()
        elapsed = time.process_time() - started
        assert len(srv.peers()) == n
        return elapsed
    raise SystemExit(f"unknown measurement {what}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--old", type=Path, help="a checkout (or export) with the old natchat/")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one)))
        return
    results: dict[tuple[str, str], list[float]] = {}
    for what in ("keepalive", "storm", "expiry"):
        for _ in range(args.rounds):
            for label, root in (("old", args.old), ("new", HERE)):
                env = {**os.environ, "PYTHONPATH": str(root)}
                command = [sys.executable, __file__, "--one", what]
                out = subprocess.run(command, env=env, capture_output=True, text=True, check=True, cwd="/")
                results.setdefault((what, label), []).append(json.loads(out.stdout))
    for what in ("keepalive", "storm", "expiry"):
        old, new = (statistics.median(results[(what, label)]) for label in ("old", "new"))
        runs = {label: " ".join(f"{t:.3f}" for t in results[(what, label)]) for label in ("old", "new")}
        print(f"{what:9}  old {old:.3f} s [{runs['old']}]  new {new:.3f} s [{runs['new']}]  new/old {new / old:.3f}")


if __name__ == "__main__":
    main()
