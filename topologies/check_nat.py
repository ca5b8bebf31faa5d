#!/usr/bin/python3
"""Prove that natnet's NAT boxes behave as claimed (run as root).

    /usr/bin/python3 topologies/check_nat.py [-v]

Builds a few small natnet networks, runs udp_agent.py inside the hosts and
checks mapping, filtering, timeouts, reachability and the conntrack trap.
Prints one line per check and exits 1 if any check failed.

All traffic stays inside the network namespaces this script creates.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from natnet import NetSpec, one_network_at_a_time, seed_network, seed_spec, zoo, zoo_network  # noqa: E402
from udp_agent import UdpAgent  # noqa: E402

ECHO_PORT = 10080  # echo agents on server and public1
OTHER_PORT = 10090  # a second echo agent on public1 (a different remote port)
QUIET = 1.0  # seconds to wait before concluding "nothing arrived"


@dataclass
class Result:
    name: str
    claim: str
    passed: bool
    observed: str


RESULTS: list[Result] = []
VERBOSE = False


def check(name: str, claim: str, passed: bool, observed: str) -> bool:
    RESULTS.append(Result(name, claim, passed, observed))
    if VERBOSE:
        print(f"  {'PASS' if passed else 'FAIL'} {name}: {observed}", flush=True)
    return passed


def conntrack_udp(node: Any) -> list[dict[str, Any]]:
    """conntrack -L -p udp in node's netns, parsed into dicts.

    Keys: timeout, unreplied, and orig/reply src, dst, sport, dport.
    """
    out, err, code = node.pexec(["conntrack", "-L", "-p", "udp"])
    if code != 0:
        raise RuntimeError(f"conntrack -L failed on {node.name}: {err}")
    entries = []
    for line in out.splitlines():
        if not line.startswith("udp"):
            continue
        fields = line.split()
        pairs = re.findall(r"(src|dst|sport|dport)=(\S+)", line)
        if len(pairs) < 8:
            continue
        orig = dict(pairs[:4])
        reply = dict(pairs[4:8])
        entries.append(
            {
                "timeout": int(fields[2]),
                "unreplied": "[UNREPLIED]" in line,
                "orig": orig,
                "reply": reply,
                "line": line.strip(),
            }
        )
    return entries


def find_entry(node: Any, **orig: str | int) -> dict[str, Any] | None:
    for entry in conntrack_udp(node):
        if all(entry["orig"].get(k) == str(v) for k, v in orig.items()):
            return entry
    return None


@contextmanager
def agents(net: Any, *specs: tuple[str, int, bool]) -> Iterator[list[UdpAgent]]:
    """Start (host, port, echo) agents; close them all afterwards."""
    with ExitStack() as stack:
        started = []
        for host, port, echo in specs:
            started.append(stack.enter_context(UdpAgent(net[host], port, echo=echo, lifetime=120)))
        yield started


def received(agent: UdpAgent, data: str, wait: float = QUIET) -> bool:
    return any(d.data == data for d in agent.collect(wait))


def fmt(addr: tuple[str, int] | None) -> str:
    return f"{addr[0]}:{addr[1]}" if addr else "no reply"


# ---------------------------------------------------------------------------
# Network A: nat1 cone, nat2 symmetric, different timeouts per NAT.
# ---------------------------------------------------------------------------

TIMEOUTS = {"nat1": (31, 121), "nat2": (47, 163)}


def check_network_a() -> None:
    t_build = time.monotonic()
    with seed_network(
        ("cone", "symmetric"),
        udp_timeout=(TIMEOUTS["nat1"][0], TIMEOUTS["nat2"][0]),
        udp_timeout_stream=(TIMEOUTS["nat1"][1], TIMEOUTS["nat2"][1]),
    ) as net:
        spec: NetSpec = seed_spec(("cone", "symmetric"))
        server, public1 = spec.server_ip(), spec.public_ip(1)
        nat1_ip = spec.nat_wan_ip(1)
        check("build", "seed network builds and starts", True, f"{time.monotonic() - t_build:.2f}s")
        with agents(
            net,
            ("server", ECHO_PORT, True),
            ("public1", ECHO_PORT, True),
            ("public1", OTHER_PORT, True),
            ("pri1_2", 10081, False),
            ("pri2_2", 10081, False),
            ("pri1_3", 10082, False),
        ) as (_srv, pub, pub_other, p12, p22, p13):
            # (a) cone: endpoint-independent mapping, port preserved.
            t_flow = time.monotonic()
            m_srv, m_pub = p12.ask_mapping(server, ECHO_PORT), p12.ask_mapping(public1, ECHO_PORT)
            check(
                "a cone mapping",
                "cone: pri1_2:10081 seen with the same port by server and public1",
                m_srv is not None and m_srv == m_pub and m_srv[0] == nat1_ip,
                f"server saw {fmt(m_srv)}, public1 saw {fmt(m_pub)}",
            )
            check(
                "a cone port kept",
                "cone: the source port is preserved",
                m_srv is not None and m_srv[1] == 10081,
                f"mapped port {fmt(m_srv)}",
            )

            # (b) symmetric: a new external port per destination.
            s_srv, s_pub = p22.ask_mapping(server, ECHO_PORT), p22.ask_mapping(public1, ECHO_PORT)
            check(
                "b symmetric mapping",
                "symmetric: pri2_2:10081 seen with different ports by server and public1",
                s_srv is not None and s_pub is not None and s_srv[1] != s_pub[1],
                f"server saw {fmt(s_srv)}, public1 saw {fmt(s_pub)}",
            )

            # (c) filtering is address-and-port-dependent, punching opens it.
            mapped = p13.ask_mapping(server, ECHO_PORT)
            assert mapped is not None, "pri1_3 got no reply from server"
            pub_other.send(*mapped, "c-unsolicited-before")
            before = received(p13, "c-unsolicited-before")
            check(
                "c dropped before punch",
                "public1:10090 -> nat1 mapping of pri1_3 before pri1_3 sent to public1: dropped",
                not before,
                f"to {fmt(mapped)}: {'received' if before else 'not received'}",
            )
            p13.send(public1, ECHO_PORT, "c-punch")
            # Send back only once the punch has passed nat1 (else: the trap).
            punched = any(d.data == "c-punch" for d in pub.collect(QUIET))
            pub.send(*mapped, "c-after")
            after = received(p13, "c-after")
            check(
                "c open after punch",
                "after pri1_3 sent to public1:10080, public1:10080 -> mapping: received",
                punched and after,
                f"punch {'arrived' if punched else 'lost'}, reply {'received' if after else 'not received'}",
            )
            pub_other.send(*mapped, "c-other-port")
            other = received(p13, "c-other-port")
            check(
                "c port-dependent",
                "still dropped from public1:10090 (hole is per remote address AND port)",
                not other,
                "received" if other else "not received",
            )

            # (d) conntrack timeouts are per NAT (per netns).
            for nat, (timeout, stream) in TIMEOUTS.items():
                got = (
                    net[nat].conntrack_sysctl("nf_conntrack_udp_timeout"),
                    net[nat].conntrack_sysctl("nf_conntrack_udp_timeout_stream"),
                )
                check(
                    f"d sysctl {nat}",
                    f"{nat} udp_timeout/stream = {timeout}/{stream}",
                    got == (timeout, stream),
                    f"read back {got[0]}/{got[1]}",
                )
            with open("/proc/sys/net/netfilter/nf_conntrack_udp_timeout") as f:
                root = f.read().strip()
            check(
                "d root netns untouched",
                "root netns keeps its own value",
                int(root) not in (TIMEOUTS["nat1"][0], TIMEOUTS["nat2"][0]),
                f"root nf_conntrack_udp_timeout = {root}",
            )
            for nat, host in (("nat1", p12), ("nat2", p22)):
                host.send(public1, 10095, "d-unreplied")  # nobody listens there
                time.sleep(0.2)
                entry = find_entry(net[nat], dport=10095)
                want = TIMEOUTS[nat][0]
                check(
                    f"d unreplied {nat}",
                    f"unreplied flow through {nat} expires in <= {want}s",
                    entry is not None and entry["unreplied"] and want - 2 <= entry["timeout"] <= want,
                    f"conntrack timeout {entry['timeout'] if entry else 'no entry'}",
                )
            # A replied flow older than 2 s gets the stream timeout on its next packet.
            time.sleep(max(0.0, t_flow + 2.5 - time.monotonic()))
            p12.ask_mapping(server, ECHO_PORT)
            entry = find_entry(net["nat1"], src=spec.private_ip(1, 2), dport=ECHO_PORT, dst=server)
            want = TIMEOUTS["nat1"][1]
            check(
                "d stream nat1",
                f"replied flow > 2 s old through nat1 expires in <= {want}s",
                entry is not None and want - 2 <= entry["timeout"] <= want,
                f"conntrack timeout {entry['timeout'] if entry else 'no entry'}",
            )

            # (e) the private LAN is not reachable from outside.
            route = net["server"].cmd("ip route get 192.168.1.2 2>&1").strip()
            check("e no route", "server has no route to 192.168.1.2", "unreachable" in route.lower(), route)
            out = net["pri1_2"].cmd(f"ping -c1 -W1 {server}")
            check(
                "e outbound ok",
                "control: pri1_2 can ping server through nat1",
                " 1 received" in out,
                "1 received" if " 1 received" in out else "lost",
            )
            net["server"].cmd("ip route add 192.168.1.0/24 via", nat1_ip)
            try:
                ping = net["server"].cmd("ping -c1 -W1 192.168.1.2")
                with UdpAgent(net["server"], 10099, lifetime=20) as srv2:
                    srv2.send(spec.private_ip(1, 2), 10081, "e-direct")
                    direct = received(p12, "e-direct")
            finally:
                net["server"].cmd("ip route del 192.168.1.0/24 via", nat1_ip)
            check(
                "e forward drop",
                "even with a route via nat1, server cannot reach 192.168.1.2",
                " 0 received" in ping and not direct,
                f"ping {'lost' if ' 0 received' in ping else 'answered'}, "
                f"UDP {'received' if direct else 'not received'}",
            )

            # (f) no hairpinning: a LAN host cannot use its own NAT's public address.
            p12.send(*mapped, "f-hairpin")
            hairpin = received(p13, "f-hairpin")
            check(
                "f no hairpin",
                "pri1_2 -> nat1 public mapping of pri1_3: not delivered (no hairpinning)",
                not hairpin,
                "received" if hairpin else "not received",
            )

            # (g) port collision: cone mapping is only as good as port preservation.
            with UdpAgent(net["pri1_3"], 10081, lifetime=20) as p13b:
                g_srv = p13b.ask_mapping(server, ECHO_PORT)
                g_other = p13b.ask_mapping(public1, OTHER_PORT)
            check(
                "g collision",
                "pri1_3:10081 while pri1_2:10081 holds 10.0.0.1:10081: nat1 picks another "
                "port, then reuses it for every destination (mapping stays "
                "endpoint-independent, only port preservation is lost)",
                g_srv is not None and g_srv[1] != 10081 and g_srv == g_other,
                f"server saw {fmt(g_srv)}, public1:10090 saw {fmt(g_other)}",
            )


# ---------------------------------------------------------------------------
# Networks B..F: the conntrack trap (cone NATs on both sides).
# ---------------------------------------------------------------------------


def punch(net: Any, spec: NetSpec, port: int, order: str) -> dict[str, Any]:
    """pri1_2 and pri2_2 learn their mappings from server, then punch.

    order: "pri1_2" or "pri2_2" sends its first packet to the other's mapping
    and it arrives before the other one sends; "together": both send at once
    (their packets cross in flight when the WAN links have a delay).
    """
    server = spec.server_ip()
    with agents(net, ("server", ECHO_PORT, True), ("pri1_2", port, False), ("pri2_2", port, False)) as (_, a, b):
        map_a = a.ask_mapping(server, ECHO_PORT)
        map_b = b.ask_mapping(server, ECHO_PORT)
        assert map_a and map_b, "no mapping from server"
        if order == "together":
            a.send(*map_b, "punch-a")
            b.send(*map_a, "punch-b")
        else:
            first, first_to, second, second_to = (a, map_b, b, map_a) if order == "pri1_2" else (b, map_a, a, map_b)
            first.send(*first_to, "punch-first")
            time.sleep(0.3)  # it has arrived (and been refused) before the other sends
            second.send(*second_to, "punch-second")
        time.sleep(0.5)
        for attempt in range(3):  # keep trying both ways for a while
            a.send(*map_b, f"a-{attempt}")
            b.send(*map_a, f"b-{attempt}")
            time.sleep(0.2)
        got_a = [d for d in a.collect(QUIET) if d.data.startswith(("punch", "b-"))]
        got_b = [d for d in b.collect(0.2) if d.data.startswith(("punch", "a-"))]
        # External port each NAT uses for the peer flow = reply direction's dport.
        a_out = find_entry(net["nat1"], src=spec.private_ip(1, 2), sport=port, dst=spec.nat_wan_ip(2))
        b_out = find_entry(net["nat2"], src=spec.private_ip(2, 2), sport=port, dst=spec.nat_wan_ip(1))
        return {
            "map_a": map_a[1],
            "map_b": map_b[1],
            "a_to_b": int(a_out["reply"]["dport"]) if a_out else None,
            "b_to_a": int(b_out["reply"]["dport"]) if b_out else None,
            "got_a": len(got_a),
            "got_b": len(got_b),
            "nat1": [e["line"] for e in conntrack_udp(net["nat1"])],
            "nat2": [e["line"] for e in conntrack_udp(net["nat2"])],
        }


TRAP_CASES = [
    # name, wan_input, wan delay (ms), order, expect success
    ("trap pri2_2 first", "accept", 0, "pri2_2", False),
    ("trap pri1_2 first", "accept", 0, "pri1_2", False),
    ("crossing in flight", "accept", 50, "together", True),
    ("wan_input=drop", "drop", 0, "pri2_2", True),
    ("wan_input=drop rev", "drop", 0, "pri1_2", True),
]


def check_trap() -> None:
    for name, policy, delay, order, works in TRAP_CASES:
        with seed_network(("cone", "cone"), wan_input=policy, wan_delay_ms=delay) as net:
            r = punch(net, seed_spec(("cone", "cone")), 10081, order)
        if VERBOSE:
            print(f"  [{name}] conntrack afterwards:")
            for nat in ("nat1", "nat2"):
                for line in r[nat]:
                    print(f"    {nat}: {line}")
        kept = r["a_to_b"] == r["map_a"] and r["b_to_a"] == r["map_b"]
        through = r["got_a"] > 0 and r["got_b"] > 0
        if works:
            claim = (
                f"wan_input={policy}, delay {delay} ms, {order} first: both NATs keep "
                "their mapping and both peers receive"
            )
            passed = kept and through
        else:
            trapped = "nat1" if order == "pri2_2" else "nat2"
            claim = (
                f"wan_input={policy}, {order} first: {trapped} gives the second sender "
                "a NEW port toward the peer, nothing gets through"
            )
            moved = (r["a_to_b"] != r["map_a"]) if trapped == "nat1" else (r["b_to_a"] != r["map_b"])
            passed = moved and r["got_a"] == 0 and r["got_b"] == 0
        check(
            name,
            claim,
            passed,
            f"pri1_2 {r['map_a']}->{r['a_to_b']}, pri2_2 {r['map_b']}->{r['b_to_a']} "
            f"(port to server -> port to peer); received {r['got_a']}/{r['got_b']}",
        )


# ---------------------------------------------------------------------------
# Network Z: the NAT zoo (natnet.zoo(): every kind in one network).
# ---------------------------------------------------------------------------

ZOO_PORT = 10085  # the agents' port on the zoo's private hosts
TRAP_PORT = 10099  # unsolicited datagrams go to this port of each NAT's WAN address


def check_zoo() -> None:
    z = zoo()
    spec = z.spec
    srv_ip, pub_ip = spec.server_ip(), spec.public_ip(1)

    def nat_number(host: str) -> int:
        return int(z.nat_of[host][3:])

    with zoo_network() as net, ExitStack() as stack:
        start = lambda host, port=ZOO_PORT, echo=False: stack.enter_context(  # noqa: E731
            UdpAgent(net[host], port, echo=echo, lifetime=120)
        )
        start("server", ECHO_PORT, True)
        start("public1", ECHO_PORT, True)
        trap_sender = start("public1", OTHER_PORT)

        # open: no NAT at all.
        opened = start(z.sites["open"][0][0])
        seen = opened.ask_mapping(srv_ip, ECHO_PORT)
        check(
            "z open",
            "open: the server sees a public host at its own address and port",
            seen == (net[z.sites["open"][0][0]].IP(), ZOO_PORT),
            f"{z.sites['open'][0][0]} seen as {fmt(seen)}",
        )

        # easy / hard, with and without the trap: mapping and what unsolicited input leaves behind.
        for kind in ("easy", "easy-trap", "hard", "hard-trap"):
            host = z.sites[kind][0][0]
            n = nat_number(host)
            agent = start(host)
            to_server, to_public = agent.ask_mapping(srv_ip, ECHO_PORT), agent.ask_mapping(pub_ip, ECHO_PORT)
            same = to_server is not None and to_server == to_public
            eim = kind.startswith("easy")
            check(
                f"z {kind} mapping",
                f"{kind}: "
                + ("one public port for every destination (EIM)" if eim else "a new public port per destination"),
                to_server is not None and to_public is not None and same == eim,
                f"{host} -> server {fmt(to_server)}, -> public1 {fmt(to_public)}",
            )
            trap_sender.send(spec.nat_wan_ip(n), TRAP_PORT, "unsolicited")
            time.sleep(0.3)
            entry = find_entry(net[f"nat{n}"], src=pub_ip, dst=spec.nat_wan_ip(n), dport=TRAP_PORT)
            trap = kind.endswith("-trap")
            check(
                f"z {kind} input",
                f"{kind}: an unsolicited datagram to the WAN address "
                + ("leaves a conntrack entry (the trap)" if trap else "is dropped and leaves no conntrack entry"),
                (entry is not None) == trap,
                f"conntrack in nat{n}: {entry['line'] if entry else 'no entry'}",
            )

        # cgnat: two home NATs share the CGN's public address; no hairpinning.
        a_host, b_host = z.sites["cgnat"][0][0], z.sites["cgnat"][1][0]
        a, b = start(a_host), start(b_host)
        a_seen, b_seen = a.ask_mapping(srv_ip, ECHO_PORT), b.ask_mapping(srv_ip, ECHO_PORT)
        cgn_ip = spec.public_ip_of(nat_number(a_host))
        a_pub = a.ask_mapping(pub_ip, ECHO_PORT)
        check(
            "z cgnat shared",
            "cgnat: two home NATs behind one CGN appear at one public address (the CGN's), "
            "mapping endpoint-independent through both NATs",
            a_seen is not None and b_seen is not None and a_seen[0] == b_seen[0] == cgn_ip and a_pub == a_seen,
            f"{a_host} as {fmt(a_seen)} (to public1 {fmt(a_pub)}), {b_host} as {fmt(b_seen)}; "
            f"home WANs {spec.wan_ip(nat_number(a_host))}, {spec.wan_ip(nat_number(b_host))}",
        )
        if a_seen and b_seen:
            for _ in range(3):  # both send to the other's public address: holes open at both home NATs
                a.send(b_seen[0], b_seen[1], "hairpin-a")
                b.send(a_seen[0], a_seen[1], "hairpin-b")
                time.sleep(0.1)
            got_b, got_a = received(b, "hairpin-a"), received(a, "hairpin-b")
            check(
                "z cgnat no hairpin",
                "cgnat: a subscriber's datagram to another's public address (the CGN's) is not delivered",
                not got_a and not got_b,
                f"received {int(got_a)}/{int(got_b)}",
            )

        # cgnat-hairpin: port blocks, static DNAT back, hairpinning.
        a_host, b_host = z.sites["cgnat-hairpin"][0][0], z.sites["cgnat-hairpin"][1][0]
        na, nb = nat_number(a_host), nat_number(b_host)
        a, b = start(a_host), start(b_host)
        a_seen, b_seen = a.ask_mapping(srv_ip, ECHO_PORT), b.ask_mapping(srv_ip, ECHO_PORT)
        block_a, block_b = spec.port_block(na), spec.port_block(nb)
        assert block_a and block_b
        in_blocks = (
            a_seen is not None
            and b_seen is not None
            and block_a[0] <= a_seen[1] <= block_a[1]
            and block_b[0] <= b_seen[1] <= block_b[1]
            and a_seen[0] == b_seen[0] == spec.public_ip_of(na)
        )
        check(
            "z cgnat-hairpin blocks",
            "cgnat-hairpin: each subscriber's public port lies in its own block (RFC 7422 style)",
            in_blocks,
            f"{a_host} as {fmt(a_seen)} (block {block_a[0]}-{block_a[1]}), "
            f"{b_host} as {fmt(b_seen)} (block {block_b[0]}-{block_b[1]})",
        )
        if a_seen and b_seen:
            for _ in range(3):
                a.send(b_seen[0], b_seen[1], "hairpin-a")
                b.send(a_seen[0], a_seen[1], "hairpin-b")
                time.sleep(0.1)
            at_b = [d for d in b.collect(QUIET) if d.data == "hairpin-a"]
            at_a = [d for d in a.collect(QUIET) if d.data == "hairpin-b"]
            sources = {(d.ip, d.port) for d in at_b}
            check(
                "z cgnat-hairpin hairpins",
                "cgnat-hairpin: subscribers reach each other at the CGN's public address, each seen from "
                "the other's public address",
                bool(at_a) and bool(at_b) and sources == {a_seen},
                f"received {len(at_a)}/{len(at_b)}; {b_host} saw {sorted(sources)}",
            )
            prober = start("public1", OTHER_PORT + 1)
            prober.send(a_seen[0], a_seen[1], "unsolicited")
            got = received(a, "unsolicited")
            check(
                "z cgnat-hairpin filters",
                "cgnat-hairpin: the static DNAT reaches the home NAT, which still drops what it did not ask for",
                not got,
                f"public1:{OTHER_PORT + 1} -> {fmt(a_seen)}: {'received' if got else 'dropped'}",
            )

        # same-lan: two peers behind one NAT reach each other on the LAN only.
        a_host, b_host = z.sites["same-lan"][0][:2]
        a, b = start(a_host), start(b_host)
        b_public = b.ask_mapping(srv_ip, ECHO_PORT)
        a.send(net[b_host].IP(), ZOO_PORT, "lan")
        on_lan = received(b, "lan")
        if b_public:
            a.send(b_public[0], b_public[1], "via-public")
        via_public = received(b, "via-public")
        check(
            "z same-lan",
            "same-lan: the LAN address works, the public one does not (no hairpinning)",
            on_lan and not via_public,
            f"{a_host} -> {b_host} LAN {'received' if on_lan else 'dropped'}, "
            f"via {fmt(b_public)} {'received' if via_public else 'dropped'}",
        )


# ---------------------------------------------------------------------------
# Network D: delay and loss; and the mn command line.
# ---------------------------------------------------------------------------


def check_link_shaping() -> None:
    delay_ms, loss_pct, count = 20, 20, 200
    with seed_network(("cone", "cone"), wan_delay_ms=delay_ms, loss_pct=loss_pct) as net:
        rules = net["nat1"].cmd("iptables -t raw -S PREROUTING")
        ping = net["pri1_2"].cmd("ping -c10 -i0.2 -W2 10.0.0.3")
        with agents(net, ("server", ECHO_PORT, False), ("pri1_2", 10081, False)) as (srv, p12):
            for i in range(count):
                p12.send("10.0.0.3", ECHO_PORT, f"h-{i}")
            arrived = len([d for d in srv.collect(1.5) if d.data.startswith("h-")])
    match = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)", ping)
    rtt_min = float(match.group(1)) if match else None
    check(
        "h delay",
        f"wan_delay_ms={delay_ms}: RTT pri1_2<->server (one NAT crossing each way) >= {2 * delay_ms} ms",
        "NFQUEUE" in rules and rtt_min is not None and 2 * delay_ms <= rtt_min < 2 * delay_ms + 20,
        f"min RTT {rtt_min} ms over 10 pings",
    )
    expected = count * (1 - loss_pct / 100)
    check(
        "h loss",
        f"loss_pct={loss_pct}: about {expected:.0f} of {count} UDP datagrams pri1_2 -> server arrive",
        "statistic" in rules and abs(arrived - expected) <= 30,
        f"{arrived} of {count} arrived",
    )


def check_mn_cli() -> None:
    script = (
        "nat1 sysctl -n net.netfilter.nf_conntrack_udp_timeout\n"
        "nat2 iptables -t nat -S POSTROUTING\n"
        "pri1_2 ping -c1 -W1 server\n"
    )
    with tempfile.NamedTemporaryFile("w", suffix=".mn", delete=False) as f:
        f.write(script)
    try:
        with one_network_at_a_time():  # mn builds natnet's nodes too: not while another network is up
            proc = subprocess.run(
                [
                    "mn",
                    "--custom",
                    os.path.join(HERE, "natnet.py"),
                    "--topo",
                    "seed,cone,symmetric,nat1_timeout=41",
                    "--switch",
                    "lxbr",
                    "--controller",
                    "none",
                    "--test",
                    "none",
                    "--post",
                    f.name,
                ],
                capture_output=True,
                text=True,
                timeout=120,
                stdin=subprocess.DEVNULL,
            )
    finally:
        os.unlink(f.name)
    out = proc.stdout + proc.stderr
    timeout_ok = re.search(r"^41\r?$", out, re.MULTILINE) is not None
    check(
        "i mn --custom",
        "mn --topo seed,cone,symmetric,nat1_timeout=41 builds the same network",
        proc.returncode == 0 and timeout_ok and "--random-fully" in out and " 1 received" in out,
        f"exit {proc.returncode}; nat1 timeout 41 {'ok' if timeout_ok else 'missing'}; "
        f"nat2 --random-fully {'ok' if '--random-fully' in out else 'missing'}; "
        f"ping {'ok' if ' 1 received' in out else 'failed'}",
    )


def main() -> int:
    global VERBOSE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--only", metavar="STEP", help="run one group of checks: network-a, trap, zoo, shaping, mn")
    args = parser.parse_args()
    VERBOSE = args.verbose
    if os.geteuid() != 0:
        print("check_nat.py must run as root", file=sys.stderr)
        return 2
    started = time.monotonic()
    groups: dict[str, Callable[[], None]] = {
        "network-a": check_network_a,
        "trap": check_trap,
        "zoo": check_zoo,
        "shaping": check_link_shaping,
        "mn": check_mn_cli,
    }
    if args.only is not None and args.only not in groups:
        print(f"error: --only takes one of {', '.join(groups)}, not {args.only!r}", file=sys.stderr)
        return 2
    steps = [groups[args.only]] if args.only else list(groups.values())
    for step in steps:
        try:
            step()
        except Exception as exc:  # report and go on with the other networks
            check(step.__name__, "runs without error", False, f"{type(exc).__name__}: {exc}")
    width = max(len(r.name) for r in RESULTS)
    print(f"{'check':<{width}}  result  observed")
    for r in RESULTS:
        print(f"{r.name:<{width}}  {'PASS' if r.passed else 'FAIL':<6}  {r.observed}")
        if VERBOSE:
            print(f"{'':<{width}}          claim: {r.claim}")
    failed = sum(not r.passed for r in RESULTS)
    print(f"{len(RESULTS) - failed} passed, {failed} failed in {time.monotonic() - started:.1f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
