"""natchat over IPv6 in Mininet: topologies/ipv6_scenario.py (see its docstring) on the dual-stack seed
network: IPv6 registration, list equality, direct IPv6 chat proven by captures, an IPv4 client on the
same server, and what happens between an IPv4-only client and an IPv6-only one."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from .conftest import DEBIAN_PYTHON

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
    report = tmp_path / "ipv6.json"
    transcript = tmp_path / "transcript.log"
    proc = subprocess.run(
        [DEBIAN_PYTHON, str(SCRIPT), "--json", str(report), "--transcript", str(transcript)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        cwd=REPO,
    )
    print(proc.stdout)  # the table, shown with -s or on failure
    rows = json.loads(report.read_text())["rows"] if report.exists() else []
    failed = [row for row in rows if not row["passed"]]
    log = transcript.read_text()[-6000:] if transcript.exists() else ""
    assert proc.returncode == 0 and not failed, f"{failed}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}\n{log}"
    assert [row["scenario"] for row in rows] == STEPS
    details = {row["scenario"]: row["detail"] for row in rows}
    assert details[STEPS[1]] == "client1 [fd00:1::2]:10081; client2 [fd00:2::2]:10081; client3 10.0.0.4:10081"
