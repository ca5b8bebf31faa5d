"""natchat across real Linux NATs: the assignment's six behaviours and hole-punch statistics.

Runs topologies/seed_scenario.py (see its docstring): the seed network with cone NATs, a server and
five clients, checked from what the programs print and from packet captures; then fresh cross-NAT
pairs with 0 ms and 20 ms per NAT crossing. This test holds its JSON report to the issue's claims.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from .conftest import DEBIAN_PYTHON

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
    report = tmp_path / "seed.json"
    transcript = tmp_path / "transcript.log"
    proc = subprocess.run(
        [DEBIAN_PYTHON, str(SCRIPT), "--pairs", str(PAIRS), "--json", str(report), "--transcript", str(transcript)],
        capture_output=True,
        text=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
        cwd=REPO,
    )
    print(proc.stdout)  # the table, shown with -s or on failure
    results = json.loads(report.read_text()) if report.exists() else {"rows": [], "punch": []}
    failed = [row for row in results["rows"] if not row["passed"]]
    assert proc.returncode == 0 and not failed, (
        f"{failed}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}\n--- transcript ---\n{transcript.read_text()[-6000:]}"
    )
    assert [row["scenario"] for row in results["rows"][: len(BEHAVIOURS)]] == BEHAVIOURS
    delays = {p["delay_ms"]: p for p in results["punch"]}
    assert set(delays) == {0.0, 20.0}
    for stats in delays.values():
        assert stats["pairs"] == stats["delivered"] == PAIRS  # cross-NAT chat delivered, every time
        assert len(stats["attempts"]) == PAIRS and min(stats["attempts"]) >= 1
