#!/usr/bin/python3
"""natchat's reliability across real Linux NATs: loss, a server restart, NAT rebinding, leaving.

    /usr/bin/python3 topologies/reliability_scenario.py [--messages 30] [--losses 10,30] [--demo]
                                                        [--json results.json] [--transcript F]

Every client runs ``natchat join --json`` and the server ``natchat serve --json`` (docs/EVENTS.md), so
everything below is read from the programs' own event streams; times come from when each line was read.

All networks have 5 ms of delay at each NAT crossing (WAN_DELAY_MS: peer RTT 20 ms).

1. Loss: the seed network with one private host per cone NAT (client1 on pri1_2 behind nat1, client2 on
   pri2_2 behind nat2) and ``loss_pct`` random loss at every NAT crossing in each direction (netfilter
   ``statistic`` match in raw PREROUTING on both NAT interfaces; this kernel has no netem): a
   client <-> server datagram crosses one NAT (p), a peer <-> peer datagram two (1 - (1 - p)^2: 19 % at
   10 %, 51 % at 30 %). Each client types ``--messages`` numbered ``@chat`` lines to the other at
   once; every one must be shown exactly once and in order, none reported undeliverable, and both
   ``@show_list``s must show both clients. Clients run with ``--deliver-within 60`` (keep trying for a
   minute, as a user on a bad link would set it; the default 10 s gives up too soon at 51 % loss) and
   otherwise defaults (keepalive 10 s; server timeout 30 s). The NATs' drop counters are reported.
2. Server restart, on the seed network without loss (client1 pri1_2, client2 pri2_2, client3 public1,
   default keepalive 10 s, once the clients' keepalives are 10 s apart, 16 s after they registered):
   SIGKILL the server, start it again on the same address and port; each
   client must register again by itself within one keepalive interval of the new server starting,
   every list must equal the new registry, and chat must work both ways, with nothing typed but chat.
3. NAT rebinding on nat1 (client1): (a) ``conntrack -F``: the cone NAT gives the same port back, chat
   goes on; (b) ``conntrack -F`` while the old public port is taken by another flow (a datagram the
   NAT box itself sends from that port to the server, as after a NAT reboot), so the next datagram gets
   a new public port: the server must print ``moved`` with the new address, client2's list must show
   it, and chat must go on both ways.
4. Leaving: client1 gets SIGINT (Ctrl-C), client2 SIGHUP (its terminal closed), client3 end of input:
   the server must print each ``deregistered`` (never ``disappeared``) within 2 s, and each exits 0.

Prints one table row per scenario (how it was tested, what was measured); exits 1 if any failed. The
networks are always torn down. All traffic stays inside the network namespaces this script creates.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from harness import (  # noqa: E402
    Events,
    Expired,
    HostProc,
    Scenario,
    Transcript,
    is_root,
    natchat,
    now,
    print_table,
    report,
    run_steps,
    scenario_parser,
)
from natnet import seed_network  # noqa: E402

SERVER_IP = "10.0.0.3"
KEEPALIVE = 10.0  # natchat join's default
DELIVER_WITHIN = 60.0  # for the loss scenarios (see the docstring)
WAN_DELAY_MS = 5.0
"""Per NAT crossing (peer RTT 20 ms, server RTT 10 ms): an internet, not Mininet's 0 ms, where two adjacent
NATs make hole punching a race of microseconds whose long tail (topologies/README.md, "The conntrack
trap") is not what these scenarios are about; with 5 ms the first punching attempt works."""
SLACK = 1.0  # a round trip, the server's start-up and reading the line, on top of one keepalive interval
WARMUP = 16.0  # the first keepalives after registering: 0.25 + 0.5 + 1 + 2 + 4 + 8 s


class ReliabilityScenario(Scenario):
    """The shared steps (each with how it was tested) and table, plus what was measured, for the report."""

    def __init__(self, transcript: Transcript) -> None:
        super().__init__(transcript, dump_lines=60)
        self.measured: dict[str, Any] = {}


def show_list(proc: HostProc, within: float = 30.0) -> list[tuple[str, str]]:
    """What ``@show_list`` shows now: (id, public address) in order. Under heavy loss the client may
    say the server did not send the list (it asks 4 times in 6 s): typed again, as a person would."""
    events = Events(proc)
    deadline = time.monotonic() + within
    while True:
        asked = now(proc.transcript)
        proc.type("@show_list")
        try:
            at = events.wait("show_list", lambda e: True, min(8.0, max(0.1, deadline - time.monotonic())), after=asked)
        except Expired:
            if time.monotonic() >= deadline:
                raise
            continue
        event = [e for t, e in events.all("show_list") if t == at][-1]
        return [(p["id"], p["public"]) for p in event["peers"]]


def converge(procs: list[HostProc], expected: list[tuple[str, str]] | None, within: float) -> list[tuple[str, str]]:
    """Poll every client's ``@show_list`` until all are equal (to ``expected`` if given); the list."""
    deadline = time.monotonic() + within
    while True:
        lists = {p.name: show_list(p) for p in procs}
        first = next(iter(lists.values()))
        if all(x == (expected or first) for x in lists.values()) and len(first) >= len(procs):
            return first
        if time.monotonic() >= deadline:
            raise AssertionError(f"lists did not converge within {within:g} s: {lists}, expected {expected}")
        time.sleep(0.5)


def registry(server: HostProc) -> list[tuple[str, str]]:
    """The registry as the server's events tell it (all read so far), in registration order."""
    server.poll(0.2)
    reg: dict[str, str] = {}
    for _, event in Events(server).all():
        if event["event"] in ("registered", "moved"):
            reg[event["id"]] = event["public"]
        elif event["event"] in ("deregistered", "disappeared"):
            reg.pop(event["id"], None)
    return list(reg.items())


def chat_both_ways(a: HostProc, b: HostProc, tag: str, within: float = 15.0) -> str:
    """One message each way; how long each took to show."""
    took = []
    for src, dst in ((a, b), (b, a)):
        typed = now(src.transcript)
        src.type(f"@chat {dst.name} {tag} from {src.name}")
        text = f"{tag} from {src.name}"
        at = Events(dst).wait("message", lambda e, s=src.name, x=text: e["from"] == s and e["text"] == x, within)
        took.append(f"{src.name}->{dst.name} {1000 * (at - typed):.0f} ms")
    return ", ".join(took)


def join(net: Any, t: Transcript, stack: ExitStack, cid: str, host: str, *extra: str) -> HostProc:
    proc = natchat(net[host], t, "join", cid, "--server", SERVER_IP, "--json", *extra, name=cid)
    stack.callback(proc.stop)
    return proc


def serve(net: Any, t: Transcript, stack: ExitStack, name: str = "server") -> HostProc:
    proc = natchat(net["server"], t, "serve", "--json", name=name)
    stack.callback(proc.stop)
    proc.expect(r"natchat server on UDP", stream="err")
    return proc


def registered(proc: HostProc, within: float, after: float = 0.0, again: bool | None = None) -> tuple[float, str]:
    events = Events(proc)
    at = events.wait("registered", lambda e: again is None or e["again"] == again, within, after)
    event = [e for t, e in events.all("registered") if t == at][-1]
    return at, event["public"]


# --- 1. loss --------------------------------------------------------------------------------------------------


def drop_counts(net: Any) -> str:
    """Packets each NAT's loss rules dropped, of those that arrived on its interfaces."""
    parts = []
    for name in ("nat1", "nat2"):
        nat = net[name]
        rules = nat.cmd("iptables -t raw -L PREROUTING -v -x -n")
        dropped = sum(int(line.split()[0]) for line in rules.splitlines() if "statistic" in line)
        arrived = sum(int(nat.cmd(f"cat /sys/class/net/{i}/statistics/rx_packets").strip()) for i in (nat.wan, nat.lan))
        parts.append(f"{name} dropped {dropped}/{arrived} ({100 * dropped / max(1, arrived):.0f} %)")
    return ", ".join(parts)


def run_loss(sc: ReliabilityScenario, pct: float, messages: int) -> None:
    peer_loss = 100 * (1 - (1 - pct / 100) ** 2)
    name = f"1 loss {pct:g} % per NAT crossing: {messages} messages each way, exactly once, in order"
    how = (
        f"reliability_scenario.py: cone NATs, {WAN_DELAY_MS:g} ms and {pct:g} % loss at each NAT crossing "
        f"(peer path {peer_loss:.0f} % "
        f"each way), join --deliver-within {DELIVER_WITHIN:g}, defaults otherwise"
    )
    with (
        sc.step(name, how) as detail,
        seed_network(("cone", "cone"), hosts_per_lan=1, public_hosts=0, loss_pct=pct, wan_delay_ms=WAN_DELAY_MS) as net,
        ExitStack() as stack,
    ):
        t = sc.t
        serve(net, t, stack)
        opts = ("--deliver-within", f"{DELIVER_WITHIN:g}")
        a = join(net, t, stack, "client1", "pri1_2", *opts)
        b = join(net, t, stack, "client2", "pri2_2", *opts)
        for proc in (a, b):
            registered(proc, within=30)
        converge([a, b], None, within=30)
        start = now(t)
        for i in range(1, messages + 1):  # both type at once, interleaved
            a.type(f"@chat client2 a->b {i:02d}")
            b.type(f"@chat client1 b->a {i:02d}")
        deadline = time.monotonic() + DELIVER_WITHIN + 30
        last: dict[str, float] = {}
        for src, dst, tag in ((a, b, "a->b"), (b, a, "b->a")):
            events = Events(dst)
            while len(events.all("message")) < messages and time.monotonic() < deadline:
                if any(e["code"] == "undeliverable" for _, e in Events(src).all("error")):
                    break
                dst.poll(0.1)
                src.poll(0.1)  # its errors, and never a full pipe
            got = [e["text"] for _, e in events.all("message")]
            failed = [e["text"] for _, e in Events(src).all("error") if e["code"] == "undeliverable"]
            want = [f"{tag} {i:02d}" for i in range(1, messages + 1)]
            assert not failed, f"{src.name} reported undeliverable: {failed}"
            assert got == want, f"{dst.name} showed {got}, expected {want}"
            last[tag] = max(at for at, _ in events.all("message")) - start
        dst.poll(0.5)  # anything shown twice would have come by now
        for proc in (a, b):
            assert len(Events(proc).all("message")) == messages, f"{proc.name}: a message shown twice"
        final = converge([a, b], None, within=30)
        assert sorted(cid for cid, _ in final) == ["client1", "client2"], final
        slowest = max(last.values())
        sc.measured[f"loss_{pct:g}"] = {"last_shown_s": last, "peer_loss_pct": peer_loss}
        detail.append(
            f"{messages}/{messages} each way, once each, in order, 0 undeliverable; all shown "
            f"{last['a->b']:.1f} s / {last['b->a']:.1f} s after typing; lists converge; {drop_counts(net)}"
        )
        assert slowest < DELIVER_WITHIN


# --- 2-4. restart, rebinding, leaving ---------------------------------------------------------------------------

STUN_BINDING = bytes.fromhex("000100002112a442") + b"natchat-test"
"""A STUN Binding request: the server answers it without touching its registry."""


def take_port(nat: Any, port: int) -> None:
    """Make nat's conntrack table hold ``WAN:port <-> server:10080`` for a flow of the NAT box itself."""
    code = (
        "import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
        f"s.bind(('{nat.IP()}',{port}));s.sendto({STUN_BINDING!r},('{SERVER_IP}',10080))"
    )
    _, err, status = nat.pexec(["python3", "-c", code])
    assert status == 0, f"could not take {nat.IP()}:{port} on {nat.name}: {err}"


def public_ports(nat: Any, private_ip: str) -> set[int]:
    """The public ports nat's conntrack table maps ``private_ip``'s UDP flows to."""
    ports = set()
    for line in nat.cmd(f"conntrack -L -p udp --orig-src {private_ip} 2>/dev/null").splitlines():
        dports = [field.split("=", 1)[1] for field in line.split() if field.startswith("dport=")]
        if len(dports) == 2:
            ports.add(int(dports[1]))  # the reply direction's destination: the public port
    return ports


def run_restart_rebind_leave(sc: ReliabilityScenario) -> None:
    with (
        seed_network(("cone", "cone"), hosts_per_lan=1, public_hosts=1, wan_delay_ms=WAN_DELAY_MS) as net,
        ExitStack() as stack,
    ):
        t = sc.t
        server = serve(net, t, stack)
        clients = {"client1": "pri1_2", "client2": "pri2_2", "client3": "public1"}
        procs = {cid: join(net, t, stack, cid, host) for cid, host in clients.items()}
        for proc in procs.values():
            registered(proc, within=10)
        everyone = list(procs.values())
        converge(everyone, registry(server), within=10)
        c1, c2 = procs["client1"], procs["client2"]
        chat_both_ways(c1, c2, "before")

        how = (
            f"reliability_scenario.py: cone NATs, {WAN_DELAY_MS:g} ms per NAT crossing; SIGKILL natchat serve and "
            f"start it again once the clients keep alive every {KEEPALIVE:g} s (the default)"
        )
        with sc.step(
            "2 server restart: clients re-register by themselves, lists converge, chat resumes", how
        ) as detail:
            # After registering, keepalives come sooner (0.25, 0.5 ... 8 s): wait until they are 10 s apart.
            steady = max(registered(p, within=1)[0] for p in everyone) + WARMUP
            time.sleep(max(0.0, steady - now(t)))
            server.signal(signal.SIGKILL)
            server.wait(within=5)
            server = serve(net, t, stack, name="server2")
            up = now(t)
            took = {}
            for proc in everyone:
                at, _ = registered(proc, within=KEEPALIVE + 5, after=up, again=True)
                took[proc.name] = at - up
            worst = max(took.values())
            assert worst <= KEEPALIVE + SLACK, f"re-registered after {took} (keepalive {KEEPALIVE:g} s)"
            for cid in clients:
                Events(server).wait("registered", lambda e, c=cid: e["id"] == c, 5, after=up)
            new = registry(server)
            assert sorted(c for c, _ in new) == sorted(clients), new
            converge(everyone, new, within=10)
            detail.append(
                "re-registered "
                + ", ".join(f"{c} {s:.1f} s" for c, s in took.items())
                + f" after the new server started (keepalive {KEEPALIVE:g} s); lists converge; chat "
                + chat_both_ways(c1, c2, "after restart")
            )
            sc.measured["restart_reregistered_s"] = took

        how = (
            f"reliability_scenario.py: {WAN_DELAY_MS:g} ms per NAT crossing; conntrack -F in nat1, then again "
            "with nat1's old port taken by another flow; keepalive 10 s"
        )
        with sc.step("3 NAT rebinding: new public address reaches server and peers, chat goes on", how) as detail:
            nat1 = net["nat1"]
            old = dict(registry(server))["client1"]
            nat1.cmd("conntrack -F")
            plain = chat_both_ways(c1, c2, "after flush")
            t.add("nat1", "!", "conntrack -L: " + " | ".join(nat1.cmd("conntrack -L -p udp 2>/dev/null").splitlines()))
            ports = public_ports(nat1, "192.168.1.2")
            kept = ports == {int(old.rsplit(":", 1)[1])}
            again = "the same port" if kept else "another port"
            detail.append(f"(a) conntrack -F: nat1 maps client1 to {sorted(ports)} ({again}); chat {plain}")
            # (b) the old port is taken when client1 next sends: hold client1's traffic for the moment
            # of the flush, so that the NAT box's own flow gets the port first.
            flushed = now(t)
            nat1.cmd("iptables -I FORWARD 1 -s 192.168.1.2 -j DROP")
            try:
                nat1.cmd("conntrack -F")
                take_port(nat1, int(old.rsplit(":", 1)[1]))
            finally:
                nat1.cmd("iptables -D FORWARD 1")
            moved_at = Events(server).wait("moved", lambda e: e["id"] == "client1", KEEPALIVE + 5, after=flushed)
            moved = [e for at, e in Events(server).all("moved") if at == moved_at][-1]
            assert moved["was"] == old and moved["public"] != old, moved
            new_pub = moved["public"]
            # client2's list (IDs) hears that client1 changed; its @show_list then shows the new address
            seen = Events(c2).wait("list", lambda e: "client1" in e["joined"], 10, after=flushed)
            converge(everyone, registry(server), within=10)
            resumed = chat_both_ways(c1, c2, "after rebinding", within=20)
            detail.append(
                f"(b) port taken: server printed 'client1 moved {old} -> {new_pub}' {moved_at - flushed:.1f} s after "
                f"the flush, client2's list had the change {seen - flushed:.1f} s after; @show_lists converge; "
                f"chat {resumed}"
            )
            sc.measured["rebinding"] = {"old": old, "new": new_pub, "moved_after_s": moved_at - flushed}

        how = (
            f"reliability_scenario.py: {WAN_DELAY_MS:g} ms per NAT crossing; SIGINT to client1, SIGHUP to client2, "
            "end of input to client3"
        )
        with sc.step("4 Ctrl-C, SIGHUP (terminal closed), end of input: each deregisters", how) as detail:
            ways = (("client1", "SIGINT"), ("client2", "SIGHUP"), ("client3", "end of input"))
            parts = []
            for cid, way in ways:
                proc = procs[cid]
                asked = now(t)
                if way == "end of input":
                    proc.close_input()
                else:
                    proc.signal(signal.Signals[way])
                at = Events(server).wait("deregistered", lambda e, c=cid: e["id"] == c, 5, after=asked)
                status = proc.wait(within=5)
                assert status == 0, f"{cid} exited with {status}"
                assert at - asked <= 2.0, f"{cid}: deregistered {at - asked:.1f} s after {way}"
                parts.append(f"{cid} {way}: deregistered after {1000 * (at - asked):.0f} ms, exit 0")
            server.poll(0.5)
            gone = [e["id"] for _, e in Events(server).all("disappeared")]
            assert not gone, f"disappeared (timed out) instead: {gone}"
            assert registry(server) == [], registry(server)
            detail.append("; ".join(parts) + "; no 'disappeared'")


def main(argv: list[str] | None = None) -> int:
    parser = scenario_parser(__doc__)
    parser.add_argument("--messages", type=int, default=30, help="chat messages each way under loss (default 30)")
    parser.add_argument("--losses", default="10,30", help="comma-separated loss %% per NAT crossing (default 10,30)")
    parser.add_argument("--skip-loss", action="store_true", help="only the restart, rebinding and leaving scenarios")
    args = parser.parse_args(argv)
    if not is_root():
        return 2
    transcript = Transcript(echo=args.demo)
    sc = ReliabilityScenario(transcript)
    steps: list[Callable[[], None]] = []
    if not args.skip_loss:
        steps.extend(lambda p=float(p): run_loss(sc, p, args.messages) for p in args.losses.split(",") if p.strip())
    steps.append(lambda: run_restart_rebind_leave(sc))
    run_steps(sc, steps)
    print_table(sc)
    return report(sc.rows, transcript, args, measured=sc.measured)


if __name__ == "__main__":
    sys.exit(main())
