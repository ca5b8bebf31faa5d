"""natchat over IPv6 in Mininet: topologies/ipv6_scenario.py (see its docstring) on the dual-stack seed
network: IPv6 registration, list equality, direct IPv6 chat proven by captures, an IPv4 client on the
same server, and what happens between an IPv4-only client and an IPv6-only one."""

from __future__ import annotations

from pathlib import Path

from .conftest import run_scenario

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "topologies" / "ipv6_scenario.py"

STEPS = [
    "0 IPv6 routers pass outbound, filter unsolicited inbound",
    "1 register: IPv6 clients over IPv6, the IPv4 client over IPv4, one server socket",
    "2 every @show_list equals the server's registry",
    "3 IPv6 chat is delivered directly over IPv6, never via the server",
    "4 the IPv4 client and a dual-stack client chat over IPv4",
    "5 IPv4 client and IPv6-only client: 'no direct path', no crash",
    "6 @exit: the server prints each deregistration at its address",
]


def test_ipv6_network(tmp_path: Path) -> None:
    rows = run_scenario(SCRIPT, tmp_path=tmp_path, timeout=120)["rows"]
    assert [row["scenario"] for row in rows] == STEPS
    details = {row["scenario"]: row["detail"] for row in rows}
    assert details[STEPS[1]] == "client1 [fd00:1::2]:10081; client2 [fd00:2::2]:10081; client3 10.0.0.4:10081"
