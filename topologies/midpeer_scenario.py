#!/usr/bin/python3
"""The midPeer across real Linux NATs: which path every kind of pair ends up on, and relay -> direct.

    /usr/bin/python3 topologies/midpeer_scenario.py [--markdown docs/MIDPEER_GRID.md] [--json out.json]

One network: four NAT boxes (nat1, nat2 cone; nat3, nat4 symmetric) with two or three hosts each, and
public hosts with no NAT at all. ``natchat serve --midpeer`` runs on ``server``.

1. The grid: for each ordered pair of {no NAT, cone, symmetric} (initiator x responder), and for two
   peers behind the same cone NAT and behind the same symmetric NAT, a fresh pair of clients chats
   both ways; the chat must arrive, and ``@path`` must name the expected path: ``direct`` unless both
   sides map by destination (symmetric <-> symmetric: ``relay``; cone <-> symmetric is found by birthday
   punching, ``docs/PROTOCOL.md``), ``lan`` behind the same NAT. Relayed pairs must appear in the
   server's ``relaying`` lines and direct ones must not. Printed as a table; ``--markdown`` writes it.
2. Standalone midPeer and the upgrade: ``natchat midpeer`` on ``public3``, two clients behind the two
   cone NATs with ``--midpeer``. A firewall rule on nat1 drops everything from the first client to
   nat2's public address: chat goes through the midPeer relay, and a capture on the midPeer's host shows
   the relayed chat datagrams and no message text in any of them (peers seal what they send each other).
   The rule is removed while messages keep flowing; the path must become direct by itself, and every
   message must arrive exactly once, in order.

3. natdemo's "stage 2": ``natchat midpeer`` behind nat2, reachable through a forwarded port (a DNAT
   rule), relays for a cone <-> symmetric pair.

Exits 1 if anything failed; the network is always torn down. All traffic stays inside the network
namespaces this script creates.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from capture import Datagram, capturing  # noqa: E402
from harness import (  # noqa: E402
    HostProc,
    Scenario,
    Transcript,
    is_root,
    natchat,
    path_of,
    print_table,
    report,
    scenario_parser,
    show_list,
)
from natnet import NetSpec, seed_network  # noqa: E402

KINDS = ("cone", "cone", "symmetric", "symmetric")  # nat1 .. nat4
HOSTS_PER_LAN = (3, 2, 2, 2)
PUBLIC_HOSTS = 3
SERVER_IP = NetSpec.nat_wan_ip(len(KINDS) + 1)  # server follows the NATs on 10.0.0.0/24
MIDPEER_HOST = "public3"
WAN_INPUT = "drop"
"""The NATs drop unsolicited datagrams, as home routers do. (Linux's default answers them with ICMP and
keeps a conntrack entry that can make the first punching attempt fail, the "conntrack trap": its
effect on punching is measured by seed_scenario.py; here the question is which path each kind of NAT
allows.)"""
KEEPALIVE = 2.0
RELAY_AFTER = 2.0
UPGRADE_WITHIN = 30.0
"""A pair expected to go direct may be relayed first (punching took over RELAY_AFTER): it must then
move to the direct path by itself within this many seconds."""

# Which client runs on which host, and what is in front of it.
CLIENTS = {
    "p1": "public1",
    "p2": "public2",
    "c1a": "pri1_2",
    "c1b": "pri1_3",
    "c2a": "pri2_2",
    "s3a": "pri3_2",
    "s3b": "pri3_3",
    "s4a": "pri4_2",
}
KIND_OF = {"p": "no NAT", "c": "cone", "s": "symmetric"}

# (initiator, responder, expected path): every unordered pair once, so that each cell starts afresh.
GRID = [
    ("p1", "p2", "direct"),
    ("p1", "c1a", "direct"),
    ("p1", "s3a", "direct"),
    ("c1b", "p2", "direct"),
    ("c1a", "c2a", "direct"),
    ("c1a", "s4a", "direct"),  # birthday punching (the NATs drop unsolicited WAN input)
    ("s3b", "p2", "direct"),
    ("s3a", "c2a", "direct"),
    ("s3a", "s4a", "relay"),
    ("c1a", "c1b", "lan"),
    ("s3a", "s3b", "lan"),
]


@dataclass
class Cell:
    initiator: str
    responder: str
    kinds: str
    expected: str
    path: str = "-"
    rtt_ms: float | None = None
    first_delivery_s: float | None = None
    upgraded_s: float | None = None  # relayed first, then direct (punching took longer than --relay-after)
    passed: bool = False


def kind(client: str) -> str:
    return KIND_OF[client[0]]


def label(cell: Cell) -> str:
    if cell.initiator[1] == cell.responder[1] and cell.expected == "lan":
        return f"same {kind(cell.initiator)} NAT"
    return f"{kind(cell.initiator)} -> {kind(cell.responder)}"


def run_grid(sc: Scenario, net: Any, cells: list[Cell]) -> None:
    t = sc.t
    with ExitStack() as stack:
        server = natchat(net["server"], t, "serve", "--midpeer", "--timeout", "10", name="server")
        stack.callback(server.stop)
        procs: dict[str, HostProc] = {}
        with sc.step("grid: every client registers") as detail:
            for cid, host in CLIENTS.items():
                args = ("join", cid, "--server", SERVER_IP, "--keepalive", str(KEEPALIVE), "-v")
                procs[cid] = proc = natchat(net[host], t, *args, "--relay-after", str(RELAY_AFTER), name=cid)
                stack.callback(proc.stop)
            for proc in procs.values():
                proc.expect(r"registered; public address", stream="err")
            for proc in procs.values():
                show_list(proc, len(CLIENTS))
            detail.append(f"{len(CLIENTS)} clients on {', '.join(sorted(set(CLIENTS.values())))}")
        for initiator, responder, expected in GRID:
            cell = Cell(initiator, responder, f"{kind(initiator)} -> {kind(responder)}", expected)
            cells.append(cell)
            a, b = procs[initiator], procs[responder]
            with sc.step(f"grid: {label(cell)} ({initiator} -> {responder}) is {expected}") as detail:
                start = time.monotonic()
                a.type(f"@chat {responder} hello {responder}")
                b.expect(rf"^From {initiator} \[hello {responder}\]$", within=15)
                cell.first_delivery_s = time.monotonic() - start
                b.type(f"@chat {initiator} hello back")
                a.expect(rf"^From {responder} \[hello back\]$", within=15)
                cell.path, rtt = path_of(a, responder)
                deadline = time.monotonic() + UPGRADE_WITHIN
                while cell.path != expected and cell.path == "relay" and time.monotonic() < deadline:
                    a.poll(1.0)  # relayed while punching went on in the background: give it time to go direct
                    cell.path, rtt = path_of(a, responder)
                if cell.path != "relay" and any(f"no direct path to {responder} yet" in line for line in a.err):
                    cell.upgraded_s = time.monotonic() - start
                    detail.append(f"relayed first, {cell.path} after {cell.upgraded_s:.1f} s")
                cell.rtt_ms = rtt
                back, _ = path_of(b, initiator)
                server.poll(0.3)
                relayed = f"relaying {initiator} -> {responder}" in server.out
                detail.append(
                    f"{cell.path} (back: {back}), rtt {rtt:.1f} ms, delivered in {cell.first_delivery_s:.2f} s"
                )
                assert cell.path == expected, f"path is {cell.path}, expected {expected}"
                assert back == expected, f"the way back is {back}, expected {expected}"
                if expected == "relay":
                    assert relayed, f"the server printed no 'relaying {initiator} -> {responder}'"
                elif cell.upgraded_s is None:
                    assert not relayed, "the server relayed for a pair that had a direct path at once"
                cell.passed = True


def run_upgrade(sc: Scenario, net: Any) -> None:
    """Relay while a firewall rule blocks the direct path, then direct once it is lifted; nothing lost."""
    t = sc.t
    nat1 = net["nat1"]
    first_ip = NetSpec.private_ip(1, 4)
    rule = ["FORWARD", "-p", "udp", "-s", first_ip, "-d", NetSpec.nat_wan_ip(2), "-j", "DROP"]
    with ExitStack() as stack:
        server = natchat(net["server"], t, "serve", "--timeout", "10", name="server")
        stack.callback(server.stop)
        midpeer = natchat(net[MIDPEER_HOST], t, "midpeer", name="midpeer")
        stack.callback(midpeer.stop)
        midpeer_ip = net[MIDPEER_HOST].IP()
        common = ("--server", SERVER_IP, "--midpeer", midpeer_ip, "--keepalive", str(KEEPALIVE), "-v")
        common += ("--relay-after", str(RELAY_AFTER), "--deliver-within", "60")
        a = natchat(net["pri1_4"], t, "join", "up1", *common, name="up1")
        b = natchat(net["pri2_3"], t, "join", "up2", *common, name="up2")
        stack.callback(a.stop)
        stack.callback(b.stop)
        nat1.cmd("iptables", "-I", *rule)
        stack.callback(lambda: nat1.cmd("iptables", "-D", *rule, "2>/dev/null"))
        sent: list[str] = []

        def say(n: int) -> None:
            text = f"m{n:02d} {SEALED_WORDS}"
            a.type(f"@chat up2 {text}")
            sent.append(text)

        with sc.step("standalone midPeer relays while the direct path is blocked") as detail:
            for proc in (a, b):
                proc.expect(r"registered; public address", stream="err")
            midpeer.lines_until(lambda _: {"up1", "up2"} <= {line.split()[0] for line in midpeer.out if line}, 5)
            show_list(a, 2)
            host = net[MIDPEER_HOST]
            with capturing(host, host.defaultIntf().name, "udp") as at_midpeer:
                for n in range(1, 6):
                    say(n)
                    time.sleep(0.5)
                a.expect(
                    rf"no direct path to up2 yet; relaying through the midPeer {re.escape(midpeer_ip)}:10082",
                    stream="err",
                )
                b.expect(rf"^From up1 \[{re.escape(sent[-1])}\]$", within=10)
            path, rtt = path_of(a, "up2")
            assert path == "relay", f"path is {path} while blocked"
            midpeer.expect(r"^relaying up1 -> up2$", within=1)
            assert not [line for line in server.out if line.startswith("relaying")], "the server relayed"
            detail.append(f"5/5 delivered through the midPeer on {MIDPEER_HOST}, rtt {rtt:.1f} ms")
            relayed = relayed_chats(at_midpeer)
            assert len(relayed) >= 10, f"{len(relayed)} chat datagrams relayed (5 in, 5 out expected at least)"
            readable = [d for d in at_midpeer for text in [*sent, SEALED_WORDS] if text.encode() in d.payload]
            assert not readable, f"the midPeer saw a text in clear: {readable[0].payload[:200]!r}"
            detail.append(f"captured at the midPeer: {len(relayed)} relayed chat datagrams, no text in any of them")

        with sc.step("relay -> direct once the block is lifted, nothing lost or repeated") as detail:
            nat1.cmd("iptables", "-D", *rule)
            lifted = time.monotonic()
            upgraded_at = None
            for n in range(6, 61):
                say(n)
                a.poll(0.3)
                if upgraded_at is None and any(re.search(r"path to up2 is direct now", line) for line in a.err):
                    upgraded_at = time.monotonic() - lifted
                if upgraded_at is not None and n >= 30:
                    break
            assert upgraded_at is not None, "the path never became direct"
            b.expect(rf"^From up1 \[{re.escape(sent[-1])}\]$", within=15)
            b.poll(1.0)  # anything repeated would arrive now
            got = [m.group(1) for line in b.out if (m := re.fullmatch(r"From up1 \[(m\d+ [^\]]*)\]", line))]
            assert got == sent, f"received {got}, sent {sent}"
            path, rtt = path_of(a, "up2")
            assert path == "direct", f"path is {path} after lifting the block"
            detail.append(
                f"direct {upgraded_at:.1f} s after the block was lifted; {len(got)}/{len(sent)} delivered once, "
                f"in order; rtt now {rtt:.1f} ms"
            )


SEALED_WORDS = "sealed, the midPeer cannot read this"
"""Every message of the upgrade step ends with these words: the capture at the midPeer looks for them."""


def relayed_chats(datagrams: list[Datagram]) -> list[Datagram]:
    """The ``relay`` and ``relayed`` datagrams that carry a ``chat``."""
    out = []
    for d in datagrams:
        try:
            obj = json.loads(d.payload)
        except ValueError:
            continue
        if isinstance(obj, dict) and obj.get("t") in ("relay", "relayed") and obj.get("data", {}).get("t") == "chat":
            out.append(d)
    return out


def run_forwarded(sc: Scenario, net: Any) -> None:
    """natdemo's "stage 2": the midPeer runs behind a NAT, reachable through a forwarded port, and relays
    for a pair that has no direct path (cone <-> symmetric)."""
    t = sc.t
    nat2 = net["nat2"]
    inside = NetSpec.private_ip(2, 2)
    forward = ["PREROUTING", "-i", nat2.wan, "-p", "udp", "--dport", "10082", "-j", "DNAT"]
    forward += ["--to-destination", f"{inside}:10082"]
    allow = ["FORWARD", "-i", nat2.wan, "-o", nat2.lan, "-p", "udp", "-d", inside, "--dport", "10082", "-j", "ACCEPT"]
    public = f"{NetSpec.nat_wan_ip(2)}:10082"
    with ExitStack() as stack, sc.step("a midPeer behind a NAT, on a forwarded port, relays") as detail:
        nat2.cmd("iptables", "-t", "nat", "-A", *forward)  # the port forward, as a home router's settings make it
        stack.callback(lambda: nat2.cmd("iptables", "-t", "nat", "-D", *forward))
        nat2.cmd("iptables", "-I", *allow)
        stack.callback(lambda: nat2.cmd("iptables", "-D", *allow))
        server = natchat(net["server"], t, "serve", "--timeout", "10", name="server")
        stack.callback(server.stop)
        midpeer = natchat(net["pri2_2"], t, "midpeer", name="midpeer")
        stack.callback(midpeer.stop)
        common = ("--server", SERVER_IP, "--midpeer", public, "--keepalive", str(KEEPALIVE))
        common += ("--relay-after", str(RELAY_AFTER))
        a = natchat(net["pri1_2"], t, "join", "fw1", *common, name="fw1")
        b = natchat(net["pri3_2"], t, "join", "fw2", *common, name="fw2")
        stack.callback(a.stop)
        stack.callback(b.stop)
        for proc in (a, b):
            proc.expect(r"registered; public address", stream="err")
        show_list(a, 2)
        a.type("@chat fw2 through the forwarded port")
        b.expect(r"^From fw1 \[through the forwarded port\]$", within=15)
        b.type("@chat fw1 and back")
        a.expect(r"^From fw2 \[and back\]$", within=15)
        path, rtt = path_of(a, "fw2")
        assert path == "relay", f"path is {path}"
        midpeer.expect(r"^relaying fw1 -> fw2$", within=2)
        # it saw each client at its NAT's public address (not at nat2's): the forward changes no source
        seen = {line.split()[1].rsplit(":", 1)[0] for line in midpeer.out if re.fullmatch(r"fw[12] \S+", line)}
        assert seen == {NetSpec.nat_wan_ip(1), NetSpec.nat_wan_ip(3)}, seen
        detail.append(
            f"midPeer on pri2_2 behind nat2, reached as {public}; cone <-> symmetric relayed, rtt {rtt:.1f} ms"
        )


def markdown(cells: list[Cell]) -> str:
    axis = ("no NAT", "cone", "symmetric")
    cell_of = {(kind(c.initiator), kind(c.responder)): c for c in cells if c.expected != "lan"}
    lines = [
        "# Which path natchat takes, by NAT kind (measured in Mininet)",
        "",
        "Rows: the peer that sends first; columns: the other peer. Each cell: the path `@path` reported "
        "(marked FAIL, with the expected one, where they differ), the round-trip time over it, and the "
        "time from `@chat` to the first delivery (a relayed pair waits `--relay-after` = "
        f"{RELAY_AFTER:g} s for a direct path first). Linux netfilter NATs: *cone* = MASQUERADE "
        "(endpoint-independent mapping), *symmetric* = MASQUERADE --random-fully; both filter by address "
        "and port, and drop unsolicited datagrams. Generated by `topologies/midpeer_scenario.py` "
        "(`make mininet-test`).",
        "",
        "| first \\ other | " + " | ".join(axis) + " |",
        "|---|" + "---|" * len(axis),
    ]
    for row in axis:
        out = []
        for col in axis:
            c = cell_of.get((row, col))
            out.append(describe(c) if c else "")
        lines.append(f"| **{row}** | " + " | ".join(out) + " |")
    lines.append("")
    for c in cells:
        if c.expected == "lan":
            lines.append(f"- {label(c)} ({c.initiator} -> {c.responder}): {describe(c)}")
    return "\n".join(lines) + "\n"


def describe(c: Cell) -> str:
    mark = "" if c.passed else f" **FAIL** (expected {c.expected})"
    if c.upgraded_s is not None:
        mark += f" (relayed first, direct after {c.upgraded_s:.1f} s)"
    rtt = f", rtt {c.rtt_ms:.1f} ms" if c.rtt_ms is not None else ""
    first = f", first delivery {c.first_delivery_s:.2f} s" if c.first_delivery_s is not None else ""
    return f"{c.path}{mark}{rtt}{first}"


def main(argv: list[str] | None = None) -> int:
    parser = scenario_parser(__doc__)
    parser.add_argument("--markdown", metavar="PATH", help="also write the grid as Markdown")
    args = parser.parse_args(argv)
    if not is_root():
        return 2
    transcript = Transcript(echo=args.demo)
    sc = Scenario(transcript)
    cells: list[Cell] = []
    try:
        with seed_network(KINDS, hosts_per_lan=HOSTS_PER_LAN, public_hosts=PUBLIC_HOSTS, wan_input=WAN_INPUT) as net:
            run_grid(sc, net, cells)
            run_upgrade(sc, net)
            run_forwarded(sc, net)
    except Exception:  # a broken setup must not stop the report (or the cleanup)
        sc.setup_failed()
    print_table(sc)
    grid = markdown(cells)
    print("\n" + grid)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(grid)
    return report(sc.rows, transcript, args, cells=[asdict(c) for c in cells])


if __name__ == "__main__":
    sys.exit(main())
