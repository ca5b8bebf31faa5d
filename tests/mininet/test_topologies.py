"""The Mininet NAT topologies behave as topologies/README.md says.

Runs topologies/check_nat.py under Debian's Python (where the mininet
package lives) as a subprocess; it builds its own throw-away networks in
network namespaces and exits non-zero if any check fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHECKER = REPO / "topologies" / "check_nat.py"
DEBIAN_PYTHON = "/usr/bin/python3"


def _missing() -> str | None:
    """Why the Mininet checks cannot run here, or None if they can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("mn", "mnexec", "brctl", "iptables", "conntrack", "ip", "ping"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (apt-get install mininet bridge-utils iptables conntrack ...)"
    probe = subprocess.run([DEBIAN_PYTHON, "-c", "import mininet"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        return f"{DEBIAN_PYTHON} cannot import mininet"
    return None


pytestmark = [pytest.mark.mininet, pytest.mark.skipif(_missing() is not None, reason=str(_missing()))]


def test_nat_kinds_behave_as_documented() -> None:
    proc = subprocess.run(
        [DEBIAN_PYTHON, str(CHECKER)],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        cwd=REPO,
    )
    assert proc.returncode == 0, f"check_nat.py failed:\n{proc.stdout}\n{proc.stderr[-2000:]}"
    assert "0 failed" in proc.stdout
