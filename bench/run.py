"""``make bench``: how natchat's rendezvous server holds up as the number of clients grows.

Every figure is measured against its reference in the same run, on this machine, as medians of several
repetitions. The server runs in its own process (``bench/serve.py``: natchat's Trio server shell, or a
bare Trio UDP loop); this process is the load generator: many real UDP sockets on 127.0.0.1, driven
by one ``epoll`` loop, every loop bounded in datagrams and in time. Figure 6 runs in Mininet (root).

    .venv/bin/python bench/run.py            # everything: writes bench/results.json and bench/results.png
    .venv/bin/python bench/run.py --quick    # small N, a few seconds (tests/test_bench_smoke.py)
    BENCH_PROFILE=/tmp/srv .venv/bin/python bench/run.py --only 2   # the servers under cProfile: /tmp/srv.0 ...
    BENCH_DEBUG=1 ...                        # the server's counters every half second of a storm
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import resource
import select
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from natchat.proto import wire  # noqa: E402
from natchat.proto.peerlist import PeerList  # noqa: E402

sys.path.insert(0, str(HERE))
from serve import identity_of  # type: ignore[import-not-found]  # noqa: E402

HOST = "127.0.0.1"
KEEPALIVE_INTERVAL = 10.0
"""The clients' default keepalive interval (``natchat join --keepalive``): convergence must beat it."""

# Decoding what the server sends: the wire types, without re-checking every address with ``ipaddress``
# (that costs the generator more than the server; the server's own decoder is what the tests check).
_decode = msgspec.json.Decoder(wire.AnyMessage).decode


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- the server process -----------------------------------------------------------------------------


_profiled: list[str] = []


class Server:
    """``bench/serve.py`` in its own process; :meth:`ask` sends it one command and returns its answer."""

    def __init__(self, *, bare: bool = False, timeout: float = 30.0) -> None:
        args = [sys.executable, str(HERE / "serve.py"), "--timeout", str(timeout), *(["--bare"] if bare else [])]
        if profile := os.environ.get("BENCH_PROFILE"):  # "profile before optimizing": cProfile's output file
            args[1:1] = ["-m", "cProfile", "-o", f"{profile}.{len(_profiled)}"]
            _profiled.append(profile)
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        self.port = self._read()["port"]
        self.addr = (HOST, self.port)

    def _read(self) -> Any:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"bench server exited with status {self.proc.wait()}")
        return json.loads(line)

    def ask(self, op: str, **args: Any) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def rss(self) -> int:
        """Resident memory of the server process, read from outside (``/proc/PID/statm``)."""
        with open(f"/proc/{self.proc.pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@contextlib.contextmanager
def server(**kwargs: Any) -> Iterator[Server]:
    srv = Server(**kwargs)
    try:
        yield srv
    finally:
        srv.close()


# --- many clients, one epoll loop -------------------------------------------------------------------


def allow_sockets(count: int) -> None:
    """Raise the open-file limit (soft, up to the hard one) for ``count`` sockets and some spare."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = count + 256
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            raise SystemExit(f"need {want} open files, the hard limit is {hard} (ulimit -Hn)")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


class Sockets:
    """``n`` non-blocking UDP sockets on 127.0.0.1, each with its own port."""

    def __init__(self, n: int) -> None:
        allow_sockets(n)
        self.socks: list[socket.socket] = []
        try:
            for _ in range(n):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self.socks.append(sock)
                sock.setblocking(False)
                sock.bind((HOST, 0))
        except BaseException:
            self.close()
            raise
        self.ports = [s.getsockname()[1] for s in self.socks]
        self.index = {s.fileno(): i for i, s in enumerate(self.socks)}  # fd -> client number

    def epoll(self, which: Iterable[int]) -> select.epoll:
        poll = select.epoll()
        for i in which:
            poll.register(self.socks[i].fileno(), select.EPOLLIN)
        return poll

    def drain_one(self, i: int) -> None:
        with contextlib.suppress(BlockingIOError):
            while True:
                self.socks[i].recvfrom(2048)

    def drain(self) -> int:
        """Read and discard whatever is waiting on every socket; how many datagrams that was."""
        count = 0
        for sock in self.socks:
            with contextlib.suppress(BlockingIOError):
                while True:
                    sock.recvfrom(2048)
                    count += 1
        return count

    def close(self) -> None:
        for sock in self.socks:
            sock.close()

    def __enter__(self) -> Sockets:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


SIGNED = True
"""Registrations carry an identity (``ident``, ``sig``, ``issued``), as every ``natchat join`` sends;
``--unsigned``: without, to compare with natchat from before identities."""


def register_bytes(i: int, port: int, cookie: str | None = None, prefix: str = "c") -> bytes:
    """Client ``{prefix}{i}``'s registration (a made-up public key and identity: the server only lists them)."""
    key = i.to_bytes(32, "big")
    priv = wire.Addr(HOST, port)
    if not SIGNED:
        return wire.encode(wire.Register(id=f"{prefix}{i}", priv=priv, key=key, cookie=cookie))
    register = wire.Register(id=f"{prefix}{i}", priv=priv, key=key, cookie=cookie, signed=wire.signed(*identity_of(i)))
    return wire.encode(register)


def keepalive_bytes(cid: str, token: str, ver: int = 0) -> bytes:
    return wire.encode(wire.KeepAlive(id=cid, token=token, ver=ver, rtt=0.0))


def closed_loop(
    socks: Sockets, payloads: dict[int, bytes], dest: tuple[str, int], *, seconds: float, window: int
) -> dict[str, float]:
    """Keep ``window`` requests in flight, from the clients in turn (client ``i`` sends ``payloads[i]``
    from its own port), for ``seconds``; count the answers. One unanswered for 0.2 s counts as lost."""
    which = list(payloads)
    n = len(which)
    epoll = socks.epoll(which)
    sent_at: dict[int, float] = {}
    nxt = 0
    answered = lost = 0
    poll, socks_list, index = epoll.poll, socks.socks, socks.index
    start = time.monotonic()
    end = start + seconds

    def send_one() -> None:
        nonlocal nxt
        for _ in range(n):
            i = which[nxt]
            nxt = (nxt + 1) % n
            if i not in sent_at:
                with contextlib.suppress(BlockingIOError):
                    socks_list[i].sendto(payloads[i], dest)
                    sent_at[i] = time.monotonic()
                return

    for _ in range(min(window, n)):
        send_one()
    now = start
    while now < end:
        for fd, _ in poll(0.05):
            i = index[fd]
            with contextlib.suppress(BlockingIOError):
                while True:
                    socks_list[i].recvfrom(2048)
                    if sent_at.pop(i, None) is not None:
                        answered += 1
                        send_one()
        now = time.monotonic()
        if len(sent_at) < min(window, n) or not answered:
            stale = [i for i, t in sent_at.items() if now - t > 0.2]
            for i in stale:
                del sent_at[i]
                lost += 1
            for _ in range(min(window, n) - len(sent_at)):
                send_one()
    elapsed = time.monotonic() - start
    epoll.close()
    time.sleep(0.25)  # late answers arrive and are drained, not counted
    socks.drain()
    return {"per_s": answered / elapsed, "answered": answered, "lost": lost}


# --- figure 1: keepalive throughput -----------------------------------------------------------------


def figure1(
    n: int, *, repeat: int, seconds: float, window: int = 64, srv: Server | None = None, socks: Sockets | None = None
) -> dict[str, Any]:
    """Acknowledged keepalives per second from ``n`` registered clients, each on its own port, against a
    bare Trio UDP loop answering each datagram with its sender's address; rounds alternate."""
    log(f"figure 1: keepalives from {n} clients, {repeat} x {seconds} s each, against a bare Trio loop")
    with contextlib.ExitStack() as stack:
        if socks is None:
            socks = stack.enter_context(Sockets(n))
        if srv is None:
            srv = stack.enter_context(server(timeout=600))
            srv.ask("prefill", n=n, ports=socks.ports, signed=SIGNED)
        tokens = srv.ask("tokens")  # (a client the server does not have would get cheap error replies)
        payloads = {i: keepalive_bytes(f"c{i}", tokens[f"c{i}"]) for i in range(n) if f"c{i}" in tokens}
        bare = stack.enter_context(server(bare=True))
        natchat_rates, bare_rates, losses = [], [], []
        for r in range(repeat):
            for name, dest, rates in (("natchat", srv.addr, natchat_rates), ("bare", bare.addr, bare_rates)):
                result = closed_loop(socks, payloads, dest, seconds=seconds, window=window)
                rates.append(result["per_s"])
                losses.append(result["lost"])
                log(f"  round {r + 1} {name}: {result['per_s']:.0f}/s ({result['lost']} lost)")
        ratios = [a / b for a, b in zip(natchat_rates, bare_rates, strict=True)]
        return {
            "clients": len(payloads),
            "natchat_per_s": statistics.median(natchat_rates),
            "bare_per_s": statistics.median(bare_rates),
            "ratio": statistics.median(ratios),
            "ratios": ratios,
            "lost": sum(losses),
            "goal": ">= 0.8",
        }


# --- figure 2: join storm ---------------------------------------------------------------------------


@dataclass(slots=True)
class Tracked:
    """A simulated client that keeps its list as natchat's client does: with natchat's own
    :class:`~natchat.proto.peerlist.PeerList` (pages, versioned deltas, a ``sync`` on a gap, when a
    keepalive answer shows a newer version, or when no list followed ``registered`` within a second)."""

    i: int
    token: str | None = None
    plist: PeerList = field(default_factory=PeerList)
    ver_at: float = 0.0  # when the list last moved to a new version
    snapshot_ver: int | None = None
    register_sent: float = 0.0
    keepalive_at: float = 0.0
    deltas: int = 0
    pages_received: int = 0
    syncs: int = 0


class Storm:
    """``n`` clients register within ``spread`` seconds; ``tracked`` of them keep their lists."""

    def __init__(self, srv: Server, socks: Sockets, tracked: list[int]) -> None:
        self.srv, self.socks = srv, socks
        self.n = len(socks.socks)
        self.clients = {i: Tracked(i) for i in tracked}
        self.registers = [register_bytes(i, port) for i, port in enumerate(socks.ports)]
        self.challenged: set[int] = set()  # clients that answered the server's challenge
        self.largest = 0
        self.received = 0
        self.errors = 0
        for i in tracked:  # room for a whole list of pages and deltas while the generator is busy
            socks.socks[i].setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)

    def send(self, i: int, data: bytes) -> None:
        with contextlib.suppress(BlockingIOError):
            self.socks.socks[i].sendto(data, self.srv.addr)

    def receive(self, c: Tracked, data: bytes, now: float) -> None:
        self.received += 1
        self.largest = max(self.largest, len(data))
        msg = _decode(data)
        before = c.plist.ver
        match msg:
            case wire.Challenge(cookie=cookie):
                self.send(c.i, register_bytes(c.i, self.socks.ports[c.i], cookie))
            case wire.Registered(token=token):
                c.token = token
                c.keepalive_at = now + 1.0
                c.plist.registered(now)
            case wire.ListPage():
                c.pages_received += 1
                if c.plist.on_page(msg) is not None and c.snapshot_ver is None:
                    c.snapshot_ver = c.plist.ver
            case wire.ListDelta():
                c.deltas += 1
                if c.plist.on_delta(msg).gap:
                    self.sync(c, now)
            case wire.Alive(ver=ver):
                if c.plist.ver is not None and c.plist.behind(ver):
                    self.sync(c, now)
            case wire.Error():
                self.errors += 1
            case _:
                pass
        if c.plist.ver != before:
            c.ver_at = now

    def sync(self, c: Tracked, now: float) -> None:
        if c.token is None or (since := c.plist.sync(now)) is None:
            return
        c.syncs += 1
        self.send(c.i, wire.encode(wire.Sync(id=f"c{c.i}", token=c.token, since=since)))

    def run(self, *, spread: float, limit: float) -> dict[str, Any]:
        socks, n = self.socks, self.n
        epoll = socks.epoll(range(n))  # sinks too, until they have answered their challenge
        watched = set(range(n))
        index = socks.index
        before = self.srv.ask("stats")
        start = time.monotonic()
        deadline = start + limit
        order = list(range(n))
        sent = 0
        next_check = start + spread + 0.5
        final: list[str] | None = None
        final_ver = -1
        all_registered_at = None
        converged: dict[int, float] = {}
        now = start
        while now < deadline:
            # registrations, paced over ``spread`` seconds
            due = min(n, int((now - start) / spread * n) + 1)
            while sent < due:
                i = order[sent]
                self.send(i, self.registers[i])
                if i in self.clients:
                    self.clients[i].register_sent = now
                sent += 1
            for fd, _ in epoll.poll(0.002 if sent < n else 0.02):
                i = index[fd]
                sock = socks.socks[i]
                if (c := self.clients.get(i)) is None:  # a sink: only its challenge matters
                    with contextlib.suppress(BlockingIOError):
                        for _ in range(8):
                            msg = _decode(sock.recvfrom(2048)[0])
                            if isinstance(msg, wire.Challenge):
                                self.send(i, register_bytes(i, socks.ports[i], msg.cookie))
                                epoll.unregister(fd)
                                watched.discard(i)
                                break
                    continue
                with contextlib.suppress(BlockingIOError):
                    for _ in range(256):
                        data, _src = sock.recvfrom(2048)
                        self.receive(c, data, now)
            now = time.monotonic()
            for c in self.clients.values():
                if c.token is None and sent == n and now - c.register_sent > 1.0:  # lost: again
                    c.register_sent = now
                    self.send(c.i, self.registers[c.i])
                elif c.token is not None and now >= c.keepalive_at:
                    c.keepalive_at = now + 1.0
                    self.send(c.i, keepalive_bytes(f"c{c.i}", c.token, c.plist.ver or 0))
                if c.plist.sync_due(now):
                    self.sync(c, now)  # no list came after registering (since 0: the whole list), or a lost sync
            if sent == n and final is None and now >= next_check:
                next_check = now + 0.5
                stats = self.srv.ask("stats")
                if os.environ.get("BENCH_DEBUG"):
                    log(f"    {now - start:.1f} s: {stats}")
                if stats["registered"] == n:
                    all_registered_at = now
                    final_ver = stats["version"]
                    final = [p[0] for p in self.srv.ask("peers")]
                else:  # some registrations were lost (a full socket buffer): those clients retry
                    have = {p[0] for p in self.srv.ask("peers")}
                    for i in range(n):
                        if f"c{i}" not in have and i not in self.clients:
                            if i not in watched:
                                socks.drain_one(i)
                                epoll.register(socks.socks[i].fileno(), select.EPOLLIN)
                                watched.add(i)
                            self.send(i, self.registers[i])
            if final is not None:
                for c in self.clients.values():
                    if c.i not in converged and c.plist.ver == final_ver:
                        converged[c.i] = c.ver_at
                if len(converged) == len(self.clients):
                    break
        epoll.close()
        after = self.srv.ask("stats")
        agree = sum(1 for i in converged if final is not None and list(self.clients[i].plist.ids) == final)
        changes_seen = sum(final_ver - (c.snapshot_ver or final_ver) for c in self.clients.values())
        deltas = sum(c.deltas for c in self.clients.values())
        sent_datagrams = after["datagrams"] - before["datagrams"]
        return {
            "clients": n,
            "tracked": len(self.clients),
            "registered_within_s": None if all_registered_at is None else all_registered_at - start,
            "converged": len(converged),
            "lists_equal": agree,
            "converged_s": max(converged.values()) - start if len(converged) == len(self.clients) else None,
            "server_datagrams_per_registration": sent_datagrams / n,
            "server_bytes_per_registration": (after["bytes"] - before["bytes"]) / n,
            "largest_datagram": max(after["largest"], self.largest),
            "delta_datagrams_per_recipient_per_change": deltas / changes_seen if changes_seen else None,
            "syncs": sum(c.syncs for c in self.clients.values()),
            "limit_s": limit,
        }


def figure2(n: int, *, tracked_max: int, limit: float, then_keepalive: dict[str, Any] | None = None) -> dict[str, Any]:
    """``n`` clients register within a second; the time until every (tracked) client's list equals
    the server's; what the server sent per registration. The server's resident memory before and after
    is figure 3's first line; ``then_keepalive``: run figure 1 on the same server and clients."""
    log(f"figure 2: join storm of {n} clients ({min(n, tracked_max)} keep their lists)")
    with Sockets(n) as socks, server(timeout=600) as srv:
        tracked = list(range(n)) if n <= tracked_max else sorted({0, n - 1, *random.sample(range(n), tracked_max - 2)})
        rss_before = srv.rss()
        result = Storm(srv, socks, tracked).run(spread=1.0, limit=limit)
        quiet(srv)
        socks.drain()
        rss_after = srv.rss()
        result["rss_per_client"] = (rss_after - rss_before) / n
        result["bare_send_s"] = bare_send(socks, result)
        log(
            f"  {result['converged']}/{result['tracked']} converged in {result['converged_s']} s; "
            f"{result['server_datagrams_per_registration']:.0f} datagrams per registration"
        )
        if then_keepalive is not None:
            quiet(srv)
            socks.drain()
            result["keepalive"] = figure1(n, srv=srv, socks=socks, **then_keepalive)
        return result


def bare_send(socks: Sockets, storm: dict[str, Any]) -> float:
    """Figure 2's floor: the seconds a bare Python loop takes to send as many datagrams of the same mean
    size as the server sent in the storm, round-robin to the same (drained) sockets, which the kernel
    delivers just as it delivered the server's. No protocol, no registrations, no receiving."""
    n = len(socks.socks)
    count = round(storm["server_datagrams_per_registration"] * n)
    data = b"x" * round(storm["server_bytes_per_registration"] / storm["server_datagrams_per_registration"])
    addrs = [(HOST, port) for port in socks.ports]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        start = time.monotonic()
        for k in range(count):
            sock.sendto(data, addrs[k % n])  # blocking: at the kernel's pace, as the server's shell sends
        elapsed = time.monotonic() - start
    socks.drain()
    log(f"  a bare loop sends the same {count:,} datagrams in {elapsed:.1f} s")
    return elapsed


def quiet(srv: Server, *, within: float = 60.0) -> None:
    """Wait (at most ``within`` s) until the server has sent everything it had to send."""
    end = time.monotonic() + within
    last = -1
    while time.monotonic() < end:
        sent = srv.ask("stats")["datagrams"]
        if sent == last:
            return
        last = sent
        time.sleep(0.5)


# --- figure 3: memory per client --------------------------------------------------------------------


def figure3(sizes: list[int]) -> dict[str, Any]:
    """Resident memory of a server process per registered client, for each size: the process's RSS
    (read from /proc) before and after its registry is filled. A registry this large cannot be built
    over the wire in a benchmark (each registration is a delta to every client already there), so the
    clients are put in by ``bench/serve.py prefill``, as a registration adds them. Second line: the
    same in this process with ``tracemalloc`` (Python objects only, no allocator slack)."""
    log(f"figure 3: memory per client at {sizes}")
    rows = []
    for n in sizes:
        with server(timeout=600) as srv:
            before = srv.rss()
            srv.ask("prefill", n=n, signed=SIGNED)
            after = srv.rss()
        rows.append({"clients": n, "rss_per_client": (after - before) / n})
        log(f"  {n}: {(after - before) / n:.0f} bytes per client (RSS)")
    return {"prefill": rows, "tracemalloc": _traced_per_client(max(sizes)), "goal": "<= 1024 bytes"}


def _traced_per_client(n: int) -> float:
    import tracemalloc

    from serve import prefill  # type: ignore[import-not-found]

    from natchat.proto.server import RendezvousServer

    proto = RendezvousServer(timeout=30)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    prefill(proto, n, 0, 0.0, None, signed=SIGNED)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    log(f"  {n}: {(after - before) / n:.0f} bytes per client (tracemalloc, in-process)")
    return (after - before) / n


# --- figure 4: disappearance lag --------------------------------------------------------------------


def figure4(n: int, *, measured: int, spacing: float, timeout: float) -> dict[str, Any]:
    """``measured`` clients fall silent ``spacing`` s apart among ``n`` registered ones (the others keep
    alive every timeout/3, from shared sockets); how long after its deadline (last keepalive sent +
    ``timeout``) the server emits each one's ``disappeared`` event."""
    log(f"figure 4: {measured} clients fall silent among {n} (timeout {timeout:g} s)")
    carriers_n = min(1000, max(1, n - measured))
    with Sockets(measured + carriers_n) as socks, server(timeout=timeout) as srv:
        carriers = list(range(measured, measured + carriers_n))
        # the measured clients register over the wire, first (so they are the oldest)
        epoll = socks.epoll(range(measured))
        tokens: dict[int, str] = {}
        deadline = time.monotonic() + 10
        while len(tokens) < measured and time.monotonic() < deadline:
            for i in range(measured):
                if i not in tokens:
                    socks.socks[i].sendto(register_bytes(i, socks.ports[i], prefix="m"), srv.addr)
            end = time.monotonic() + 0.5
            while len(tokens) < measured and time.monotonic() < end:
                for fd, _ in epoll.poll(0.05):
                    i = socks.index[fd]
                    with contextlib.suppress(BlockingIOError):
                        while True:
                            msg = _decode(socks.socks[i].recvfrom(2048)[0])
                            if isinstance(msg, wire.Challenge):
                                cookie_reg = register_bytes(i, socks.ports[i], msg.cookie, prefix="m")
                                socks.socks[i].sendto(cookie_reg, srv.addr)
                            elif isinstance(msg, wire.Registered):
                                tokens[i] = msg.token
        epoll.close()
        if len(tokens) < measured:
            raise RuntimeError(f"only {len(tokens)} of {measured} clients registered")
        background = n - measured
        ports = [socks.ports[carriers[j % carriers_n]] for j in range(background)]
        srv.ask("prefill", n=background, ports=ports, signed=SIGNED)
        ka_background = [keepalive_bytes(f"c{j}", _token_of(j)) for j in range(background)]
        ka_measured = [keepalive_bytes(f"m{i}", tokens[i]) for i in range(measured)]
        start = time.monotonic()
        last_contact = [start + 0.5 + i * spacing for i in range(measured)]
        finish = last_contact[-1] + timeout + 1.0
        interval = timeout / 3
        bg_next = 0  # background keepalives go out evenly, each client once per interval
        sent_measured = 0
        now = start
        while now < finish:
            due_bg = int((now - start) / interval * background)
            while bg_next < due_bg:
                j = bg_next % background
                with contextlib.suppress(BlockingIOError):
                    socks.socks[carriers[j % carriers_n]].sendto(ka_background[j], srv.addr)
                bg_next += 1
            while sent_measured < measured and now >= last_contact[sent_measured] - 0.0005:
                i = sent_measured
                socks.socks[i].sendto(ka_measured[i], srv.addr)
                last_contact[i] = time.monotonic()  # the server hears it after this: lag is not understated
                sent_measured += 1
            time.sleep(0.001)  # (what the server sends the carriers piles up unread: the kernel drops it)
            now = time.monotonic()
        gone = srv.ask("disappeared")
        lags = [gone[f"m{i}"] - (last_contact[i] + timeout) for i in range(measured) if f"m{i}" in gone]
        result = {
            "clients": n,
            "measured": measured,
            "reported": len(lags),
            "lag_median_s": statistics.median(lags) if lags else None,
            "lag_p95_s": sorted(lags)[int(0.95 * (len(lags) - 1))] if lags else None,
            "lag_max_s": max(lags) if lags else None,
            "lag_min_s": min(lags) if lags else None,
            "spacing_s": spacing,
            "timeout_s": timeout,
            "goal": "<= 0.2 s, flat in N",
        }
        log(f"  {n}: {len(lags)}/{measured} reported; lag median {result['lag_median_s']}, max {result['lag_max_s']}")
        return result


def _token_of(i: int) -> str:
    return f"{i:032x}"  # as bench/serve.py prefill gives them


# --- figure 6: @chat to delivery across two cone NATs (Mininet) ------------------------------------


def figure6(pairs: int) -> dict[str, Any]:
    """``bench/mininet_chat.py`` under Debian's python, as root; otherwise say why it is skipped."""
    if os.geteuid() != 0:
        return {"skipped": "not root: Mininet needs network namespaces (run `make bench` as root)"}
    debian = "/usr/bin/python3"
    if subprocess.run([debian, "-c", "import mininet"], capture_output=True).returncode != 0:
        return {"skipped": f"{debian} cannot import mininet (make mininet-deps)"}
    log(f"figure 6: @chat -> delivery across two cone NATs, 20 ms per NAT crossing, {pairs} fresh pairs (Mininet)")
    done = subprocess.run(
        [debian, str(HERE / "mininet_chat.py"), "--pairs", str(pairs)], capture_output=True, text=True, timeout=600
    )
    lines = done.stdout.strip().splitlines()
    if not lines:
        return {"failed": done.stderr.strip().splitlines()[-5:]}
    return dict(json.loads(lines[-1]))


# --- driver -----------------------------------------------------------------------------------------


def figure5(quick: bool) -> dict[str, Any]:
    """Relay throughput: ``bench/relay.py`` (its own script: three server processes of its own)."""
    log("figure 5: relay throughput")
    args = [sys.executable, str(HERE / "relay.py"), *(["--quick"] if quick else [])]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench/relay.py failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def _fmt(value: float | None, unit: str = "", digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}{unit}"


def table(results: dict[str, Any]) -> list[str]:
    """The results as a Markdown table (printed, and copied into the README)."""
    rows = ["| figure | N | natchat | reference, same run | result | goal |", "|---|---|---|---|---|---|"]
    if ka := results.get("keepalive"):
        rows.append(
            f"| 1. keepalives acknowledged per second | {ka['clients']:,} | {_fmt(ka['natchat_per_s'], '/s')} | "
            f"bare Trio loop {_fmt(ka['bare_per_s'], '/s')} | {ka['ratio']:.2f} x (median of {len(ka['ratios'])}) "
            f"| >= 0.8 x |"
        )
    for st in results.get("join_storm", []):
        per_change = st["delta_datagrams_per_recipient_per_change"]
        rows.append(
            f"| 2. join storm: every list equals the server's | {st['clients']:,} | "
            + (
                f"{_fmt(st['converged_s'], ' s', 1)} ({st['lists_equal']}/{st['tracked']} lists) | "
                if st["converged_s"] is not None
                else f"> {st['limit_s']:g} s: {st['lists_equal']}/{st['tracked']} lists equal by then, all registered "
                f"after {_fmt(st['registered_within_s'], ' s')} | "
            )
            + f"keepalive interval {KEEPALIVE_INTERVAL:g} s; a bare loop sends the same datagrams to the same "
            f"sockets in {_fmt(st.get('bare_send_s'), ' s', 1)} | "
            f"{_fmt(st['server_datagrams_per_registration'])} datagrams, "
            f"{_fmt(st['server_bytes_per_registration'] / 1000)} kB sent per registration; "
            f"{_fmt(per_change, '', 2)} deltas per recipient per change; largest {st['largest_datagram']} B "
            f"| O(1) per recipient per change, <= 1200 B, well under the interval |"
        )
    if mem := results.get("memory"):
        for row in mem["prefill"]:
            rows.append(
                f"| 3. resident memory per client | {row['clients']:,} | {_fmt(row['rss_per_client'], ' B')} | "
                f"{_fmt(mem['tracemalloc'], ' B')} Python objects at {mem['prefill'][-1]['clients']:,} (tracemalloc) "
                f"| | <= 1024 B |"
            )
    for d in results.get("disappearance", []):
        rows.append(
            f"| 4. disappearance reported after the deadline | {d['clients']:,} | median "
            f"{_fmt(d['lag_median_s'] and d['lag_median_s'] * 1000, ' ms', 1)}, max "
            f"{_fmt(d['lag_max_s'] and d['lag_max_s'] * 1000, ' ms', 1)} | {d['reported']}/{d['measured']} reported | "
            f"timeout {d['timeout_s']:g} s | <= 200 ms, flat in N |"
        )
    if rl := results.get("relay"):
        us = rl["server_cpu_us_per_datagram"]
        cap = rl["default_limits"]["cap_per_sender_per_s"]
        rows.append(
            f"| 5. chat datagrams relayed per second (midPeer) | {rl['pairs']} pairs, {rl['window_per_sender']} in "
            f"flight each | {_fmt(rl['natchat_per_s'], '/s')} | "
            f"bare Trio forwarding loop {_fmt(rl['bare_per_s'], '/s')} | {rl['ratio']:.2f} x "
            f"(median of {len(rl['ratios'])}); server CPU {_fmt(us['natchat'], ' us', 1)} per "
            f"datagram (bare {_fmt(us['bare'], ' us', 1)}); lost {rl['lost']['natchat']} | none set; each client is "
            f"capped at {cap:g}/s by default (`--relay-rate`) |"
        )
    if f6 := results.get("chat_latency"):
        if "median_rtts" in f6:
            rows.append(
                f"| 6. `@chat` -> first delivery, two cone NATs, 20 ms per crossing (Mininet) | {f6['pairs']} pairs | "
                f"median {_fmt(f6['chat_to_delivery_median_ms'], ' ms')}, "
                f"max {_fmt(f6['chat_to_delivery_max_ms'], ' ms')} | "
                f"peer RTT {_fmt(f6['peer_rtt_ms'], ' ms')} (ping) | {f6['median_rtts']:.2f} RTT median, "
                f"{f6['max_rtts']:.2f} max | <= 3 RTT |"
            )
        else:
            rows.append(f"| 6. `@chat` -> first delivery (Mininet) | | {f6.get('skipped') or f6.get('failed')} | | | |")
    return rows


def plot(results: dict[str, Any], path: Path) -> bool:
    """Figures 2-4 against N (needs matplotlib, the ``bench`` extra); False if it is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    storm = results.get("join_storm", [])
    ax = axes[0]
    done = [s for s in storm if s["converged_s"] is not None]
    ax.plot([s["clients"] for s in done], [s["converged_s"] for s in done], "o-", label="every list converged (s)")
    late = [s for s in storm if s["converged_s"] is None]
    ax.plot([s["clients"] for s in late], [s["limit_s"] for s in late], "o", mfc="none", label="not all by then (s)")
    floor = [s for s in storm if s.get("bare_send_s") is not None]
    ax.plot(
        [s["clients"] for s in floor],
        [s["bare_send_s"] for s in floor],
        "^--",
        color="tab:green",
        label="bare loop, same datagrams (s)",
    )
    ax.axhline(KEEPALIVE_INTERVAL, color="grey", ls="--", label="keepalive interval")
    scale = "log" if storm else "linear"
    ax.set(xscale=scale, yscale=scale, xlabel="clients joining within 1 s", ylabel="seconds", title="2. join storm")
    ax2 = ax.twinx()  # datagrams per registration: flat is O(1) per recipient per change
    ax2.plot(
        [s["clients"] for s in storm],
        [s["server_datagrams_per_registration"] for s in storm],
        "s:",
        color="tab:orange",
        label="datagrams sent per registration",
    )
    top = max([s["server_datagrams_per_registration"] for s in storm], default=1.0)
    ax2.set(ylim=(0, 2 * top), ylabel="datagrams per registration")
    ax.legend(loc="upper left", fontsize=7)
    ax2.legend(loc="lower right", fontsize=7)
    mem = results.get("memory", {}).get("prefill", [])
    ax = axes[1]
    ax.plot([m["clients"] for m in mem], [m["rss_per_client"] for m in mem], "o-", label="resident memory / client")
    ax.axhline(1024, color="grey", ls="--", label="goal: 1 KB")
    ax.set(xscale="log" if mem else "linear", xlabel="registered clients", ylabel="bytes per client", title="3. memory")
    ax.legend(fontsize=8)
    lag = [d for d in results.get("disappearance", []) if d["lag_median_s"] is not None]
    ax = axes[2]
    ax.plot([d["clients"] for d in lag], [d["lag_median_s"] * 1000 for d in lag], "o-", label="median")
    ax.plot([d["clients"] for d in lag], [d["lag_max_s"] * 1000 for d in lag], "s--", label="max")
    ax.axhline(200, color="grey", ls="--", label="goal: 200 ms")
    ax.set(
        xscale="log" if lag else "linear",  # (a run without the figure, --only: an empty panel)
        xlabel="registered clients",
        ylabel="ms after the deadline",
        title="4. disappearance lag",
    )
    ax.legend(fontsize=8)
    m = results["machine"]
    fig.suptitle(f"natchat server, {m['cores']} cores {m['cpu']}, Python {m['python']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny N, seconds: checks that the benchmark works")
    parser.add_argument("--only", nargs="*", type=int, help="figure numbers to run (default: 1 2 3 4 5 6)")
    parser.add_argument("--out", type=Path, default=HERE / "results.json", help="where to write the results")
    parser.add_argument("--plot", type=Path, default=HERE / "results.png", help="where to draw figures 2-4")
    parser.add_argument(
        "--unsigned", action="store_true", help="clients register without identities (as natchat did before them)"
    )
    args = parser.parse_args()
    global SIGNED
    SIGNED = not args.unsigned
    random.seed(7)
    quick = args.quick
    only = set(args.only or [1, 2, 3, 4, 5, 6])
    results: dict[str, Any] = {
        "machine": machine(),
        "quick": quick,
        "signed": SIGNED,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    keepalive = {"repeat": 1 if quick else 5, "seconds": 0.5 if quick else 2.0}
    if 2 in only:
        storms = []
        for n in [50] if quick else [1_000, 10_000]:
            # figure 1 runs on the 10,000 clients of the last storm, registered over the wire
            then = keepalive if 1 in only and n == (50 if quick else 10_000) else None
            tracked = n if n <= 1_000 else 500  # every client, or a sample (the generator has one core)
            storms.append(figure2(n, tracked_max=tracked, limit=30 if quick else 180, then_keepalive=then))
            if "keepalive" in storms[-1]:
                results["keepalive"] = storms[-1].pop("keepalive")
        results["join_storm"] = storms
    elif 1 in only:
        results["keepalive"] = figure1(50 if quick else 10_000, **keepalive)
    if 3 in only:
        results["memory"] = figure3([50, 500] if quick else [1_000, 10_000, 100_000])
    if 4 in only:
        sizes = [50, 200] if quick else [1_000, 100_000]
        timeout = 1.5 if quick else 30.0
        measured, spacing = (10, 0.02) if quick else (50, 0.1)
        results["disappearance"] = [figure4(n, measured=measured, spacing=spacing, timeout=timeout) for n in sizes]
    if 5 in only:
        results["relay"] = figure5(quick)
    if 6 in only:
        results["chat_latency"] = figure6(3 if quick else 10)
    results["table"] = table(results)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    drawn = plot(results, args.plot)
    print("\n".join(results["table"]))
    print(f"\nwrote {args.out}" + (f" and {args.plot}" if drawn else " (no plot: pip install -e '.[bench]')"))


if __name__ == "__main__":
    main()
