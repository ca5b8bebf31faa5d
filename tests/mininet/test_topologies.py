"""The Mininet NAT topologies behave as topologies/README.md says.

Runs topologies/check_nat.py under Debian's Python (where the mininet
package lives) as a subprocess; it builds its own throw-away networks in
network namespaces and exits non-zero if any check fails.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from .conftest import DEBIAN_PYTHON

REPO = Path(__file__).resolve().parents[2]
CHECKER = REPO / "topologies" / "check_nat.py"


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
