"""The midPeer across real Linux NATs: the NAT-kind grid and the relay -> direct upgrade.

Runs topologies/midpeer_scenario.py (see its docstring) and holds its JSON report to the issue's
claims: every pair of {no NAT, cone, symmetric} and both same-NAT pairs deliver chat both ways on the
expected path (cone <-> symmetric and symmetric <-> symmetric relayed, same NAT on the LAN, the rest
direct); a standalone midPeer relays while a firewall rule blocks the direct path, and once the rule
is gone the path turns direct by itself with every message delivered exactly once, in order; and a
midPeer behind a NAT, reached through a forwarded port (natdemo's "stage 2"), relays too.
"""

from __future__ import annotations

from pathlib import Path

from .conftest import run_scenario

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "topologies" / "midpeer_scenario.py"

EXPECTED = {
    ("no NAT", "no NAT"): "direct",
    ("no NAT", "cone"): "direct",
    ("no NAT", "symmetric"): "direct",
    ("cone", "no NAT"): "direct",
    ("cone", "cone"): "direct",
    ("cone", "symmetric"): "direct",  # birthday punching (these NATs drop unsolicited WAN input)
    ("symmetric", "no NAT"): "direct",
    ("symmetric", "cone"): "direct",
    ("symmetric", "symmetric"): "relay",
}


def test_grid_of_nat_kinds_and_relay_to_direct_upgrade(tmp_path: Path) -> None:
    results = run_scenario(SCRIPT, tmp_path=tmp_path, timeout=600)
    cells = results["cells"]
    across = {tuple(c["kinds"].split(" -> ")): c["path"] for c in cells if c["expected"] != "lan"}
    assert across == EXPECTED
    same_nat = [c["path"] for c in cells if c["expected"] == "lan"]
    assert same_nat == ["lan", "lan"]
    assert all(c["passed"] and c["first_delivery_s"] is not None for c in cells)
    names = [row["scenario"] for row in results["rows"]]
    assert "standalone midPeer relays while the direct path is blocked" in names
    assert "relay -> direct once the block is lifted, nothing lost or repeated" in names
    assert "a midPeer behind a NAT, on a forwarded port, relays" in names
