"""Figure 5 of ``make bench``: relay throughput, the chat datagrams per second natchat's midPeer relay
forwards, against bare Trio forwarding loops in the same run.

``pairs`` pairs of clients register with the relay over the wire (with its cookie challenge), each on its
own UDP port on 127.0.0.1; then every sender keeps ``window`` ``relay`` datagrams in flight to its
partner, each carrying a sealed-chat-sized ``chat`` (dummy nonce and box; the relay does not look
inside). Closed loop: the generator counts each ``relayed`` datagram its partner receives and the
sender sends the next one, so the figure is what the relay sustains, not what the kernel drops.
Rounds of ``seconds`` alternate between natchat and the reference (``bench/relay_serve.py --bare``:
a Trio loop that receives, looks the destination up in a dictionary and sends the same bytes there, as
figure 1's reference answers), and the result is the median of the rounds' ratios: this machine is
shared, so absolute rates drift from round to round, ratios much less. A third server takes its turn
too: the same forwarding with the I/O of natchat's shell (``--raw``: batched receives on a plain
non-blocking socket), the floor under both, which tells what natchat's protocol itself costs. Besides
the rates it reports each server process's CPU time per relayed datagram (``/proc/PID/stat``) and the
generator's, to show which side was the bottleneck.

natchat's relay runs with its per-client limits raised far above the load (``RELAY_RATE``,
``RELAY_BYTES`` and the per-source ``SOURCE_RATE``): with the defaults each sender may have 200
datagrams a second relayed, and the benchmark would measure the token buckets. The defaults, and the
cap they put on ``pairs`` senders, are in the result as constants.

    .venv/bin/python bench/relay.py                 # 50 pairs, 5 rounds of 2 s
    .venv/bin/python bench/relay.py --quick         # a few pairs, short rounds (tests/test_bench_relay_smoke.py)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # this checkout's natchat
sys.path.insert(0, str(HERE))  # bench/run.py's helpers

from run import HOST, Server, Sockets, log, register_bytes  # type: ignore[import-not-found]  # noqa: E402

from natchat.proto import wire  # noqa: E402
from natchat.proto.server import RELAY_BYTES, RELAY_RATE, SOURCE_RATE  # noqa: E402

UNLIMITED = 1e9
"""The relay's rates in the benchmark (datagrams or bytes per second, per client and per source)."""
BOX = 140
"""Bytes of sealed text in each chat: a text of some 120 characters and its 16-byte tag."""
WINDOW = 4
"""Relay datagrams each sender keeps in flight."""
STALE = 0.2
"""A sender whose partner has received nothing for this long sends its window again (the rest is lost)."""
RELAYED_PREFIX = b'{"t":"relay'
"""How a forwarded datagram starts: natchat's ``relayed``, or the ``relay`` the forwarders pass on
(msgspec writes the tag first). Anything else a client receives is ignored."""


# --- the server processes ---------------------------------------------------------------------------


class RelayServer(Server):
    """``bench/relay_serve.py`` in its own process (``bench/run.py``'s :class:`Server`, another script)."""

    def __init__(self, kind: str = "natchat", *, rate: float = UNLIMITED) -> None:
        """``kind``: ``natchat``, ``bare`` or ``raw`` (see ``bench/relay_serve.py``)."""
        args = [sys.executable, str(HERE / "relay_serve.py")]
        if kind != "natchat":
            args.append(f"--{kind}")
        else:
            args += ["--relay-rate", str(rate), "--relay-bytes", str(rate), "--source-rate", str(rate)]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=HERE.parent)
        try:
            self.port = self._read()["port"]
        except BaseException:
            self.close()
            raise
        self.addr = (HOST, self.port)

    def cpu(self) -> float:
        """CPU seconds the server process has used (user and system, ``/proc/PID/stat``)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def relay_server(kind: str = "natchat", **kwargs: Any) -> Iterator[RelayServer]:
    srv = RelayServer(kind, **kwargs)
    try:
        yield srv
    finally:
        srv.close()


# --- registration and payloads ----------------------------------------------------------------------


def register(socks: Sockets, dest: tuple[str, int], *, limit: float = 10.0) -> dict[int, str]:
    """Register client ``c{i}`` from socket ``i`` for every socket, answering the server's challenge;
    their session tokens. Every datagram but ``challenge`` and ``registered`` is ignored."""
    n = len(socks.socks)
    tokens: dict[int, str] = {}
    epoll = socks.epoll(range(n))
    try:
        deadline = time.monotonic() + limit
        while len(tokens) < n and time.monotonic() < deadline:
            for i in range(n):  # (again every half second for those not registered: a datagram may be lost)
                if i not in tokens:
                    socks.socks[i].sendto(register_bytes(i, socks.ports[i]), dest)
            resend = time.monotonic() + 0.5
            while len(tokens) < n and time.monotonic() < resend:
                for fd, _ in epoll.poll(0.05):
                    i = socks.index[fd]
                    for _ in range(16):
                        try:
                            data = socks.socks[i].recvfrom(2048)[0]
                        except BlockingIOError:
                            break
                        try:
                            msg = wire.decode(data)
                        except wire.WireError:
                            continue
                        if isinstance(msg, wire.Challenge):
                            socks.socks[i].sendto(register_bytes(i, socks.ports[i], msg.cookie), dest)
                        elif isinstance(msg, wire.Registered):
                            tokens[i] = msg.token
    finally:
        epoll.close()
    if len(tokens) < n:
        raise RuntimeError(f"only {len(tokens)} of {n} clients registered with the relay")
    return tokens


def chat_bytes(src: str, dst: str) -> bytes:
    """A sealed chat as a peer sends it (the relay forwards it unopened: nonce and box are dummies)."""
    chat = wire.Chat(src=src, dst=dst, stream=1, base=1, seq=1, group=False, n=bytes(12), box=bytes(BOX))
    return wire.encode(chat)


def relay_payloads(pairs: int, tokens: dict[int, str]) -> dict[int, bytes]:
    """Sender ``i``'s ``relay`` datagram, to its partner ``pairs + i``."""
    payloads = {}
    for i in range(pairs):
        src, dst = f"c{i}", f"c{pairs + i}"
        relay = wire.Relay(id=src, token=tokens[i], dst=dst, data=msgspec.Raw(chat_bytes(src, dst)))
        payloads[i] = wire.encode(relay)
    return payloads


# --- the closed loop --------------------------------------------------------------------------------


def relay_loop(
    socks: Sockets,
    payloads: dict[int, bytes],
    dest: tuple[str, int],
    *,
    seconds: float,
    window: int = WINDOW,
    settle: float = 0.3,
) -> dict[str, Any]:
    """Senders ``0 .. pairs-1`` each keep ``window`` datagrams in flight through ``dest`` to their
    partners ``pairs .. 2 pairs-1`` for ``seconds``; count what the partners receive meanwhile. Then,
    for up to ``settle`` seconds, late arrivals are counted too, so that ``lost`` is exact: sent minus
    received. Bounded in time, and in datagrams (``window`` per sender plus one per arrival, at most
    ``max_sent``)."""
    pairs = len(payloads)
    max_sent = int(1_000_000 * seconds) + pairs * window
    socks_list, index = socks.socks, socks.index
    epoll = socks.epoll(range(pairs, 2 * pairs))
    in_flight = [0] * pairs
    heard = [0.0] * pairs  # when each sender last sent its window or its partner last received
    sent = received = late = 0
    sample: bytes | None = None  # the first datagram forwarded, to check that it is what was sent

    def fill(i: int, now: float) -> None:
        nonlocal sent
        while in_flight[i] < window and sent < max_sent:
            try:
                socks_list[i].sendto(payloads[i], dest)
            except BlockingIOError:
                return  # (the stale check fills it later)
            in_flight[i] += 1
            sent += 1
        heard[i] = now

    cpu0 = time.process_time()
    start = time.monotonic()
    for i in range(pairs):
        fill(i, start)
    end = start + seconds
    counting = True
    elapsed = seconds
    now = next_check = start
    while now < end + settle and (counting or received + late < sent):
        for fd, _ in epoll.poll(0.05):
            j = index[fd]
            i = j - pairs
            for _ in range(4 * window):  # (bounded: a sender has no more than its window in flight)
                try:
                    data = socks_list[j].recvfrom(2048)[0]
                except BlockingIOError:
                    break
                if not data.startswith(RELAYED_PREFIX):
                    continue
                if sample is None:
                    sample = data
                if not counting:
                    late += 1
                    continue
                received += 1
                in_flight[i] = max(0, in_flight[i] - 1)
                fill(i, now)
        now = time.monotonic()
        if counting and now >= end:
            counting = False
            elapsed = now - start
        elif counting and now >= next_check:  # (every 50 ms: it is O(pairs))
            next_check = now + 0.05
            for i in range(pairs):
                if now - heard[i] > STALE:
                    in_flight[i] = 0  # whatever it had in flight is lost (or late: counted then)
                    fill(i, now)
    if counting:  # (the loop overslept its end)
        elapsed = now - start
    cpu = time.process_time() - cpu0
    epoll.close()
    socks.drain()
    return {
        "per_s": received / elapsed,
        "received": received,
        "sent": sent,
        "late": late,
        "lost": sent - received - late,
        "seconds": elapsed,
        "generator_cpu_s": cpu,
        "sample": sample,
    }


def check_forwarded(sample: bytes | None, payloads: dict[int, bytes], pairs: int) -> bool:
    """Whether a forwarded datagram carries what a sender sent: natchat's ``relayed`` with the chat from
    its source, or (the forwarders) the sender's datagram itself."""
    if sample is None:
        return False
    if sample in payloads.values():
        return True
    msg = wire.decode(sample)
    if not isinstance(msg, wire.Relayed) or not msg.src.startswith("c"):
        return False
    i = int(msg.src[1:])
    return 0 <= i < pairs and bytes(msg.data) == chat_bytes(msg.src, f"c{pairs + i}")


# --- figure 5 ---------------------------------------------------------------------------------------


def figure5(pairs: int, *, rounds: int, seconds: float, quick: bool = False, window: int = WINDOW) -> dict[str, Any]:
    """Relayed chat datagrams per second through natchat's midPeer relay (its rate limits raised out of
    the way) from ``pairs`` senders to their partners, ``window`` in flight per sender, against the bare
    Trio forwarding loop (and the raw one); ``rounds`` rounds of ``seconds`` each per server, the order
    rotating from round to round. ``quick``: shorter waits for late datagrams (the smoke test)."""
    log(f"figure 5: relay throughput, {pairs} pairs, {window} in flight each, {rounds} x {seconds} s")
    settle = 0.1 if quick else 0.3
    kinds = ["natchat", "bare", "raw"]
    with contextlib.ExitStack() as stack:
        socks = stack.enter_context(Sockets(2 * pairs))
        servers = {kind: stack.enter_context(relay_server(kind)) for kind in kinds}
        tokens = register(socks, servers["natchat"].addr)
        payloads = relay_payloads(pairs, tokens)
        routes = [[socks.ports[i], socks.ports[pairs + i]] for i in range(pairs)]
        for kind in kinds[1:]:
            servers[kind].ask("routes", routes=routes)
        runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
        intact = dict.fromkeys(kinds, False)
        for r in range(rounds):
            for kind in kinds[r % 3 :] + kinds[: r % 3]:
                srv = servers[kind]
                cpu0 = srv.cpu()
                result = relay_loop(socks, payloads, srv.addr, seconds=seconds, window=window, settle=settle)
                result["server_cpu_s"] = srv.cpu() - cpu0
                intact[kind] = intact[kind] or check_forwarded(result.pop("sample"), payloads, pairs)
                runs[kind].append(result)
                arrived = result["received"] + result["late"]
                log(
                    f"  round {r + 1} {kind}: {result['per_s']:,.0f}/s ({result['lost']} lost); CPU per datagram "
                    f"{_us(result['server_cpu_s'], arrived)} µs server, {_us(result['generator_cpu_s'], arrived)} µs "
                    f"generator; busy {result['server_cpu_s'] / result['seconds']:.0%} and "
                    f"{result['generator_cpu_s'] / result['seconds']:.0%} of a core"
                )
        stats = servers["natchat"].ask("stats")
    rates = {kind: [r["per_s"] for r in runs[kind]] for kind in kinds}
    busy = {  # the share of a core each side used while relaying (the busier one set the pace)
        side: {kind: statistics.median(r[f"{side}_cpu_s"] / r["seconds"] for r in runs[kind]) for kind in kinds}
        for side in ("server", "generator")
    }
    relay_size = len(payloads[0])
    relayed_size = len(wire.encode(wire.Relayed(src="c0", data=msgspec.Raw(chat_bytes("c0", f"c{pairs}")))))
    per_sender_cap = min(RELAY_RATE, RELAY_BYTES / relay_size, SOURCE_RATE)
    return {
        "pairs": pairs,
        "window_per_sender": window,
        "rounds": rounds,
        "seconds": seconds,
        "quick": quick,
        "relay_datagram_bytes": relay_size,
        "relayed_datagram_bytes": relayed_size,
        "natchat_per_s": statistics.median(rates["natchat"]),
        "bare_per_s": statistics.median(rates["bare"]),
        "raw_per_s": statistics.median(rates["raw"]),
        "ratio": statistics.median(_ratios(rates["natchat"], rates["bare"])),
        "ratios": _ratios(rates["natchat"], rates["bare"]),
        "ratio_to_raw": statistics.median(_ratios(rates["natchat"], rates["raw"])),
        "rates": rates,
        "relayed": sum(r["received"] for r in runs["natchat"]),
        "lost": {kind: sum(r["lost"] for r in runs[kind]) for kind in kinds},
        "server_cpu_us_per_datagram": {kind: _median_us(runs[kind], "server_cpu_s") for kind in kinds},
        "generator_cpu_us_per_datagram": {kind: _median_us(runs[kind], "generator_cpu_s") for kind in kinds},
        "server_busy": busy["server"],
        "generator_busy": busy["generator"],
        "bottleneck": {kind: _bottleneck(busy, kind) for kind in kinds},
        "forwarded_intact": intact,
        "server_stats": stats,
        "default_limits": {
            "relay_rate_per_client": RELAY_RATE,
            "relay_bytes_per_client": RELAY_BYTES,
            "source_rate": SOURCE_RATE,
            "cap_per_sender_per_s": per_sender_cap,
            "cap_all_senders_per_s": per_sender_cap * pairs,
            "measured_with": UNLIMITED,
        },
        "goal": "none set: a relay at least as fast as the bare Trio loop (ratio >= 1)",
    }


def _bottleneck(busy: dict[str, dict[str, float]], kind: str) -> str:
    """The sides that used most of a core (80 % or more), or, if neither did, the machine's other work."""
    return " and ".join(side for side in busy if busy[side][kind] >= 0.8) or "shared machine"


def _ratios(a: list[float], b: list[float]) -> list[float]:
    return [x / y if y else 0.0 for x, y in zip(a, b, strict=True)]


def _us(cpu_s: float, datagrams: int) -> str:
    return f"{1e6 * cpu_s / datagrams:.1f}" if datagrams else "n/a"


def _median_us(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [1e6 * r[key] / (r["received"] + r["late"]) for r in runs if r["received"] + r["late"]]
    return statistics.median(values) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4 pairs, 2 rounds of 0.3 s: checks that it works")
    parser.add_argument("--pairs", type=int, help="sender-receiver pairs (default 50; 4 with --quick)")
    parser.add_argument("--rounds", type=int, help="alternating rounds (default 5; 2 with --quick)")
    parser.add_argument("--seconds", type=float, help="seconds per round (default 2; 0.3 with --quick)")
    parser.add_argument("--window", type=int, default=WINDOW, help="datagrams in flight per sender")
    args = parser.parse_args()
    result = figure5(
        args.pairs or (4 if args.quick else 50),
        rounds=args.rounds or (2 if args.quick else 5),
        seconds=args.seconds or (0.3 if args.quick else 2.0),
        quick=args.quick,
        window=args.window,
    )
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
