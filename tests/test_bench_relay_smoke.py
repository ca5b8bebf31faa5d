"""Figure 5 of ``make bench`` cannot rot: ``bench/relay.py --quick`` relays through natchat's midPeer and
the two forwarding loops with a few pairs of clients on loopback.

No timing is asserted (this machine's speed is the benchmark's business, not the test's); only that it
ran, relayed, forwarded what was sent intact, and reported every figure and the default limits.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_relay_benchmark_runs_and_measures_sanely() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "relay.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)

    assert result["pairs"] == 4 and result["quick"] is True
    assert result["relayed"] > 0
    assert result["server_stats"]["relayed"] >= result["relayed"]  # (the server also relayed the late ones)
    assert result["server_stats"]["relay_limited"] == result["server_stats"]["rate_limited"] == 0
    for kind in ("natchat", "bare", "raw"):
        assert result[f"{kind}_per_s"] > 0
        assert len(result["rates"][kind]) == result["rounds"]
        # a few datagrams in flight per pair on loopback never fill a socket buffer, and late arrivals are
        # counted: anything missing was dropped by the relay (or the loop), which must not happen here
        assert result["lost"][kind] == 0, result["lost"]
        assert result["forwarded_intact"][kind]  # natchat's relayed carries the sender's chat unchanged
    assert result["ratio"] > 0 and len(result["ratios"]) == result["rounds"]
    assert 300 <= result["relay_datagram_bytes"] <= 1200
    limits = result["default_limits"]
    assert limits["cap_per_sender_per_s"] == min(
        limits["relay_rate_per_client"],
        limits["relay_bytes_per_client"] / result["relay_datagram_bytes"],
        limits["source_rate"],
    )
