"""Tests that build real networks: Mininet hosts with Linux netfilter NAT boxes (run as root).

Each test runs a script from topologies/ under Debian's /usr/bin/python3 (where the mininet package
lives) as a subprocess; the script builds its own throw-away network namespaces and tears them down.
Where this machine cannot do that, every test here is skipped for one reason, shown as one line.
`make mininet-deps` (which `.ci/run` calls) installs what they need.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

DEBIAN_PYTHON = "/usr/bin/python3"
TOOLS = ("mn", "mnexec", "brctl", "iptables", "conntrack", "tcpdump", "ip", "ping")


@functools.cache
def why_not() -> str | None:
    """Why the Mininet tests cannot run on this machine, or None if they can."""
    if os.geteuid() != 0:
        return "Mininet tests need root (network namespaces); run `sudo make mininet-test`"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"Mininet tests need {', '.join(missing)}: run `make mininet-deps` (apt-get)"
    probe = subprocess.run([DEBIAN_PYTHON, "-c", "import mininet"], capture_output=True, timeout=60)
    if probe.returncode != 0:
        return f"Mininet tests need the mininet package for {DEBIAN_PYTHON}: run `make mininet-deps`"
    return None


@pytest.fixture(autouse=True)
def _needs_mininet() -> None:
    if (reason := why_not()) is not None:
        pytest.skip(reason)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark everything here ``mininet``, so that ``-m "not mininet"`` leaves it out."""
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(pytest.mark.mininet)


def run_scenario(script: Path, *args: str, tmp_path: Path, timeout: float) -> dict[str, Any]:
    """Run a topologies/ scenario script under Debian's Python; require exit 0 and no failed row.

    Returns its JSON report (``rows``, and whatever else the script writes). On failure the assertion
    shows the table, the script's errors and the end of the transcript.
    """
    report = tmp_path / "report.json"
    transcript = tmp_path / "transcript.log"
    proc = subprocess.run(
        [DEBIAN_PYTHON, str(script), *args, "--json", str(report), "--transcript", str(transcript)],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        cwd=script.parent.parent,
    )
    print(proc.stdout)  # the table, shown with -s or on failure
    results: dict[str, Any] = json.loads(report.read_text()) if report.exists() else {"rows": []}
    failed = [row for row in results["rows"] if not row["passed"]]
    log = transcript.read_text()[-6000:] if transcript.exists() else ""
    assert proc.returncode == 0 and not failed, (
        f"{failed}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}\n--- transcript ---\n{log}"
    )
    return results
