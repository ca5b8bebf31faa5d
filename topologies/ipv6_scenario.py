#!/usr/bin/python3
"""natchat over IPv6 (and IPv4 alongside) in Mininet: registration, lists and direct chat.

    /usr/bin/python3 topologies/ipv6_scenario.py [--demo] [--json results.json] [--transcript F]

Builds the seed network dual-stack (``seed_network(ipv6=True, ipv6_only=("pri2_2",))``): the internet
side is also fd00::/64 (server fd00::3), nat1 and nat2 also route fd00:1::/64 and fd00:2::/64 (no
NAT66) with a stateful IPv6 firewall, and pri2_2 has no IPv4 address at all. ``natchat serve`` runs on
``server`` with its default address ``::``; then

    client1 on pri1_2 (dual-stack, behind nat1)  --server [fd00::3]:10080
    client2 on pri2_2 (IPv6 only, behind nat2)   --server [fd00::3]:10080
    client3 on public1 (IPv4 client)             --server 10.0.0.3

and it checks, from what the programs print and from packet captures:

0. the IPv6 routers let out, but filter unsolicited inbound (so IPv6 peers must punch, as over NAT);
1. client1 and client2 register over IPv6 (the server prints ``client1 [fd00:1::2]:10081``), client3
   over IPv4 on the same server socket (``client3 10.0.0.4:10081``, not IPv4-mapped);
2. every client's ``@show_list`` equals the server's registry;
3. a chat client1 -> client2 -> client1 is delivered directly over IPv6: chat datagrams between
   fd00:1::2 and fd00:2::2 cross nat1, none goes to or from the server;
4. client3 (IPv4) and client1 (dual-stack) chat both ways over IPv4 (through nat1's NAT);
5. client3 (IPv4 socket) and client2 (IPv6 only) share no address family: each says it could not
   deliver ("no direct path"), and both keep running;
6. ``@exit``: the server prints each deregistration with the address it registered from.

Prints a table; exits 1 if anything failed. The network is always torn down. All traffic stays inside
the network namespaces this script creates.
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from capture import Capture, Datagram  # noqa: E402
from harness import (  # noqa: E402
    HostProc,
    Scenario,
    Transcript,
    chats,
    is_root,
    natchat,
    print_table,
    registry_lines,
    report,
    scenario_parser,
    show_list,
)
from natnet import seed_network  # noqa: E402

SERVER_IP = "10.0.0.3"
SERVER_IP6 = "fd00::3"
DELIVER_WITHIN = 2.0  # client3 and client2 give up on each other after this long
# client: (host, --server, the address the server must print)
CLIENTS = {
    "client1": ("pri1_2", f"[{SERVER_IP6}]:10080", "[fd00:1::2]:10081"),
    "client2": ("pri2_2", f"[{SERVER_IP6}]:10080", "[fd00:2::2]:10081"),
    "client3": ("public1", SERVER_IP, "10.0.0.4:10081"),
}


def between(datagrams: list[Datagram], a: str, b: str) -> list[Datagram]:
    return [d for d in datagrams if {d.src, d.dst} == {a, b}]


def chat(procs: dict[str, HostProc], src: str, dst: str, text: str) -> None:
    procs[src].type(f"@chat {dst} {text}")
    procs[dst].expect(rf"^From {src} \[{text}\]$")


def run(sc: Scenario, net: Any) -> None:
    t = sc.t
    procs: dict[str, HostProc] = {}
    with ExitStack() as stack:
        with sc.step("0 IPv6 routers pass outbound, filter unsolicited inbound") as detail:
            out = net["pri1_2"].cmd(f"ping -6 -c1 -W2 {SERVER_IP6}")
            assert " 0% packet loss" in out, f"pri1_2 cannot reach the server over IPv6: {out}"
            back = net["server"].cmd("ping -6 -c1 -W1 fd00:1::2")
            assert "100% packet loss" in back, f"nat1 let an unsolicited IPv6 ping in: {back}"
            detail.append("pri1_2 -> fd00::3 answered; fd00::3 -> fd00:1::2 (unsolicited) dropped by nat1")

        server = natchat(net["server"], t, "serve", "--timeout", "10", name="server")
        stack.callback(server.stop)
        listening = server.expect(r"natchat server on UDP (\S+);", stream="err").group(1)

        with sc.step("1 register: IPv6 clients over IPv6, the IPv4 client over IPv4, one server socket") as detail:
            assert listening == "[::]:10080", f"server listens on {listening}"
            for cid, (host, server_addr, expected) in CLIENTS.items():
                args = ["join", cid, "--server", server_addr, "-v"]
                if cid in ("client2", "client3"):
                    args += ["--deliver-within", str(DELIVER_WITHIN)]
                procs[cid] = proc = natchat(net[host], t, *args, name=cid)
                stack.callback(proc.stop)
                mine = proc.expect(r"registered; public address (\S+)", stream="err").group(1)
                seen = server.expect(rf"^{cid} (\S+)$").group(1)
                assert seen == mine == expected, f"{cid}: server printed {seen}, was told {mine}, expected {expected}"
                detail.append(f"{cid} {seen}")

        with sc.step("2 every @show_list equals the server's registry"):
            registry = registry_lines(server)
            assert registry == [(cid, expected) for cid, (_, _, expected) in CLIENTS.items()], registry
            for cid, proc in procs.items():
                got = show_list(proc, len(registry))
                assert got == registry, f"{cid} shows {got}, server has {registry}"

        with sc.step("3 IPv6 chat is delivered directly over IPv6, never via the server") as detail:
            server_cap = Capture(net["server"], net["server"].defaultIntf().name, "udp")
            wan_cap = Capture(net["nat1"], net["nat1"].wan, "udp")
            try:
                chat(procs, "client1", "client2", "hello over IPv6")
                chat(procs, "client2", "client1", "hello back")
            finally:
                at_server = chats(server_cap.stop())
                on_wan = chats(wan_cap.stop())
            up = procs["client1"].expect(r"path to client2 is up via (\S+)", stream="err").group(1)
            assert up == "[fd00:2::2]:10081", f"client1's path to client2 is {up}"
            assert not at_server, f"{len(at_server)} chat datagrams to/from the server: {at_server[:3]}"
            direct = between(on_wan, "fd00:1::2", "fd00:2::2")
            assert direct and all(d.ip_version == 6 for d in direct), f"on nat1's WAN: {on_wan[:4]}"
            kinds = sorted({d.natchat_type or "" for d in direct})
            detail.append(f"{len(direct)} IPv6 {'/'.join(kinds)} datagrams fd00:1::2 <-> fd00:2::2; 0 at the server")

        with sc.step("4 the IPv4 client and a dual-stack client chat over IPv4") as detail:
            wan_cap = Capture(net["nat1"], net["nat1"].wan, "udp")
            try:
                chat(procs, "client3", "client1", "from IPv4")
                chat(procs, "client1", "client3", "to IPv4")
            finally:
                on_wan = chats(wan_cap.stop())
            direct = between(on_wan, "10.0.0.1", "10.0.0.4")
            assert direct and all(d.ip_version == 4 for d in direct), f"on nat1's WAN: {on_wan[:4]}"
            detail.append(f"{len(direct)} IPv4 chat datagrams 10.0.0.1 (nat1) <-> 10.0.0.4")

        with sc.step("5 IPv4 client and IPv6-only client: 'no direct path', no crash") as detail:
            procs["client3"].type("@chat client2 across families")
            procs["client2"].type("@chat client3 the other way")
            within = DELIVER_WITHIN + 3
            for src, dst, text in (("client3", "client2", "across families"), ("client2", "client3", "the other way")):
                said = procs[src].expect(rf"^could not deliver to {dst}: .*\[{text}\]$", within, stream="err").group(0)
                assert "no direct path" in said, said
                assert not any(line.startswith(f"From {src} ") for line in procs[dst].out), f"{dst} got it anyway"
            for cid, proc in procs.items():
                assert proc.proc.poll() is None, f"{cid} exited"
                assert show_list(proc, 3) == registry, f"{cid}'s list changed"
            detail.append("both reported 'no direct path'; all three still listed and running")

        with sc.step("6 @exit: the server prints each deregistration at its address") as detail:
            for proc in procs.values():
                proc.type("@exit")
            for cid, proc in procs.items():
                assert proc.wait(within=3) == 0, f"{cid} exited with {proc.proc.returncode}"
            server.lines_until(lambda lines: sum(" is deregistered " in line for line in lines) >= 3, within=3)
            gone = {line for line in server.out if " is deregistered " in line}
            assert gone == {f"{cid} is deregistered {expected}" for cid, (_, _, expected) in CLIENTS.items()}, gone
            detail.append("; ".join(sorted(gone)))


def main(argv: list[str] | None = None) -> int:
    parser = scenario_parser(__doc__)
    args = parser.parse_args(argv)
    if not is_root():
        return 2
    transcript = Transcript(echo=args.demo)
    sc = Scenario(transcript)
    try:
        with seed_network(("cone", "cone"), ipv6=True, ipv6_only=("pri2_2",)) as net:
            run(sc, net)
    except Exception:  # a broken set-up must not stop the report
        sc.setup_failed()
        print(f"--- last lines of the transcript ---\n{transcript.dump(40)}", file=sys.stderr)
    print_table(sc)
    return report(sc.rows, transcript, args)


if __name__ == "__main__":
    sys.exit(main())
