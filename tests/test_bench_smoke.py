"""``make bench`` cannot rot: its quick mode runs figures 1-4 with a few dozen clients on loopback.

No timing is asserted (this machine's speed is the benchmark's business, not the test's); only that
every part ran and measured something sane: every client's list converged to the server's, no datagram
was over 1200 bytes, every silent client was reported and none before its deadline.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_benchmark_runs_and_measures_sanely(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    options = ["--quick", "--only", "1", "2", "3", "4", "--out", str(out), "--plot", str(tmp_path / "plot.png")]
    done = subprocess.run(  # (figure 6 is Mininet: make bench)
        [sys.executable, str(ROOT / "bench" / "run.py"), *options],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())

    keepalive = results["keepalive"]
    assert keepalive["clients"] == 50
    assert keepalive["natchat_per_s"] > 0 and keepalive["bare_per_s"] > 0

    (storm,) = results["join_storm"]
    assert storm["clients"] == storm["tracked"] == 50
    assert storm["converged"] == storm["lists_equal"] == 50  # every client's list equals the server's
    assert 0 < storm["largest_datagram"] <= 1200
    assert storm["server_datagrams_per_registration"] > 0

    memory = results["memory"]
    assert [row["clients"] for row in memory["prefill"]] == [50, 500]
    assert memory["tracemalloc"] > 0

    for lag in results["disappearance"]:
        assert lag["reported"] == lag["measured"]  # every silent client was reported ...
        assert lag["lag_min_s"] >= 0  # ... and none before its deadline

    assert any(row.startswith("| 1.") for row in results["table"])
