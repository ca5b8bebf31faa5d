"""natchat across real Linux NATs: the assignment's six behaviours and hole-punch statistics.

Runs topologies/seed_scenario.py (see its docstring): the seed network with cone NATs, a server and
five clients, checked from what the programs print and from packet captures; then fresh cross-NAT
pairs with 0 ms and 20 ms per NAT crossing. This test holds its JSON report to the issue's claims.
"""

from __future__ import annotations

from pathlib import Path

from .conftest import run_scenario

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "topologies" / "seed_scenario.py"
PAIRS = 20

BEHAVIOURS = [
    "1 register: server prints each with its NAT's public address",
    "2 every @show_list equals the server's registry",
    "3 chat ring is delivered peer to peer, never via the server",
    "4 same-NAT peers talk over the private network",
    "5 @exit: server prints deregistrations, lists update",
    "6 SIGKILL: server prints 'is disappeared' after the timeout, lists update",
]


def test_seed_network_behaviours_and_punching(tmp_path: Path) -> None:
    results = run_scenario(SCRIPT, "--pairs", str(PAIRS), tmp_path=tmp_path, timeout=900)
    assert [row["scenario"] for row in results["rows"][: len(BEHAVIOURS)]] == BEHAVIOURS
    delays = {p["delay_ms"]: p for p in results["punch"]}
    assert set(delays) == {0.0, 20.0}
    for stats in delays.values():
        assert stats["pairs"] == stats["delivered"] == PAIRS  # cross-NAT chat delivered, every time
        assert len(stats["attempts"]) == PAIRS and min(stats["attempts"]) >= 1
