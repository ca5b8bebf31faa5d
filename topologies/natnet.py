#!/usr/bin/python3
"""Mininet networks with real Linux netfilter NAT boxes, for natchat.

Runs under Debian's interpreter (/usr/bin/python3) as root, next to the
``mininet`` package from Debian.  It does not import natchat.

Two ways to use it:

* interactively, with the ``mn`` command::

      mn --custom topologies/natnet.py --topo seed --switch lxbr --controller none
      mn --custom topologies/natnet.py --topo seed,cone,symmetric,timeout=60 \\
         --switch lxbr --controller none

* from Python (tests, scripts)::

      from natnet import seed_network
      with seed_network(nat_kinds=("cone", "cone"), udp_timeout=30) as net:
          net["pri1_2"].cmd("ping -c1 10.0.0.3")

  The context manager builds and starts the network, yields the started
  ``Mininet`` object, and always tears everything down again, also on an
  exception or KeyboardInterrupt.

The default ``seed`` network (see topologies/README.md for the details)::

      server 10.0.0.3   public1 10.0.0.4          "internet" 10.0.0.0/24, switch s0
            |                |
      ------+------ s0 ------+--------------------
            |                          |
      nat1 WAN 10.0.0.1           nat2 WAN 10.0.0.2
      nat1 LAN 192.168.1.1        nat2 LAN 192.168.2.1
            |  switch s1               |  switch s2
      pri1_2 192.168.1.2          pri2_2 192.168.2.2
      pri1_3 192.168.1.3          pri2_3 192.168.2.3

Host names: Mininet host names are interface-name prefixes, so the
assignment's ``pri1.2`` is called ``pri1_2`` here (``priN_K`` is host
192.168.N.K behind NAT ``natN``).

Beware: ``mn`` copies every top-level name of a ``--custom`` file into its
own globals.  No name here clashes with one of ``mn``'s except, on purpose,
``cleanup``: ``mn`` calls ``cleanup()`` on ``-c`` and
after an error, and gets this module's precise cleanup instead of Mininet's
pattern-based one (which runs ``killall ping``, ``pkill -f mininet:`` and
``rm -f /tmp/*.log /tmp/*.out``).
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from mininet.link import Link
from mininet.log import setLogLevel
from mininet.net import Mininet
from mininet.node import Host, Node
from mininet.nodelib import LinuxBridge
from mininet.topo import Topo

NAT_KINDS = ("cone", "symmetric")
WAN_INPUT_POLICIES = ("accept", "drop")
NAT_ROLES = ("home", "cgn")


def _here() -> str:
    """This file's directory (``mn --custom`` exec()s it without __file__)."""
    return os.path.dirname(os.path.abspath(_here.__code__.co_filename))


# Addressing plan (see address helpers on NetSpec).
INTERNET_PREFIX = "10.0.0"
LAN_PREFIX = "192.168"
# A carrier-grade NAT natC's LAN is 100.64.C.0/24 (RFC 6598 shared address space, 100.64.0.0/10) with
# the CGN at 100.64.C.1; a home NAT natN behind it has the WAN address 100.64.C.N.
CGN_PREFIX = "100.64"
# With a hairpinning CGN, home NAT natN translates into its own block of ports (deterministic port
# blocks, RFC 7422; the A+P port sets of RFC 6346): PORT_BLOCK ports from PORT_BLOCK_BASE + (N - 1) x PORT_BLOCK.
PORT_BLOCK_BASE = 1024
PORT_BLOCK = 2048
# With ipv6=True (ULA, RFC 4193): the internet side is fd00::/64, where natN is fd00::N like 10.0.0.N;
# natN's LAN is fd00:N::/64 with the NAT at fd00:N::1 and priN_K at fd00:N::K.
INTERNET6 = "fd00::"


@dataclass(frozen=True)
class NatSpec:
    """One NAT box and the LAN behind it.

    kind: "cone" (MASQUERADE: an internal ip:port keeps the external port it
        already has, for every destination, and gets its own port number if
        that is free) or "symmetric" (MASQUERADE --random-fully: a fresh
        random external port for every new destination).  Filtering is the
        same for both: Linux conntrack lets in only replies, i.e.
        address-and-port-dependent filtering.  See topologies/README.md.
    hosts: number of private hosts on the LAN (priN_2, priN_3, ...).
    udp_timeout: net.netfilter.nf_conntrack_udp_timeout in the NAT's netns:
        lifetime of a mapping that has seen no reply yet (and of a replied one
        younger than 2 s).
    udp_timeout_stream: nf_conntrack_udp_timeout_stream: lifetime of a
        mapping that has seen packets both ways and lived for 2 s.
    wan_input: what happens to an unsolicited packet addressed to the NAT's
        WAN address that matches no mapping. "accept" (plain Linux, no INPUT
        rules): the NAT's own stack answers with ICMP port unreachable, and
        conntrack *keeps an entry for it* (this is what causes the conntrack
        trap).  "drop": an INPUT rule drops it silently; the unconfirmed
        conntrack entry is discarded with the packet.
    role: "home" (a home router: its LAN is 192.168.N.0/24 with hosts on it)
        or "cgn" (a carrier-grade NAT: its LAN is 100.64.N.0/24, the WAN side
        of the home NATs that name it in ``behind``; it has no hosts itself).
    behind: 0 (the NAT's WAN is on the internet, 10.0.0.0/24) or the number
        of the CGN whose LAN the WAN of this home NAT is on.
    hairpin: a CGN only: True gives every home NAT behind it a deterministic
        block of ports (PORT_BLOCK_BASE, PORT_BLOCK) into which that home NAT
        translates, static DNAT from the CGN's public address back to it, and
        hairpinning (a subscriber reaches another at the CGN's public address,
        seen from the sender's public address); False: no hairpinning, no
        port blocks.  See topologies/README.md, "Carrier-grade NAT".
    """

    kind: str = "cone"
    hosts: int = 2
    udp_timeout: int = 30
    udp_timeout_stream: int = 120
    wan_input: str = "accept"
    role: str = "home"
    behind: int = 0
    hairpin: bool = False

    def __post_init__(self) -> None:
        if self.kind not in NAT_KINDS:
            raise ValueError(f"NAT kind {self.kind!r} is not one of {NAT_KINDS}")
        if self.wan_input not in WAN_INPUT_POLICIES:
            raise ValueError(f"wan_input {self.wan_input!r} is not one of {WAN_INPUT_POLICIES}")
        if self.role not in NAT_ROLES:
            raise ValueError(f"NAT role {self.role!r} is not one of {NAT_ROLES}")
        if self.role == "cgn" and (self.hosts or self.behind):
            raise ValueError("a CGN has no hosts of its own and sits on the internet (behind=0)")
        if self.hairpin and self.role != "cgn":
            raise ValueError("hairpin is a CGN setting")
        if not 0 <= self.hosts <= 250:
            raise ValueError(f"hosts per LAN must be 0..250, not {self.hosts}")
        if self.udp_timeout < 1 or self.udp_timeout_stream < 1:
            raise ValueError("conntrack UDP timeouts must be >= 1 second")


@dataclass(frozen=True)
class NetSpec:
    """The whole network: NAT boxes with their LANs plus the public side.

    Addresses: natN's WAN is 10.0.0.N, its LAN 192.168.N.0/24 with the NAT
    at .1 and hosts priN_K at 192.168.N.K (K = 2, 3, ...).  ``server`` is
    10.0.0.(number of NATs + 1) and publicP follows it (seed: server
    10.0.0.3, public1 10.0.0.4).

    wan_delay_ms / wan_loss_pct: every packet that a NAT box forwards (and
    every packet reaching it from either side) is delayed by wan_delay_ms and
    dropped with probability wan_loss_pct %, once per NAT crossing per
    direction: pri1_2 <-> server RTT gains 2 x delay, pri1_2 <-> pri2_2
    4 x delay.  Done in the NAT's netns with netfilter (raw PREROUTING:
    statistic match for loss, NFQUEUE + delayq.py for delay) instead of netem
    (TCLink), because kernels without sch_netem exist (this project's VMs).
    Loss and delay happen before conntrack sees the packet, like on a wire.

    ipv6: dual-stack network: every node also gets an IPv6 ULA address (see
        the ``*_ip6`` helpers) and routes; no NAT66: the NAT boxes route their
        LAN's /64 and filter it like the IPv4 NAT does (stateful ip6tables:
        only replies come in), so IPv6 peers still have to punch.
    ipv6_only: end hosts (``server``, ``publicP``, ``priN_K``) that get no
        IPv4 address at all (needs ipv6).
    """

    nats: tuple[NatSpec, ...] = field(default_factory=lambda: (NatSpec(), NatSpec()))
    public_hosts: int = 1
    wan_delay_ms: float = 0.0
    wan_loss_pct: float = 0.0
    ipv6: bool = False
    ipv6_only: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= len(self.nats) <= 200:
            raise ValueError("need 1..200 NAT boxes")
        if len(self.nats) + 1 + self.public_hosts > 254:
            raise ValueError("too many hosts for 10.0.0.0/24")
        if self.wan_delay_ms < 0 or not 0 <= self.wan_loss_pct <= 100:
            raise ValueError("delay must be >= 0 ms and loss within 0..100 %")
        if self.ipv6 and (self.wan_delay_ms or self.wan_loss_pct):
            raise ValueError("delay and loss are emulated for IPv4 only: not with ipv6")
        if self.ipv6_only and not self.ipv6:
            raise ValueError("ipv6_only hosts need ipv6=True")
        ends = set(self.private_names()) | set(self.public_names())
        if unknown := sorted(set(self.ipv6_only) - ends):
            raise ValueError(f"ipv6_only: no such end host {unknown}")
        for n, nat in enumerate(self.nats, start=1):
            if nat.behind and not (1 <= nat.behind <= len(self.nats) and self.nats[nat.behind - 1].role == "cgn"):
                raise ValueError(f"nat{n}: behind={nat.behind} is not a CGN of this network")
            if nat.behind and n >= (65536 - PORT_BLOCK_BASE) // PORT_BLOCK:
                raise ValueError(f"nat{n}: too many NATs for port blocks of {PORT_BLOCK} behind a CGN")
        if self.ipv6 and any(nat.role == "cgn" or nat.behind for nat in self.nats):
            raise ValueError("CGNs are IPv4 only: not with ipv6")

    # -- names and addresses -------------------------------------------------
    @staticmethod
    def nat_name(n: int) -> str:
        return f"nat{n}"

    @staticmethod
    def nat_wan_ip(n: int) -> str:
        return f"{INTERNET_PREFIX}.{n}"

    @staticmethod
    def lan_subnet(n: int) -> str:
        return f"{LAN_PREFIX}.{n}.0/24"

    @staticmethod
    def lan_gateway(n: int) -> str:
        return f"{LAN_PREFIX}.{n}.1"

    @staticmethod
    def private_name(n: int, k: int) -> str:
        return f"pri{n}_{k}"

    @staticmethod
    def private_ip(n: int, k: int) -> str:
        return f"{LAN_PREFIX}.{n}.{k}"

    def wan_ip(self, n: int) -> str:
        """natN's WAN address: 10.0.0.N, or 100.64.C.N behind CGN natC."""
        behind = self.nats[n - 1].behind
        return f"{CGN_PREFIX}.{behind}.{n}" if behind else self.nat_wan_ip(n)

    def public_ip_of(self, n: int) -> str:
        """The address the internet sees for natN's LAN: its WAN address, or its CGN's."""
        behind = self.nats[n - 1].behind
        return self.nat_wan_ip(behind) if behind else self.nat_wan_ip(n)

    def lan_net(self, n: int) -> str:
        """natN's LAN subnet: 192.168.N.0/24, or 100.64.N.0/24 for a CGN."""
        return f"{CGN_PREFIX}.{n}.0/24" if self.nats[n - 1].role == "cgn" else self.lan_subnet(n)

    def lan_ip(self, n: int) -> str:
        """natN's own LAN address."""
        return f"{CGN_PREFIX}.{n}.1" if self.nats[n - 1].role == "cgn" else self.lan_gateway(n)

    def port_block(self, n: int) -> tuple[int, int] | None:
        """The first and last port of home NAT natN's block, if it is behind a hairpinning CGN."""
        behind = self.nats[n - 1].behind
        if not behind or not self.nats[behind - 1].hairpin:
            return None
        first = PORT_BLOCK_BASE + (n - 1) * PORT_BLOCK
        return first, first + PORT_BLOCK - 1

    def subscribers(self, c: int) -> list[int]:
        """The numbers of the home NATs behind CGN natC."""
        return [n for n, nat in enumerate(self.nats, start=1) if nat.behind == c]

    def server_ip(self) -> str:
        return f"{INTERNET_PREFIX}.{len(self.nats) + 1}"

    def public_ip(self, p: int) -> str:
        return f"{INTERNET_PREFIX}.{len(self.nats) + 1 + p}"

    # IPv6 (ipv6=True): the same host numbers in fd00::/64 and fd00:N::/64 (N, K written as they are).
    @staticmethod
    def nat_wan_ip6(n: int) -> str:
        return f"{INTERNET6}{n}"

    @staticmethod
    def lan6_subnet(n: int) -> str:
        return f"fd00:{n}::/64"

    @staticmethod
    def lan6_gateway(n: int) -> str:
        return f"fd00:{n}::1"

    @staticmethod
    def private_ip6(n: int, k: int) -> str:
        return f"fd00:{n}::{k}"

    def server_ip6(self) -> str:
        return f"{INTERNET6}{len(self.nats) + 1}"

    def public_ip6(self, p: int) -> str:
        return f"{INTERNET6}{len(self.nats) + 1 + p}"

    def lan6_routes(self, except_nat: int | None = None) -> tuple[tuple[str, str], ...]:
        """(prefix, via) for every NAT's LAN: what the internet side needs to reach them (no NAT66)."""
        count = len(self.nats)
        return tuple((self.lan6_subnet(n), self.nat_wan_ip6(n)) for n in range(1, count + 1) if n != except_nat)

    def private_names(self, n: int | None = None) -> list[str]:
        """Private host names, of NAT n (1-based) or of all NATs."""
        numbers = range(1, len(self.nats) + 1) if n is None else [n]
        return [self.private_name(i, k) for i in numbers for k in range(2, self.nats[i - 1].hosts + 2)]

    def public_names(self) -> list[str]:
        return ["server"] + [f"public{p}" for p in range(1, self.public_hosts + 1)]

    def nat_names(self) -> list[str]:
        return [self.nat_name(n) for n in range(1, len(self.nats) + 1)]

    def switch_names(self) -> list[str]:
        # s0 is the internet; sN is natN's LAN.  Digits are required:
        # Mininet derives a (here unused) datapath id from them.
        return [f"s{n}" for n in range(0, len(self.nats) + 1)]

    def node_names(self) -> list[str]:
        return self.nat_names() + self.private_names() + self.public_names()


class NATBox(Node):  # type: ignore[misc]  # mininet is untyped
    """A Mininet node that is a Linux NAT router (netfilter in its own netns).

    Port 0 (``<name>-eth0``) is the WAN side, port 1 (``<name>-eth1``) the
    LAN side; the topology creates the links in that order.

    delay_ms / loss_pct emulate a slow, lossy WAN link (see NetSpec).
    """

    def __init__(
        self,
        name: str,
        kind: str = "cone",
        lan_subnet: str = "192.168.1.0/24",
        lan_ip: str = "192.168.1.1/24",
        udp_timeout: int = 30,
        udp_timeout_stream: int = 120,
        wan_input: str = "accept",
        delay_ms: float = 0.0,
        loss_pct: float = 0.0,
        wan_ip6: str | None = None,
        lan_ip6: str | None = None,
        lan6_subnet: str | None = None,
        routes6: Sequence[tuple[str, str]] = (),
        port_block: tuple[int, int] | None = None,
        cgn_public_ip: str | None = None,
        hairpin_blocks: Sequence[tuple[str, int, int]] = (),
        **params: Any,
    ) -> None:
        # Validate via NatSpec, so the mn and Python entry points agree.
        NatSpec(kind, 0, udp_timeout, udp_timeout_stream, wan_input)
        # A home NAT behind a hairpinning CGN translates into port_block; a CGN (cgn_public_ip: its WAN
        # address) with hairpin_blocks (subscriber WAN address, first port, last port) hairpins.
        self.port_block = port_block
        self.cgn_public_ip = cgn_public_ip
        self.hairpin_blocks = tuple(hairpin_blocks)
        self.wan_ip6, self.lan_ip6, self.lan6_subnet = wan_ip6, lan_ip6, lan6_subnet
        self.routes6 = tuple(routes6)
        self.kind = kind
        self.lan_subnet = lan_subnet
        self.lan_ip = lan_ip
        self.udp_timeout = udp_timeout
        self.udp_timeout_stream = udp_timeout_stream
        self.wan_input = wan_input
        self.delay_ms = float(delay_ms)
        self.loss_pct = float(loss_pct)
        self.delayq: subprocess.Popen[bytes] | None = None
        super().__init__(name, **params)

    @property
    def wan(self) -> str:
        return str(self.intfs[0].name)

    @property
    def lan(self) -> str:
        return str(self.intfs[1].name)

    def run(self, *argv: str) -> str:
        """Run a command in this node's netns; raise if it fails."""
        out, err, code = self.pexec(list(argv))
        if code != 0:
            raise RuntimeError(f"{self.name}: {' '.join(argv)} failed ({code}): {err.strip()}")
        return str(out)

    def nat_commands(self) -> list[str]:
        """The exact commands (run in this netns) that make this kind of NAT.

        No argument contains a space, so each is run as ``command.split()``.
        """
        wan, lan = self.wan, self.lan
        random_fully = " --random-fully" if self.kind == "symmetric" else ""
        commands = ["sysctl -w net.ipv4.ip_forward=1"]
        if self.port_block:  # behind a hairpinning CGN: UDP into this home NAT's block of ports
            first, last = self.port_block
            commands.append(
                f"iptables -t nat -A POSTROUTING -o {wan} -s {self.lan_subnet} -p udp"
                f" -j MASQUERADE --to-ports {first}-{last}{random_fully}"
            )
        public = self.cgn_public_ip
        for sub_ip, first, last in self.hairpin_blocks:  # a CGN: each subscriber keeps its block's ports
            commands.append(
                f"iptables -t nat -A POSTROUTING -o {wan} -s {sub_ip} -p udp"
                f" -j SNAT --to-source {public}:{first}-{last}"
            )
        commands += [
            f"iptables -t nat -A POSTROUTING -o {wan} -s {self.lan_subnet} -j MASQUERADE{random_fully}",
            f"iptables -A FORWARD -i {lan} -o {wan} -j ACCEPT",
            f"iptables -A FORWARD -i {wan} -o {lan} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        ]
        if self.hairpin_blocks:
            # Static DNAT back: the CGN's public address and a port of a block reach that subscriber,
            # from the internet and (hairpinning) from the CGN's own LAN, seen from the sender's public
            # address; the subscriber's home NAT filters as always.
            for sub_ip, first, last in self.hairpin_blocks:
                commands += [
                    f"iptables -t nat -A PREROUTING -d {public} -p udp --dport {first}:{last}"
                    f" -j DNAT --to-destination {sub_ip}",
                    f"iptables -t nat -A POSTROUTING -o {lan} -s {sub_ip} -p udp -m conntrack --ctstate DNAT"
                    f" -j SNAT --to-source {public}:{first}-{last}",
                ]
            commands += [
                f"iptables -A FORWARD -i {wan} -o {lan} -m conntrack --ctstate DNAT -j ACCEPT",
                f"iptables -A FORWARD -i {lan} -o {lan} -m conntrack --ctstate DNAT -j ACCEPT",
            ]
        commands.append(f"iptables -A FORWARD -i {wan} -o {lan} -j DROP")
        if self.wan_input == "drop":
            commands += [
                f"iptables -A INPUT -i {wan} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
                f"iptables -A INPUT -i {wan} -p icmp --icmp-type echo-request -j ACCEPT",
                f"iptables -A INPUT -i {wan} -j DROP",
            ]
        for intf in (wan, lan):
            if self.loss_pct:
                commands.append(
                    f"iptables -t raw -A PREROUTING -i {intf} -m statistic --mode random"
                    f" --probability {self.loss_pct / 100:.6f} -j DROP"
                )
            if self.delay_ms:
                commands.append(f"iptables -t raw -A PREROUTING -i {intf} -j NFQUEUE --queue-num 0")
        # Set after the rules: they make sure conntrack is in use in this
        # netns (on kernels with modular nf_conntrack the sysctls appear then).
        commands += [
            f"sysctl -w net.netfilter.nf_conntrack_udp_timeout={self.udp_timeout}",
            f"sysctl -w net.netfilter.nf_conntrack_udp_timeout_stream={self.udp_timeout_stream}",
        ]
        return commands + self.ipv6_commands()

    def ipv6_commands(self) -> list[str]:
        """With IPv6 (wan_ip6 given): a router, not a NAT, with a stateful firewall (RFC 6092's
        recommendation for home routers): the LAN's addresses are routed as they are, only replies
        to what went out come in, so unsolicited inbound is filtered per remote address and port
        like the IPv4 NAT's, and peers punch just the same. ``nodad``: usable at once."""
        if self.wan_ip6 is None or self.lan_ip6 is None:
            return []
        wan, lan = self.wan, self.lan
        commands = [
            "sysctl -w net.ipv6.conf.all.disable_ipv6=0",
            "sysctl -w net.ipv6.conf.all.forwarding=1",
            f"ip -6 addr add {self.wan_ip6}/64 dev {wan} nodad",
            f"ip -6 addr add {self.lan_ip6}/64 dev {lan} nodad",
        ]
        commands += [f"ip -6 route add {prefix} via {via}" for prefix, via in self.routes6]
        commands += [
            f"ip6tables -A FORWARD -i {lan} -o {wan} -j ACCEPT",
            f"ip6tables -A FORWARD -i {wan} -o {lan} -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
            f"ip6tables -A FORWARD -i {wan} -o {lan} -j DROP",
        ]
        return commands

    def config(self, **params: Any) -> dict[str, Any]:
        if self.wan_ip6 is not None:
            _ipv6_without_dad(self)
        result: dict[str, Any] = super().config(**params)
        self.setIP(self.lan_ip, intf=self.lan)
        if self.delay_ms:
            self._start_delayq()
        for command in self.nat_commands():
            self.run(*command.split())
        # Read the timeouts back: they are per-netns, prove they took.
        for key, want in (
            ("nf_conntrack_udp_timeout", self.udp_timeout),
            ("nf_conntrack_udp_timeout_stream", self.udp_timeout_stream),
        ):
            got = self.conntrack_sysctl(key)
            if got != want:
                raise RuntimeError(f"{self.name}: {key} is {got}, wanted {want}")
        return result

    def conntrack_sysctl(self, key: str) -> int:
        return int(self.run("sysctl", "-n", f"net.netfilter.{key}").strip())

    def _start_delayq(self, timeout_s: float = 10.0) -> None:
        """Start delayq.py (NFQUEUE 0) in this netns; wait until it is bound."""
        self.delayq = self.popen(
            [
                sys.executable,
                os.path.join(_here(), "delayq.py"),
                "--queue",
                "0",
                "--delay-ms",
                str(self.delay_ms),
                "--watch-pid",
                str(self.pid),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.delayq.stdout is not None
        readable, _, _ = select.select([self.delayq.stdout], [], [], timeout_s)
        line = self.delayq.stdout.readline() if readable else b""
        if line.strip() != b"ready":
            self._stop_delayq()
            raise RuntimeError(f"{self.name}: delayq.py did not start: {line!r}")

    def _stop_delayq(self) -> None:
        if self.delayq is None:
            return
        if self.delayq.poll() is None:
            self.delayq.terminate()
            try:
                self.delayq.wait(5)
            except subprocess.TimeoutExpired:
                self.delayq.kill()
                self.delayq.wait(5)
        for stream in (self.delayq.stdout, self.delayq.stderr):
            if stream is not None:
                stream.close()
        self.delayq = None

    def terminate(self) -> None:
        self._stop_delayq()
        super().terminate()


def _ipv6_without_dad(node: Node) -> None:
    """Make IPv6 usable at once: no duplicate address detection on the node's interfaces, and their
    link-local addresses made again without it (otherwise they stay "tentative" for about 2 s, and
    until then neighbour discovery, so all IPv6 traffic, fails). Runs before Mininet configures the
    interfaces: a link going down drops its routes, and IPv6 addresses."""
    for intf in node.intfList():
        if intf.name == "lo":
            continue
        for command in (
            f"sysctl -w net.ipv6.conf.{intf.name}.accept_dad=0",
            f"ip link set dev {intf.name} down",
            f"ip link set dev {intf.name} up",
        ):
            _, err, code = node.pexec(command.split())
            if code != 0:
                raise RuntimeError(f"{node.name}: {command} failed ({code}): {err.strip()}")


class EndHost(Host):  # type: ignore[misc]  # mininet is untyped
    """A server, public or private host; with ``ip6`` also (or, ``ipv4=False``, only) on IPv6.

    ``routes6`` are (prefix, via) pairs; ``nodad`` makes the address usable at once.
    """

    def __init__(
        self,
        name: str,
        ip6: str | None = None,
        routes6: Sequence[tuple[str, str]] = (),
        ipv4: bool = True,
        **params: Any,
    ) -> None:
        self.ip6, self.routes6, self.ipv4 = ip6, tuple(routes6), ipv4
        super().__init__(name, **params)

    def ipv6_commands(self) -> list[str]:
        if self.ip6 is None:
            return []
        intf = self.defaultIntf().name
        commands = [] if self.ipv4 else [f"ip -4 addr flush dev {intf}"]
        commands += ["sysctl -w net.ipv6.conf.all.disable_ipv6=0", f"ip -6 addr add {self.ip6} dev {intf} nodad"]
        return commands + [f"ip -6 route add {prefix} via {via}" for prefix, via in self.routes6]

    def config(self, **params: Any) -> dict[str, Any]:
        if self.ip6 is not None:
            _ipv6_without_dad(self)
        result: dict[str, Any] = super().config(**params)
        for command in self.ipv6_commands():
            _, err, code = self.pexec(command.split())
            if code != 0:
                raise RuntimeError(f"{self.name}: {command} failed ({code}): {err.strip()}")
        return result


class NatNetTopo(Topo):  # type: ignore[misc]  # mininet is untyped
    """One parametrised builder for every natnet network (see NetSpec)."""

    def build(self, spec: NetSpec | None = None) -> None:
        spec = spec or NetSpec()
        self.spec = spec
        v6 = spec.ipv6

        def end_host(name: str, ip: str, ip6: str, routes6: Sequence[tuple[str, str]], **params: Any) -> str:
            if v6:
                ipv4 = name not in spec.ipv6_only
                return str(self.addHost(name, cls=EndHost, ip=ip, ip6=ip6, routes6=routes6, ipv4=ipv4, **params))
            return str(self.addHost(name, ip=ip, **params))

        internet = self.addSwitch("s0")
        lans = {n: self.addSwitch(f"s{n}") for n in range(1, len(spec.nats) + 1)}
        for n, nat in enumerate(spec.nats, start=1):
            name = spec.nat_name(n)
            cgn_params: dict[str, Any] = {}
            if nat.behind:
                cgn_params["defaultRoute"] = f"via {spec.lan_ip(nat.behind)}"
                cgn_params["port_block"] = spec.port_block(n)
            if nat.role == "cgn":
                cgn_params["cgn_public_ip"] = spec.nat_wan_ip(n)
                if nat.hairpin:
                    blocks = [(spec.wan_ip(m), *block) for m in spec.subscribers(n) if (block := spec.port_block(m))]
                    cgn_params["hairpin_blocks"] = blocks
            v6_params = {}
            if v6:
                v6_params = {
                    "wan_ip6": spec.nat_wan_ip6(n),
                    "lan_ip6": spec.lan6_gateway(n),
                    "lan6_subnet": spec.lan6_subnet(n),
                    "routes6": spec.lan6_routes(except_nat=n),
                }
            self.addHost(
                name,
                cls=NATBox,
                ip=f"{spec.wan_ip(n)}/24",
                kind=nat.kind,
                lan_subnet=spec.lan_net(n),
                lan_ip=f"{spec.lan_ip(n)}/24",
                udp_timeout=nat.udp_timeout,
                udp_timeout_stream=nat.udp_timeout_stream,
                wan_input=nat.wan_input,
                delay_ms=spec.wan_delay_ms,
                loss_pct=spec.wan_loss_pct,
                **v6_params,
                **cgn_params,
            )
            # WAN first: NATBox relies on port 0 = WAN, port 1 = LAN. Behind a CGN, the WAN is on its LAN.
            self.addLink(name, lans[nat.behind] if nat.behind else internet, intfName1=f"{name}-eth0")
            lan = lans[n]
            self.addLink(name, lan, intfName1=f"{name}-eth1")
            for k in range(2, nat.hosts + 2):
                host = end_host(
                    spec.private_name(n, k),
                    f"{spec.private_ip(n, k)}/24",
                    f"{spec.private_ip6(n, k)}/64",
                    [("default", spec.lan6_gateway(n))],
                    defaultRoute=f"via {spec.lan_gateway(n)}",
                )
                self.addLink(host, lan)
        # Public hosts get no IPv4 routes besides their own /24: they cannot
        # address the private LANs, which is the point of NAT. IPv6 has no
        # NAT: they route each LAN's /64 via its router (the NAT box).
        routes6 = spec.lan6_routes()
        self.addLink(end_host("server", f"{spec.server_ip()}/24", f"{spec.server_ip6()}/64", routes6), internet)
        for p in range(1, spec.public_hosts + 1):
            name = f"public{p}"
            self.addLink(end_host(name, f"{spec.public_ip(p)}/24", f"{spec.public_ip6(p)}/64", routes6), internet)


# ---------------------------------------------------------------------------
# Building specs
# ---------------------------------------------------------------------------


def _per_nat(value: Any, count: int, what: str) -> list[Any]:
    if isinstance(value, (str, int, float)):
        return [value] * count
    values = list(value)
    if len(values) != count:
        raise ValueError(f"{what}: need {count} values, got {len(values)}")
    return values


def seed_spec(
    nat_kinds: Sequence[str] = ("cone", "cone"),
    *,
    udp_timeout: int | Sequence[int] = 30,
    udp_timeout_stream: int | Sequence[int] = 120,
    hosts_per_lan: int | Sequence[int] = 2,
    public_hosts: int = 1,
    wan_delay_ms: float = 0.0,
    loss_pct: float = 0.0,
    wan_input: str | Sequence[str] = "accept",
    ipv6: bool = False,
    ipv6_only: Sequence[str] = (),
) -> NetSpec:
    """The seed network; per-NAT settings take one value or one per NAT. ``ipv6``: dual-stack, with
    the ``ipv6_only`` hosts on IPv6 alone (see NetSpec)."""
    if isinstance(nat_kinds, str):
        nat_kinds = (nat_kinds,)
    count = len(nat_kinds)
    nats = tuple(
        NatSpec(kind=kind, hosts=hosts, udp_timeout=timeout, udp_timeout_stream=stream, wan_input=policy)
        for kind, hosts, timeout, stream, policy in zip(
            nat_kinds,
            _per_nat(hosts_per_lan, count, "hosts_per_lan"),
            _per_nat(udp_timeout, count, "udp_timeout"),
            _per_nat(udp_timeout_stream, count, "udp_timeout_stream"),
            _per_nat(wan_input, count, "wan_input"),
            strict=True,
        )
    )
    return NetSpec(
        nats=nats,
        public_hosts=public_hosts,
        wan_delay_ms=wan_delay_ms,
        wan_loss_pct=loss_pct,
        ipv6=ipv6,
        ipv6_only=tuple(ipv6_only),
    )


def pair_spec(kind1: str = "cone", kind2: str = "cone", *, same_nat: bool = False, **settings: Any) -> NetSpec:
    """Two peers plus ``server``: pri1_2 behind nat1 and pri2_2 behind nat2,
    or with same_nat=True pri1_2 and pri1_3 both behind nat1 (kind1).
    Other keyword arguments are those of seed_spec."""
    settings.setdefault("public_hosts", 0)
    if same_nat:
        return seed_spec((kind1,), hosts_per_lan=2, **settings)
    return seed_spec((kind1, kind2), hosts_per_lan=1, **settings)


ZOO_KINDS = ("open", "easy", "easy-trap", "hard", "hard-trap", "cgnat", "cgnat-hairpin", "same-lan")
"""The NAT zoo (topologies/README.md, "The NAT zoo", says each in RFC 4787 terms):
open: no NAT (a public host); easy: cone (endpoint-independent mapping), drops unsolicited WAN input;
easy-trap: cone, answers it (the conntrack trap); hard: symmetric (--random-fully), drops; hard-trap:
symmetric, answers; cgnat: an easy home NAT whose WAN is in 100.64.0.0/10 behind a carrier-grade NAT
(cone, drops) that several home NATs share and that does not hairpin; cgnat-hairpin: the same behind a
CGN with deterministic port blocks and static DNAT back, which hairpins; same-lan: two peers behind one
easy NAT."""

ZOO_HOME_NATS = {
    "easy": NatSpec("cone", wan_input="drop"),
    "easy-trap": NatSpec("cone", wan_input="accept"),
    "hard": NatSpec("symmetric", wan_input="drop"),
    "hard-trap": NatSpec("symmetric", wan_input="accept"),
}
ZOO_CGN_HOME = NatSpec("cone", wan_input="drop")
"""Behind a CGN: an ordinary home router (easy). The CGN itself is a cone NAT that drops unsolicited input."""


@dataclass(frozen=True)
class Zoo:
    """A network that holds every kind of the zoo, and where each kind's hosts are.

    sites[kind]: for each NAT of that kind (for ``open``: each public host pair, for ``cgnat`` and
    ``cgnat-hairpin``: each home NAT behind the one CGN), the host names behind it. Two hosts of
    different sites of one kind are behind different NAT boxes of that kind (for the CGN kinds: different
    home NATs behind the same CGN); ``same-lan`` has one site, whose hosts share a NAT.
    """

    spec: NetSpec
    sites: dict[str, tuple[tuple[str, ...], ...]]
    nat_of: dict[str, str]
    """Host name -> the NAT box in front of it (its LAN side is where its datagrams can be seen), or ''."""


def zoo(kinds: Sequence[str] = ZOO_KINDS, *, hosts_per_site: int = 2, **settings: Any) -> Zoo:
    """The zoo network: two NAT boxes with ``hosts_per_site`` hosts each for every NAT kind, a CGN
    with two home NATs behind it for each CGN kind, one NAT with two hosts for ``same-lan``, and
    2 x ``hosts_per_site`` public hosts for ``open`` (plus ``server``). ``settings``: NetSpec's
    public_hosts is set here; wan_delay_ms and loss_pct may be given."""
    if unknown := sorted(set(kinds) - set(ZOO_KINDS)):
        raise ValueError(f"unknown zoo kinds {unknown}; the kinds are {', '.join(ZOO_KINDS)}")
    nats: list[NatSpec] = []
    owned: list[tuple[str, int]] = []  # (kind, nat number) of the NATs with hosts, in order
    for kind in kinds:
        if kind in ZOO_HOME_NATS:
            for _ in range(2):
                nats.append(replace(ZOO_HOME_NATS[kind], hosts=hosts_per_site))
                owned.append((kind, len(nats)))
        elif kind in ("cgnat", "cgnat-hairpin"):
            nats.append(NatSpec("cone", hosts=0, wan_input="drop", role="cgn", hairpin=kind == "cgnat-hairpin"))
            cgn = len(nats)
            for _ in range(2):
                nats.append(replace(ZOO_CGN_HOME, hosts=hosts_per_site, behind=cgn))
                owned.append((kind, len(nats)))
        elif kind == "same-lan":
            nats.append(replace(ZOO_HOME_NATS["easy"], hosts=2))
            owned.append((kind, len(nats)))
    publics = 2 * hosts_per_site if "open" in kinds else 0
    spec = NetSpec(nats=tuple(nats), public_hosts=publics, **settings)
    sites: dict[str, list[tuple[str, ...]]] = {kind: [] for kind in kinds}
    nat_of: dict[str, str] = {}
    for kind, n in owned:
        names = tuple(spec.private_names(n))
        sites[kind].append(names)
        nat_of.update(dict.fromkeys(names, spec.nat_name(n)))
    if "open" in kinds:
        public = [f"public{p}" for p in range(1, publics + 1)]
        sites["open"] = [tuple(public[:hosts_per_site]), tuple(public[hosts_per_site:])]
        nat_of.update(dict.fromkeys(public, ""))
    return Zoo(spec, {kind: tuple(s) for kind, s in sites.items()}, nat_of)


def zoo_network(
    kinds: Sequence[str] = ZOO_KINDS, *, log_level: str = "warning", **settings: Any
) -> contextlib.AbstractContextManager[Mininet]:
    """The zoo network (see zoo()) as a context manager."""
    return network(zoo(kinds, **settings).spec, log_level=log_level)


def _spec_from_mn_args(nats: int, hosts: int, publics: int, args: Sequence[Any], kwargs: dict[str, Any]) -> NetSpec:
    """Turn ``mn --topo name,arg,...,key=value`` arguments into a NetSpec.

    Positional args are the NAT kinds (their number sets the NAT count).
    Keys: nats, hosts, publics, timeout, stream, wan_input, delay (ms),
    loss (%), ipv6 (0/1), ipv6_only (host names joined by "+"), and per NAT
    natN=kind, natN_hosts, natN_timeout, natN_stream, natN_wan_input.
    """
    kw = dict(kwargs)
    count = len(args) if args else int(kw.pop("nats", nats))
    kw.pop("nats", None)
    defaults = NatSpec(hosts=int(kw.pop("hosts", hosts)))
    defaults = replace(
        defaults,
        udp_timeout=int(kw.pop("timeout", defaults.udp_timeout)),
        udp_timeout_stream=int(kw.pop("stream", defaults.udp_timeout_stream)),
        wan_input=str(kw.pop("wan_input", defaults.wan_input)),
    )
    specs = []
    for n in range(1, count + 1):
        kind = str(args[n - 1]) if args else str(kw.pop(f"nat{n}", defaults.kind))
        kw.pop(f"nat{n}", None)
        specs.append(
            NatSpec(
                kind=kind,
                hosts=int(kw.pop(f"nat{n}_hosts", defaults.hosts)),
                udp_timeout=int(kw.pop(f"nat{n}_timeout", defaults.udp_timeout)),
                udp_timeout_stream=int(kw.pop(f"nat{n}_stream", defaults.udp_timeout_stream)),
                wan_input=str(kw.pop(f"nat{n}_wan_input", defaults.wan_input)),
            )
        )
    spec = NetSpec(
        nats=tuple(specs),
        public_hosts=int(kw.pop("publics", publics)),
        wan_delay_ms=float(kw.pop("delay", 0)),
        wan_loss_pct=float(kw.pop("loss", 0)),
        ipv6=bool(int(kw.pop("ipv6", 0))),
        ipv6_only=tuple(name for name in str(kw.pop("ipv6_only", "")).split("+") if name),
    )
    if kw:
        raise ValueError(f"unknown natnet topology parameters: {sorted(kw)}")
    return spec


def _seed_topo(*args: Any, **kwargs: Any) -> NatNetTopo:
    """mn --topo seed[,kind1,kind2,...][,key=value...]"""
    return NatNetTopo(spec=_spec_from_mn_args(2, 2, 1, args, kwargs))


def _pair_topo(*args: Any, same_nat: int = 0, **kwargs: Any) -> NatNetTopo:
    """mn --topo pair[,kind1,kind2][,same_nat=1][,key=value...]"""
    if same_nat:
        kinds = list(args[:1]) or [kwargs.pop("nat1", "cone")]
        return NatNetTopo(spec=_spec_from_mn_args(1, 2, 0, kinds, kwargs))
    return NatNetTopo(spec=_spec_from_mn_args(2, 1, 0, args, kwargs))


def _zoo_topo(*args: Any, hosts: int = 2, **kwargs: Any) -> NatNetTopo:
    """mn --topo zoo[,kind,...][,hosts=N][,delay=MS][,loss=PCT]: the NAT zoo (all kinds by default)."""
    settings = {"wan_delay_ms": float(kwargs.pop("delay", 0)), "wan_loss_pct": float(kwargs.pop("loss", 0))}
    if kwargs:
        raise ValueError(f"unknown natnet topology parameters: {sorted(kwargs)}")
    return NatNetTopo(spec=zoo(tuple(str(a) for a in args) or ZOO_KINDS, hosts_per_site=int(hosts), **settings).spec)


topos = {"seed": _seed_topo, "pair": _pair_topo, "zoo": _zoo_topo}


# ---------------------------------------------------------------------------
# Running networks and cleaning up
# ---------------------------------------------------------------------------

_OUR_NODE = re.compile(r"^(nat\d+|pri\d+_\d+|server|public\d+)$")
_OUR_SWITCH = re.compile(r"^s\d+$")


def _netns_of(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def _all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _kill_pids(pids: Sequence[int], grace_s: float = 2.0) -> None:
    """SIGTERM, then SIGKILL whatever is left after grace_s."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [pid for pid in alive if _netns_of(pid) is not None]
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _processes_in_netns(shell_pids: Sequence[int]) -> list[int]:
    """All processes (except the given shells) sharing a netns with them.

    Processes started with host.popen() are detached from the node's shell
    (own session), so Mininet's net.stop() leaves them running, and they keep
    the namespace alive.  Only namespaces other than our own are considered.
    """
    own = _netns_of(os.getpid())
    spaces = {ns for pid in shell_pids if (ns := _netns_of(pid)) and ns != own}
    return [pid for pid in _all_pids() if pid not in shell_pids and pid != os.getpid() and _netns_of(pid) in spaces]


def _netns_interfaces(pid: int) -> list[str]:
    """Interface names of pid's network namespace (from /proc/PID/net/dev)."""
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.read().splitlines()[2:]
    except OSError:
        return []
    return [line.split(":", 1)[0].strip() for line in lines if ":" in line]


def _orphan_natnet_pids(is_ours: Callable[[str], bool]) -> list[int]:
    """Processes whose netns holds a natnet node interface (NAME-ethN).

    Finds what is left inside a node's namespace after its Mininet shell is
    gone (e.g. the controlling Python process was SIGKILLed): such
    processes keep the namespace, and with it the interfaces, alive.
    """
    own = _netns_of(os.getpid())
    verdict: dict[str, bool] = {}
    found = []
    for pid in _all_pids():
        ns = _netns_of(pid)
        if ns is None or ns == own:
            continue
        if ns not in verdict:
            verdict[ns] = any(
                (m := re.fullmatch(r"(.+)-eth\d+", ifname)) is not None and is_ours(m.group(1))
                for ifname in _netns_interfaces(pid)
            )
        if verdict[ns]:
            found.append(pid)
    return found


def kill_node_processes(net: Mininet, rounds: int = 5) -> None:
    """Stop every process running inside the network's nodes (not the shells).

    Scans until a scan 0.1 s after the previous one finds nothing: a
    host.popen() started just before may still be entering its netns
    (mnexec -a) during the first scan.
    """
    shells = [node.pid for node in net.hosts if node.shell and node.shell.poll() is None]
    for round_ in range(rounds):
        pids = _processes_in_netns(shells)
        if pids:
            _kill_pids(pids)
        elif round_ > 0:
            return
        time.sleep(0.1)


def _mininet_shells(names: set[str] | None) -> list[int]:
    """PIDs of Mininet node shells ("bash ... -is mininet:NAME") for our names."""
    found = []
    for pid in _all_pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().rstrip(b"\0").split(b"\0")
        except OSError:
            continue
        if len(argv) >= 5 and argv[0].endswith(b"bash") and argv[-2] == b"-is" and argv[-1].startswith(b"mininet:"):
            name = argv[-1][len(b"mininet:") :].decode(errors="replace")
            if (name in names) if names is not None else bool(_OUR_NODE.match(name)):
                found.append(pid)
    return found


def cleanup(spec: NetSpec | None = None) -> None:
    """Remove what a natnet network may have left behind.

    With a spec: exactly its node and switch names; without one (this is
    what ``mn --custom topologies/natnet.py -c`` runs): every name of the
    natnet naming scheme (natN, priN_K, server, publicN, sN).  It kills
    leftover node shells and the processes in their namespaces, by PID, and
    deletes the Linux bridges and veth ends that remain in the root netns.
    Never touches other processes or interfaces.
    """
    names = set(spec.node_names()) if spec else None
    switches = set(spec.switch_names()) if spec else None

    def is_our_node(name: str) -> bool:
        return name in names if names is not None else bool(_OUR_NODE.match(name))

    def is_our_switch(name: str) -> bool:
        return name in switches if switches is not None else bool(_OUR_SWITCH.match(name))

    shells = _mininet_shells(names)
    if shells:
        _kill_pids(_processes_in_netns(shells))
        _kill_pids(shells)
    _kill_pids(_orphan_natnet_pids(is_our_node))
    for ifname in sorted(os.listdir("/sys/class/net")):
        veth = re.fullmatch(r"(.+)-eth\d+", ifname)
        if os.path.isdir(f"/sys/class/net/{ifname}/bridge"):
            ours = is_our_switch(ifname)
        else:
            ours = veth is not None and (is_our_switch(veth.group(1)) or is_our_node(veth.group(1)))
        if ours:
            subprocess.run(
                ["ip", "link", "del", ifname],
                check=False,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=10,
            )


@contextlib.contextmanager
def network(spec: NetSpec, *, log_level: str = "warning", skip_fix_limits: bool = True) -> Iterator[Mininet]:
    """Build and start the network of spec; always tear it down afterwards.

    skip_fix_limits: Mininet's first network normally runs fixLimits(),
    which raises several sysctls of the *root* namespace (socket buffer
    maxima, ARP cache sizes, ...).  These networks are tiny, so skip it.
    """
    if os.geteuid() != 0:
        raise PermissionError("Mininet networks need root")
    with one_network_at_a_time():
        yield from _network(spec, log_level=log_level, skip_fix_limits=skip_fix_limits)


LOCK_PATH = "/run/natnet.lock"
LOCK_WAIT_S = 1200.0


@contextlib.contextmanager
def one_network_at_a_time() -> Iterator[None]:
    """Node names are fixed, and cleanup() removes whatever carries them: two networks built at once
    would tear each other down. Queue behind any other natnet network on this machine (bounded)."""
    import fcntl

    with open(LOCK_PATH, "w") as lock:
        deadline = time.monotonic() + LOCK_WAIT_S
        told = False
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another natnet network held {LOCK_PATH} for {LOCK_WAIT_S:g} s") from None
                if not told:
                    print(f"natnet: waiting for another network on this machine ({LOCK_PATH})", file=sys.stderr)
                    told = True
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _network(spec: NetSpec, *, log_level: str, skip_fix_limits: bool) -> Iterator[Mininet]:
    setLogLevel(log_level)
    if skip_fix_limits:
        Mininet.inited = True
    cleanup(spec)  # leftovers of an earlier run that was killed
    net = Mininet(
        topo=NatNetTopo(spec=spec),
        switch=LinuxBridge,
        controller=None,
        link=Link,
        build=False,
        autoSetMacs=False,
        autoStaticArp=False,
    )
    try:
        net.build()
        net.start()
        yield net
    finally:
        try:
            kill_node_processes(net)
            net.stop()
        finally:
            cleanup(spec)


def seed_network(
    nat_kinds: Sequence[str] = ("cone", "cone"), *, log_level: str = "warning", **settings: Any
) -> contextlib.AbstractContextManager[Mininet]:
    """The seed network as a context manager; settings are seed_spec's."""
    return network(seed_spec(nat_kinds, **settings), log_level=log_level)


def pair_network(
    kind1: str = "cone", kind2: str = "cone", *, same_nat: bool = False, log_level: str = "warning", **settings: Any
) -> contextlib.AbstractContextManager[Mininet]:
    """The pair network as a context manager; see pair_spec."""
    return network(pair_spec(kind1, kind2, same_nat=same_nat, **settings), log_level=log_level)


if __name__ == "__main__":
    # /usr/bin/python3 topologies/natnet.py [cleanup]: print the seed plan or clean up.
    if sys.argv[1:] == ["cleanup"]:
        cleanup()
    else:
        _spec = seed_spec()
        print("nodes:", " ".join(_spec.node_names()))
        print("switches:", " ".join(_spec.switch_names()))
