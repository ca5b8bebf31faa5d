#!/usr/bin/python3
"""The NAT grid: natchat between every ordered pair of the NAT zoo's kinds, in one network.

    /usr/bin/python3 topologies/nat_grid.py [--pairs 10] [--kinds easy,hard,...] [--parallel 3]
                                            [--markdown docs/NAT_GRID.md] [--json F] [--transcript F]

One network holds every kind (natnet.zoo(): two NAT boxes per kind, a CGN with two home NATs behind it
per CGN kind, one NAT with two hosts for ``same-lan``, public hosts for ``open``), and ``natchat serve
--midpeer`` runs on ``server``, so the relay exists. For every ordered pair of kinds (the first sends the
first ``@chat``; X <-> X pairs are behind two different NAT boxes of kind X, the CGN kinds behind two
home NATs of one CGN), ``--pairs`` fresh pairs of ``natchat join --json`` (new processes, new local ports)
chat both ways. Per cell it records the path (``@path``, both ways), how many pairs delivered both
messages, the median and worst time from ``@chat`` to the first message shown, and what punching cost:
the datagrams the two hosts sent to anything but the server (chat and acks left out) and the distinct
local ports they sent from, counted from a packet capture on each host, not from natchat's word.

Every cell has an EXPECTED path (the table below: what natchat does today). The run fails when a pair
gets a worse path than expected (lan < direct < relay), loses a message, or is relayed without the
server saying so. Cells marked ``direct%`` go direct by birthday punching in at least
``BIRTHDAY_SHARE`` of their pairs (the others may be relayed); ``relay*`` would mark a cell relayed
today that birthday punching should make direct (none is left). Prints the grid; ``--markdown``
writes it (``make grid``: docs/NAT_GRID.md). The network is always torn down; all traffic stays inside its namespaces.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from capture import Capture, Datagram  # noqa: E402
from harness import (  # noqa: E402
    Expired,
    HostProc,
    Row,
    Scenario,
    Transcript,
    is_root,
    natchat,
    print_table,
    report,
    scenario_parser,
)
from natnet import ZOO_KINDS, Zoo, network, zoo  # noqa: E402

PAIR_KINDS = tuple(k for k in ZOO_KINDS if k != "same-lan")
"""Kinds that pair with each other; ``same-lan`` is one cell of its own (two peers behind one NAT)."""

RANK = {"lan": 0, "direct": 1, "relay": 2, "none": 3}
"""Better paths first: a pair fails when its path ranks below the expected one."""

# EXPECTED[first][other]: the path natchat takes TODAY. ("relay*" would be a cell relayed today that
# birthday punching should make direct; the CGN cells with a hard side were, until measured direct by
# it: behind either CGN kind a peer maps endpoint-independently, as behind an easy NAT.) The easy-trap cells with a
# hard side keep relaying: unsolicited probes leave conntrack entries there that collide with the port
# the NAT would pick (topologies/README.md).
# "direct%": direct by birthday punching (one attempt, about 98 % by the formula): at least
# BIRTHDAY_SHARE of the pairs must go direct; the others may be relayed (the introducer relays a pair
# whose birthday attempt failed), never lose a message. (easy <-> hard-trap goes direct too: the spray's
# unsolicited probes leave entries only at ports no fan-out socket has.)
# cgnat <-> cgnat: two home NATs behind one CGN that does not hairpin: nothing but the relay.
EXPECTED: dict[str, dict[str, str]] = {
    "open": dict.fromkeys(PAIR_KINDS, "direct"),
    "easy": {
        "open": "direct",
        "easy": "direct",
        "easy-trap": "direct",
        "hard": "direct%",
        "hard-trap": "direct%",
        "cgnat": "direct",
        "cgnat-hairpin": "direct",
    },
    "easy-trap": {
        "open": "direct",
        "easy": "direct",
        "easy-trap": "relay",  # both trap: 0 ms links, probes rarely cross in flight (README: "The conntrack trap")
        "hard": "relay",
        "hard-trap": "relay",
        "cgnat": "direct",
        "cgnat-hairpin": "direct",
    },
    "hard": {
        "open": "direct",
        "easy": "direct%",
        "easy-trap": "relay",
        "hard": "relay",
        "hard-trap": "relay",
        "cgnat": "direct%",
        "cgnat-hairpin": "direct%",
    },
    "hard-trap": {
        "open": "direct",
        "easy": "direct%",
        "easy-trap": "relay",
        "hard": "relay",
        "hard-trap": "relay",
        "cgnat": "direct%",
        "cgnat-hairpin": "direct%",
    },
    "cgnat": {
        "open": "direct",
        "easy": "direct",
        "easy-trap": "direct",
        "hard": "direct%",
        "hard-trap": "direct%",
        "cgnat": "relay",
        "cgnat-hairpin": "direct",
    },
    "cgnat-hairpin": {
        "open": "direct",
        "easy": "direct",
        "easy-trap": "direct",
        "hard": "direct%",
        "hard-trap": "direct%",
        "cgnat": "direct",
        "cgnat-hairpin": "direct",
    },
    "same-lan": {"same-lan": "lan"},
}

KEEPALIVE = 2.0
RELAY_AFTER = 2.0
"""--relay-after of every client: how long a pair without a direct path waits before relaying."""
DELIVER_WITHIN = 20.0
SHOW_WITHIN = 25.0
"""A message not shown this long after its @chat is lost (a relayed pair needs RELAY_AFTER first)."""
UPGRADE_WITHIN = 10.0
"""A pair relayed first while punching went on may turn direct by itself: @path is asked again (once a
second) for this long before a worse path than expected counts."""


BIRTHDAY_SHARE = 0.9
"""A "direct%" cell passes with at least this share of its pairs direct (the goal: 90 %)."""
PER_CELL_MIN_PAIRS = 5
"""With fewer pairs a cell (the short grid of ``make test`` runs 2), one relayed birthday pair says
little about a cell (a 1-in-20 failure relays both of a cell's 2 pairs now and then): the birthday
cells are then judged together, against :data:`SHORT_RUN_SHARE`."""
SHORT_RUN_SHARE = 0.75
"""A short run passes with at least this share of all its birthday cells' pairs direct (measured: 116
of 120 pairs direct at 10 a cell, 22 of 24 at 2; with 24 pairs and 5 % of them relayed, a run fails
this bar by chance about once in 8,000, at 8 % once in 500)."""


def expected(first: str, other: str) -> tuple[str, bool]:
    """The expected path of a cell and whether birthday punching should make (or makes) it direct."""
    value = EXPECTED[first][other]
    return value.rstrip("*%"), value.endswith(("*", "%"))


def share(first: str, other: str) -> float:
    """The share of a cell's pairs that must get the expected path (the others may be relayed)."""
    return BIRTHDAY_SHARE if EXPECTED[first][other].endswith("%") else 1.0


@dataclass
class Pair:
    index: int
    hosts: tuple[str, str]
    delivered: int = 0
    """Messages shown (of 2: one each way)."""
    first_s: float | None = None
    """From the first @chat to the message shown."""
    back_s: float | None = None
    path: str = "-"
    path_back: str = "-"
    upgraded_s: float | None = None
    datagrams: int = 0
    ports: int = 0
    server_relayed: bool = False
    error: str = ""
    seconds: float = 0.0


@dataclass
class Cell:
    first: str
    other: str
    expected: str
    birthday: bool
    pairs: list[Pair] = field(default_factory=list)
    share: float = 1.0
    """At least this share of the pairs must get the expected path; the others may be relayed."""
    pooled: bool = False
    """The share is judged over all birthday cells together (:data:`PER_CELL_MIN_PAIRS`), not here."""

    @property
    def name(self) -> str:
        return f"{self.first} -> {self.other}"

    def paths(self) -> Counter[str]:
        return Counter(p.path for p in self.pairs)

    def successes(self) -> int:
        return sum(p.delivered == 2 for p in self.pairs)

    def failures(self) -> list[str]:
        """Why the cell failed, one entry per failing pair (empty: it passed)."""
        out = []
        worse = []
        for p in self.pairs:
            worst = max((p.path, p.path_back), key=lambda x: RANK.get(x, 9))
            if p.error:
                out.append(f"pair {p.index}: {p.error}")
            elif p.delivered < 2:
                out.append(f"pair {p.index}: {2 - p.delivered} message(s) lost")
            elif RANK.get(worst, 9) > RANK[self.expected] and (self.share >= 1.0 or worst != "relay"):
                out.append(f"pair {p.index}: {p.path}/{p.path_back}, expected {self.expected}")
            elif RANK.get(worst, 9) > RANK[self.expected]:
                worse.append(f"pair {p.index}: {p.path}/{p.path_back}, expected {self.expected}")
            if "relay" in (p.path, p.path_back) and not p.server_relayed and not p.error and p.delivered == 2:
                out.append(f"pair {p.index}: relayed, but the server printed no 'relaying'")
        if not self.pooled and len(worse) > math.ceil((1.0 - self.share) * len(self.pairs) - 1e-9):  # (1 of 6 or 10)
            out.extend(worse)
        return out

    def summary(self) -> dict[str, Any]:
        times = sorted(p.first_s for p in self.pairs if p.first_s is not None)
        datagrams = sorted(p.datagrams for p in self.pairs)
        ports = sorted(p.ports for p in self.pairs)
        return {
            "paths": dict(self.paths()),
            "successes": self.successes(),
            "pairs": len(self.pairs),
            "median_s": statistics.median(times) if times else None,
            "worst_s": times[-1] if times else None,
            "median_datagrams": statistics.median(datagrams) if datagrams else None,
            "max_datagrams": datagrams[-1] if datagrams else None,
            "median_ports": statistics.median(ports) if ports else None,
            "max_ports": ports[-1] if ports else None,
        }


# --- hosts, one client at a time each ------------------------------------------------------------------


class Hosts:
    """Hands out hosts for a pair so that no host runs two grid clients at once (each host's capture is
    then exactly one client's traffic). Two hosts of one kind come from different sites (different NAT
    boxes; for the CGN kinds different home NATs of one CGN); ``same-lan`` takes two of its one site."""

    def __init__(self, z: Zoo) -> None:
        self.sites = z.sites
        self.busy: set[str] = set()
        self.cond = threading.Condition()

    def _pick(self, first: str, other: str) -> tuple[str, str] | None:
        if first == other == "same-lan":
            free = [h for h in self.sites["same-lan"][0] if h not in self.busy]
            return (free[0], free[1]) if len(free) >= 2 else None
        for i, site_a in enumerate(self.sites[first]):
            for j, site_b in enumerate(self.sites[other]):
                if first == other and i == j:
                    continue
                a = next((h for h in site_a if h not in self.busy), None)
                b = next((h for h in site_b if h not in self.busy and h != a), None)
                if a and b:
                    return a, b
        return None

    @contextmanager
    def take(self, first: str, other: str) -> Iterator[tuple[str, str]]:
        with self.cond:
            while (pair := self._pick(first, other)) is None:
                self.cond.wait(1.0)
            self.busy.update(pair)
        try:
            yield pair
        finally:
            with self.cond:
                self.busy.difference_update(pair)
                self.cond.notify_all()


# --- one pair ------------------------------------------------------------------------------------------


def wait_event(proc: HostProc, where: Callable[[dict[str, Any]], bool], within: float, start: int = 0) -> int:
    """Read ``proc``'s --json output until an event (from line ``start`` on) satisfies ``where``; the index
    of its line."""
    deadline = time.monotonic() + within
    index = start
    while True:
        while index < len(proc.out):
            line = proc.out[index]
            index += 1
            if line.startswith("{") and where(json.loads(line)):
                return index - 1
        left = deadline - time.monotonic()
        if left <= 0:
            raise Expired(f"{proc.name}: no event as expected within {within:g} s")
        proc._pump(min(left, 0.05))


def event_at(proc: HostProc, index: int) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(proc.out[index])
    return event


def lost(proc: HostProc) -> list[str]:
    """Messages the client gave up on (``undeliverable`` errors)."""
    return [
        e["text"]
        for line in proc.out
        if line.startswith("{")
        for e in [json.loads(line)]
        if e.get("code") == "undeliverable"
    ]


def ask_path(proc: HostProc, peer: str) -> str:
    mark = len(proc.out)
    proc.type(f"@path {peer}")
    index = wait_event(proc, lambda e: e.get("event") == "path_report" and e.get("peer") == peer, 8, mark)
    return str(event_at(proc, index)["path"])


def knows(proc: HostProc, peer: str, within: float = 10.0) -> None:
    """Wait until ``proc`` lists ``peer`` (a ``list`` event naming it, or ``@show_list``)."""
    deadline = time.monotonic() + within
    try:
        wait_event(proc, lambda e: e.get("event") == "list" and peer in e.get("joined", ()), min(3.0, within))
        return
    except Expired:
        pass
    while True:
        mark = len(proc.out)
        proc.type("@show_list")
        index = wait_event(proc, lambda e: e.get("event") == "show_list", 5, mark)
        if peer in {p["id"] for p in event_at(proc, index)["peers"]}:
            return
        if time.monotonic() > deadline:
            raise Expired(f"{proc.name} does not list {peer}")
        time.sleep(0.3)


def run_pair(net: Any, t: Transcript, z: Zoo, cell: Cell, number: int, pair: Pair) -> None:
    a_host, b_host = pair.hosts
    a_id, b_id = f"c{number:02d}p{pair.index}a", f"c{number:02d}p{pair.index}b"
    server_ip = z.spec.server_ip()
    common = ("--server", server_ip, "--port", "0", "--json", "-v", "--keepalive", str(KEEPALIVE))
    common += ("--relay-after", str(RELAY_AFTER), "--deliver-within", str(DELIVER_WITHIN))
    captures: dict[str, Capture] = {}
    procs: list[HostProc] = []
    began = time.monotonic()
    with ExitStack() as stack:
        for host in pair.hosts:
            captures[host] = Capture(net[host], net[host].defaultIntf().name, "udp")
        try:
            a = natchat(net[a_host], t, "join", a_id, *common, name=a_id)
            procs.append(a)
            stack.callback(a.stop)
            b = natchat(net[b_host], t, "join", b_id, *common, name=b_id)
            procs.append(b)
            stack.callback(b.stop)
            for proc in (a, b):
                wait_event(proc, lambda e: e.get("event") == "registered", 15)
            knows(a, b_id)
            knows(b, a_id)
            for src, dst, text in ((a, b, f"hello {b_id}"), (b, a, f"hello back {a_id}")):
                typed = time.monotonic()
                src.type(f"@chat {dst.name} {text}")
                wait_event(
                    dst,
                    lambda e, s=src.name, x=text: e.get("event") == "message" and e["from"] == s and e["text"] == x,
                    SHOW_WITHIN,
                )
                took = time.monotonic() - typed
                pair.delivered += 1
                if src is a:
                    pair.first_s = took
                else:
                    pair.back_s = took
            started = time.monotonic()
            want = RANK[cell.expected]
            pair.path, pair.path_back = ask_path(a, b_id), ask_path(b, a_id)
            while max(RANK.get(pair.path, 9), RANK.get(pair.path_back, 9)) > want:
                if time.monotonic() - started > UPGRADE_WITHIN:
                    break
                time.sleep(1.0)
                pair.path, pair.path_back = ask_path(a, b_id), ask_path(b, a_id)
                if max(RANK.get(pair.path, 9), RANK.get(pair.path_back, 9)) <= want:
                    pair.upgraded_s = time.monotonic() - started
            for proc in (a, b):
                proc.type("@exit")
            for proc in (a, b):
                proc.wait(within=5)
        except Exception as exc:  # the pair failed: say why, go on with the others
            pair.error = f"{type(exc).__name__}: {exc}"
        finally:
            if not pair.error and (gave_up := [text for proc in procs for text in lost(proc)]):
                pair.error = f"undeliverable: {gave_up}"
            stack.close()
            sent: list[Datagram] = []
            for host, capture in captures.items():
                ip = net[host].IP()
                sent += [d for d in capture.stop() if d.src == ip]
            punching = [d for d in sent if d.dst != server_ip and d.natchat_type not in ("chat", "chat_ack")]
            pair.datagrams = len(punching)
            pair.ports = len({(d.src, d.sport) for d in sent})
            pair.seconds = time.monotonic() - began


# --- the grid ------------------------------------------------------------------------------------------


def cells_for(kinds: list[str]) -> list[Cell]:
    cells = []
    for first in kinds:
        for other in kinds:
            if (first == "same-lan") != (other == "same-lan"):
                continue
            path, birthday = expected(first, other)
            cells.append(Cell(first, other, path, birthday, share=share(first, other)))
    return cells


def pooled_row(cells: list[Cell]) -> Row:
    """The short run's verdict on its birthday cells, together: at least :data:`SHORT_RUN_SHARE` direct."""
    pairs = [p for c in cells for p in c.pairs]
    relayed = sum("relay" in (p.path, p.path_back) for p in pairs)
    allowed = math.ceil((1.0 - SHORT_RUN_SHARE) * len(pairs) - 1e-9)
    detail = f"{len(pairs) - relayed}/{len(pairs)} direct, {relayed} relayed (at most {allowed})"
    share = f"{SHORT_RUN_SHARE:.0%}"
    return Row(f"birthday cells together are {share} direct", bool(pairs) and relayed <= allowed, 0.0, detail)


def run_grid(t: Transcript, z: Zoo, cells: list[Cell], pairs: int, parallel: int) -> None:
    hosts = Hosts(z)
    with network(z.spec) as net, ExitStack() as stack:
        server = natchat(net["server"], t, "serve", "--midpeer", "--timeout", "10", name="server")
        stack.callback(server.stop)
        server.poll(1.0)  # its start-up line may come only later (buffered); clients retry registering anyway
        jobs = [(number, cell, i) for i in range(pairs) for number, cell in enumerate(cells)]

        def one(job: tuple[int, Cell, int]) -> None:
            number, cell, i = job
            with hosts.take(cell.first, cell.other) as chosen:
                pair = Pair(i, chosen)
                run_pair(net, t, z, cell, number, pair)
                cell.pairs.append(pair)

        with ThreadPoolExecutor(max_workers=parallel) as pool:
            futures = [pool.submit(one, job) for job in jobs]
            while not all(f.done() for f in futures):
                server.poll(0.2)  # keep its pipe drained
            for f in futures:
                f.result()
        server.poll(0.5)
        relayed = {line.removeprefix("relaying ") for line in server.out if line.startswith("relaying ")}
        for number, cell in enumerate(cells):
            for pair in cell.pairs:
                a_id, b_id = f"c{number:02d}p{pair.index}a", f"c{number:02d}p{pair.index}b"
                pair.server_relayed = f"{a_id} -> {b_id}" in relayed or f"{b_id} -> {a_id}" in relayed


# --- output --------------------------------------------------------------------------------------------


def describe(cell: Cell) -> str:
    s = cell.summary()
    if not s["pairs"]:
        return "not run"
    paths = "/".join(f"{p} {n}" if len(s["paths"]) > 1 else p for p, n in sorted(s["paths"].items()))
    star = "*" if cell.birthday else ""
    mark = "" if not cell.failures() else f" **FAIL** (expected {cell.expected})"
    timing = f"{s['median_s']:.2f}/{s['worst_s']:.2f} s" if s["median_s"] is not None else "-"
    cost = f"{s['median_datagrams']:g} dg, {s['median_ports']:g} ports"
    return f"{paths}{star}{mark} {s['successes']}/{s['pairs']}, {timing}, {cost}"


def markdown(cells: list[Cell], pairs: int, seconds: float, delay_ms: float) -> str:
    kinds = [k for k in PAIR_KINDS if any(c.first == k for c in cells)]
    by = {(c.first, c.other): c for c in cells}
    lines = [
        "# natchat across the NAT zoo (measured in Mininet)",
        "",
        f"Generated by `topologies/nat_grid.py --pairs {pairs}` (`make grid`) in {seconds:.0f} s, "
        f"{delay_ms:g} ms per NAT crossing. "
        "Rows: the peer that sends the first `@chat`; columns: the other. Each cell: the path `@path` "
        f"reported (both ways), pairs that delivered both messages of {pairs} fresh pairs, the median/worst "
        "time from the first `@chat` to the message shown, and the median cost of a pair: datagrams both "
        "hosts sent to anything but the server (chat and acks left out; captured on the hosts) and the "
        f"distinct local ports they sent from. Clients: `natchat join --json --relay-after {RELAY_AFTER:g}` "
        "with the server as midPeer (`natchat serve --midpeer`). `direct*`: direct by birthday punching "
        "in at least 90 % of the pairs (the others relayed). "
        'The kinds are in `topologies/README.md` ("The NAT zoo").',
        "",
        "| first \\ other | " + " | ".join(kinds) + " |",
        "|---|" + "---|" * len(kinds),
    ]
    for row in kinds:
        lines.append(f"| **{row}** | " + " | ".join(describe(by[row, col]) for col in kinds if (row, col) in by) + " |")
    if ("same-lan", "same-lan") in by:
        lines += ["", f"- same-lan (two peers behind one easy NAT): {describe(by['same-lan', 'same-lan'])}"]
    lines += [
        "",
        "| cell | expected | paths | delivered | median s | worst s | datagrams (median/max) | ports (median/max) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        s = c.summary()
        paths = ", ".join(f"{p} {n}" for p, n in sorted(s["paths"].items()))
        fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        lines.append(
            f"| {c.name} | {c.expected}{'*' if c.birthday else ''} | {paths} | {s['successes']}/{s['pairs']} | "
            f"{fmt(s['median_s'])} | {fmt(s['worst_s'])} | {s['median_datagrams']}/{s['max_datagrams']} | "
            f"{s['median_ports']}/{s['max_ports']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = scenario_parser(__doc__)
    parser.add_argument("--pairs", type=int, default=10, help="fresh pairs per cell (default 10)")
    parser.add_argument("--kinds", default=",".join(ZOO_KINDS), help="comma-separated subset of the kinds")
    parser.add_argument("--parallel", type=int, default=3, help="pairs running at once (default 3)")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="delay per NAT crossing (default 0 ms)")
    parser.add_argument("--markdown", metavar="PATH", help="also write the grid as Markdown")
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if unknown := [k for k in kinds if k not in ZOO_KINDS]:
        print(f"error: unknown kind(s) {', '.join(unknown)}; the kinds are {', '.join(ZOO_KINDS)}", file=sys.stderr)
        return 2
    if args.pairs < 1 or args.parallel < 1 or args.delay_ms < 0:
        print("error: --pairs and --parallel must be at least 1, --delay-ms at least 0", file=sys.stderr)
        return 2
    if not is_root():
        return 2
    kinds = [k for k in ZOO_KINDS if k in kinds]
    transcript = Transcript(echo=args.demo)
    sc = Scenario(transcript)
    cells = cells_for(kinds)
    for cell in cells:
        cell.pooled = cell.share < 1.0 and args.pairs < PER_CELL_MIN_PAIRS
    z = zoo(kinds, wan_delay_ms=args.delay_ms)
    started = time.monotonic()
    try:
        run_grid(transcript, z, cells, args.pairs, args.parallel)
    except Exception:  # a broken set-up must not stop the report (or the cleanup)
        sc.setup_failed()
    seconds = time.monotonic() - started
    for cell in cells:
        s = cell.summary()
        why = cell.failures()
        detail = describe(cell) + (f"; {'; '.join(why[:3])}" if why else "")
        took = sum(p.seconds for p in cell.pairs)
        sc.rows.append(Row(f"{cell.name} is {cell.expected}", not why and s["pairs"] == args.pairs, took, detail))
    if args.pairs < PER_CELL_MIN_PAIRS and (pooled := [c for c in cells if c.pooled]):
        sc.rows.append(pooled_row(pooled))
    print_table(sc)
    grid = markdown(cells, args.pairs, seconds, args.delay_ms)
    print("\n" + grid)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(grid)
    cells_json = [{**asdict(c), "summary": c.summary()} for c in cells]
    return report(sc.rows, transcript, args, cells=cells_json, seconds=seconds)


if __name__ == "__main__":
    sys.exit(main())
