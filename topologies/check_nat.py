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

from natnet import NetSpec, seed_network, seed_spec  # noqa: E402
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
        entries.append({
            "timeout": int(fields[2]),
            "unreplied": "[UNREPLIED]" in line,
            "orig": orig,
            "reply": reply,
            "line": line.strip(),
        })
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
            started.append(stack.enter_context(UdpAgent(net[host], port, echo=echo,
                                                         lifetime=120)))
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
    with seed_network(("cone", "symmetric"),
                      udp_timeout=(TIMEOUTS["nat1"][0], TIMEOUTS["nat2"][0]),
                      udp_timeout_stream=(TIMEOUTS["nat1"][1], TIMEOUTS["nat2"][1])) as net:
        spec: NetSpec = seed_spec(("cone", "symmetric"))
        server, public1 = spec.server_ip(), spec.public_ip(1)
        nat1_ip = spec.nat_wan_ip(1)
        check("build", "seed network builds and starts", True,
              f"{time.monotonic() - t_build:.2f}s")
        with agents(net, ("server", ECHO_PORT, True), ("public1", ECHO_PORT, True),
                    ("public1", OTHER_PORT, True), ("pri1_2", 10081, False),
                    ("pri2_2", 10081, False), ("pri1_3", 10082, False)) as (
                        srv, pub, pub_other, p12, p22, p13):

            # (a) cone: endpoint-independent mapping, port preserved.
            t_flow = time.monotonic()
            m_srv, m_pub = p12.ask_mapping(server, ECHO_PORT), p12.ask_mapping(public1, ECHO_PORT)
            check("a cone mapping",
                  "cone: pri1_2:10081 seen with the same port by server and public1",
                  m_srv is not None and m_srv == m_pub and m_srv[0] == nat1_ip,
                  f"server saw {fmt(m_srv)}, public1 saw {fmt(m_pub)}")
            check("a cone port kept", "cone: the source port is preserved",
                  m_srv is not None and m_srv[1] == 10081, f"mapped port {fmt(m_srv)}")

            # (b) symmetric: a new external port per destination.
            s_srv, s_pub = p22.ask_mapping(server, ECHO_PORT), p22.ask_mapping(public1, ECHO_PORT)
            check("b symmetric mapping",
                  "symmetric: pri2_2:10081 seen with different ports by server and public1",
                  s_srv is not None and s_pub is not None and s_srv[1] != s_pub[1],
                  f"server saw {fmt(s_srv)}, public1 saw {fmt(s_pub)}")

            # (c) filtering is address-and-port-dependent, punching opens it.
            mapped = p13.ask_mapping(server, ECHO_PORT)
            assert mapped is not None, "pri1_3 got no reply from server"
            pub_other.send(*mapped, "c-unsolicited-before")
            before = received(p13, "c-unsolicited-before")
            check("c dropped before punch",
                  "public1:10090 -> nat1 mapping of pri1_3 before pri1_3 sent to public1: dropped",
                  not before, f"to {fmt(mapped)}: {'received' if before else 'not received'}")
            p13.send(public1, ECHO_PORT, "c-punch")
            pub.send(*mapped, "c-after")
            after = received(p13, "c-after")
            check("c open after punch",
                  "after pri1_3 sent to public1:10080, public1:10080 -> mapping: received",
                  after, "received" if after else "not received")
            pub_other.send(*mapped, "c-other-port")
            other = received(p13, "c-other-port")
            check("c port-dependent",
                  "still dropped from public1:10090 (hole is per remote address AND port)",
                  not other, "received" if other else "not received")

            # (d) conntrack timeouts are per NAT (per netns).
            for nat, (timeout, stream) in TIMEOUTS.items():
                got = (net[nat].conntrack_sysctl("nf_conntrack_udp_timeout"),
                       net[nat].conntrack_sysctl("nf_conntrack_udp_timeout_stream"))
                check(f"d sysctl {nat}", f"{nat} udp_timeout/stream = {timeout}/{stream}",
                      got == (timeout, stream), f"read back {got[0]}/{got[1]}")
            root = open("/proc/sys/net/netfilter/nf_conntrack_udp_timeout").read().strip()
            check("d root netns untouched", "root netns keeps its own value",
                  int(root) not in (TIMEOUTS["nat1"][0], TIMEOUTS["nat2"][0]),
                  f"root nf_conntrack_udp_timeout = {root}")
            for nat, host in (("nat1", p12), ("nat2", p22)):
                host.send(public1, 10095, "d-unreplied")  # nobody listens there
                time.sleep(0.2)
                entry = find_entry(net[nat], dport=10095)
                want = TIMEOUTS[nat][0]
                check(f"d unreplied {nat}",
                      f"unreplied flow through {nat} expires in <= {want}s",
                      entry is not None and entry["unreplied"]
                      and want - 2 <= entry["timeout"] <= want,
                      f"conntrack timeout {entry['timeout'] if entry else 'no entry'}")
            # A replied flow older than 2 s gets the stream timeout on its next packet.
            time.sleep(max(0.0, t_flow + 2.5 - time.monotonic()))
            p12.ask_mapping(server, ECHO_PORT)
            entry = find_entry(net["nat1"], src=spec.private_ip(1, 2), dport=ECHO_PORT,
                               dst=server)
            want = TIMEOUTS["nat1"][1]
            check("d stream nat1",
                  f"replied flow > 2 s old through nat1 expires in <= {want}s",
                  entry is not None and want - 2 <= entry["timeout"] <= want,
                  f"conntrack timeout {entry['timeout'] if entry else 'no entry'}")

            # (e) the private LAN is not reachable from outside.
            route = net["server"].cmd("ip route get 192.168.1.2 2>&1").strip()
            check("e no route", "server has no route to 192.168.1.2",
                  "unreachable" in route.lower(), route)
            out = net["pri1_2"].cmd(f"ping -c1 -W1 {server}")
            check("e outbound ok", "control: pri1_2 can ping server through nat1",
                  " 1 received" in out, "1 received" if " 1 received" in out else "lost")
            net["server"].cmd("ip route add 192.168.1.0/24 via", nat1_ip)
            try:
                ping = net["server"].cmd("ping -c1 -W1 192.168.1.2")
                with UdpAgent(net["server"], 10099, lifetime=20) as srv2:
                    srv2.send(spec.private_ip(1, 2), 10081, "e-direct")
                    direct = received(p12, "e-direct")
            finally:
                net["server"].cmd("ip route del 192.168.1.0/24 via", nat1_ip)
            check("e forward drop",
                  "even with a route via nat1, server cannot reach 192.168.1.2",
                  " 0 received" in ping and not direct,
                  f"ping {'lost' if ' 0 received' in ping else 'answered'}, "
                  f"UDP {'received' if direct else 'not received'}")

            # (f) no hairpinning: a LAN host cannot use its own NAT's public address.
            p12.send(*mapped, "f-hairpin")
            hairpin = received(p13, "f-hairpin")
            check("f no hairpin",
                  "pri1_2 -> nat1 public mapping of pri1_3: not delivered (no hairpinning)",
                  not hairpin, "received" if hairpin else "not received")

            # (g) port collision: cone mapping is only as good as port preservation.
            with UdpAgent(net["pri1_3"], 10081, lifetime=20) as p13b:
                g_srv = p13b.ask_mapping(server, ECHO_PORT)
                g_other = p13b.ask_mapping(public1, OTHER_PORT)
            check("g collision",
                  "pri1_3:10081 while pri1_2:10081 -> server: nat1 picks another port "
                  "toward server but keeps 10081 toward public1:10090",
                  g_srv is not None and g_other is not None and g_srv[1] != 10081
                  and g_other[1] == 10081,
                  f"server saw {fmt(g_srv)}, public1:10090 saw {fmt(g_other)}")


# ---------------------------------------------------------------------------
# Networks B and C: the conntrack trap (cone on both sides).
# ---------------------------------------------------------------------------

def punch(net: Any, spec: NetSpec, port: int, first: str) -> dict[str, Any]:
    """pri1_2 and pri2_2 learn their mappings from server, then punch.

    first: "pri2_2" sends to pri1_2's mapping before pri1_2 sends to
    pri2_2's (the trap order), or "pri1_2" (the harmless order).
    """
    server = spec.server_ip()
    with agents(net, ("server", ECHO_PORT, True), ("pri1_2", port, False),
                ("pri2_2", port, False)) as (_srv, a, b):
        map_a = a.ask_mapping(server, ECHO_PORT)
        map_b = b.ask_mapping(server, ECHO_PORT)
        assert map_a and map_b, "no mapping from server"
        first_agent, first_to, second_agent, second_to = (
            (b, map_a, a, map_b) if first == "pri2_2" else (a, map_b, b, map_a))
        first_agent.send(*first_to, "punch-1")
        time.sleep(0.3)  # let it arrive before the other side sends
        second_agent.send(*second_to, "punch-2")
        time.sleep(0.3)
        # One more round each way, then see what got through.
        for attempt in range(3):
            a.send(*map_b, f"a-{attempt}")
            b.send(*map_a, f"b-{attempt}")
            time.sleep(0.2)
        got_a = [d for d in a.collect(QUIET) if d.data.startswith(("punch", "b-"))]
        got_b = [d for d in b.collect(0.2) if d.data.startswith(("punch", "a-"))]
        a_entry = find_entry(net["nat1"], src=spec.private_ip(1, 2), dst=spec.nat_wan_ip(2))
        b_side = find_entry(net["nat2"], src=spec.nat_wan_ip(1), dst=spec.nat_wan_ip(2))
        return {
            "map_a": map_a, "map_b": map_b, "got_a": got_a, "got_b": got_b,
            # nat1's external port for pri1_2 -> pri2_2 (reply direction's dport)
            "a_port_to_b": int(a_entry["reply"]["dport"]) if a_entry else None,
            "nat1_entries": [e["line"] for e in conntrack_udp(net["nat1"])],
            "nat2_sees_from": int(b_side["orig"]["sport"]) if b_side else None,
        }


def check_trap() -> None:
    for policy in ("accept", "drop"):
        with seed_network(("cone", "cone"), wan_input=policy) as net:
            spec = seed_spec(("cone", "cone"))
            good = punch(net, spec, 10083, first="pri1_2")
            trap = punch(net, spec, 10081, first="pri2_2")
        if VERBOSE:
            print(f"  [{policy}] nat1 conntrack after trap order:")
            for line in trap["nat1_entries"]:
                print("    " + line)
        good_ok = bool(good["got_a"]) and bool(good["got_b"])
        check(f"trap control ({policy})",
              f"wan_input={policy}: pri1_2 sends first -> both sides receive",
              good_ok and good["a_port_to_b"] == good["map_a"][1],
              f"nat1 port toward pri2_2 {good['a_port_to_b']} (to server "
              f"{good['map_a'][1]}); pri1_2 got {len(good['got_a'])}, "
              f"pri2_2 got {len(good['got_b'])}")
        trapped = trap["a_port_to_b"] is not None and trap["a_port_to_b"] != trap["map_a"][1]
        if policy == "accept":
            check("trap (accept)",
                  "wan_input=accept: pri2_2 sends first -> nat1 gives pri1_2 a NEW port "
                  "toward pri2_2 and nothing gets through",
                  trapped and not trap["got_a"] and not trap["got_b"],
                  f"nat1 port toward server {trap['map_a'][1]}, toward pri2_2 "
                  f"{trap['a_port_to_b']}; nat2 sees 10.0.0.1:{trap['nat2_sees_from']}; "
                  f"pri1_2 got {len(trap['got_a'])}, pri2_2 got {len(trap['got_b'])}")
        else:
            check("no trap (drop)",
                  "wan_input=drop: same order, nat1 keeps the port and both sides receive",
                  not trapped and bool(trap["got_a"]) and bool(trap["got_b"]),
                  f"nat1 port toward pri2_2 {trap['a_port_to_b']} (to server "
                  f"{trap['map_a'][1]}); pri1_2 got {len(trap['got_a'])}, "
                  f"pri2_2 got {len(trap['got_b'])}")


# ---------------------------------------------------------------------------
# Network D: delay and loss; and the mn command line.
# ---------------------------------------------------------------------------

def check_link_shaping() -> None:
    with seed_network(("cone", "cone"), wan_delay_ms=20, loss_pct=5) as net:
        qdisc = net["nat1"].cmd("tc qdisc show dev nat1-eth0")
        out = net["pri1_2"].cmd("ping -c5 -i0.2 -W2 10.0.0.3")
    match = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)", out)
    rtt_min = float(match.group(1)) if match else None
    check("h delay/loss",
          "wan_delay_ms=20, loss_pct=5: netem on nat1-eth0, RTT pri1_2<->server >= 40 ms",
          "delay 20ms" in qdisc and "loss 5%" in qdisc and rtt_min is not None
          and 40.0 <= rtt_min < 80.0,
          f"min RTT {rtt_min} ms; qdisc: {' '.join(qdisc.split()[:12])}")


def check_mn_cli() -> None:
    script = ("nat1 sysctl -n net.netfilter.nf_conntrack_udp_timeout\n"
              "nat2 iptables -t nat -S POSTROUTING\n"
              "pri1_2 ping -c1 -W1 server\n")
    with tempfile.NamedTemporaryFile("w", suffix=".mn", delete=False) as f:
        f.write(script)
    try:
        proc = subprocess.run(
            ["mn", "--custom", os.path.join(HERE, "natnet.py"),
             "--topo", "seed,cone,symmetric,nat1_timeout=41",
             "--switch", "lxbr", "--controller", "none", "--test", "none",
             "--post", f.name],
            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    finally:
        os.unlink(f.name)
    out = proc.stdout
    check("i mn --custom",
          "mn --topo seed,cone,symmetric,nat1_timeout=41 builds the same network",
          proc.returncode == 0 and "\n41\n" in out and "--random-fully" in out
          and " 1 received" in out,
          f"exit {proc.returncode}; nat1 timeout 41 {'ok' if chr(10) + '41' in out else 'missing'}"
          f"; nat2 --random-fully {'ok' if '--random-fully' in out else 'missing'}")


def main() -> int:
    global VERBOSE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    VERBOSE = parser.parse_args().verbose
    if os.geteuid() != 0:
        print("check_nat.py must run as root", file=sys.stderr)
        return 2
    started = time.monotonic()
    steps: list[Callable[[], None]] = [check_network_a, check_trap, check_link_shaping,
                                       check_mn_cli]
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
    print(f"{len(RESULTS) - failed} passed, {failed} failed "
          f"in {time.monotonic() - started:.1f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
