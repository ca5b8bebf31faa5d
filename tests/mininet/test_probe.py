"""``natchat probe-mapping`` measures real Linux NATs right (Mininet, run as root).

topologies/probe_check.py (under Debian's Python, where mininet lives) builds the seed network with a
cone NAT (nat1) and a symmetric one (nat2), each with its own short conntrack UDP timeouts, runs
``natchat serve`` on ``server`` and ``natchat probe-mapping --json`` behind both NATs at once, and
prints what happened as JSON. This test holds the answers against what the kernel was told:

* every kind of mapping is bracketed within 1 s of the kernel's timeout: ``outbound`` and ``reply``
  by ``nf_conntrack_udp_timeout``, ``stream`` by ``nf_conntrack_udp_timeout_stream`` (four different
  values across the two NATs);
* each probe's wall time stays within the longest lifetime it found plus a few seconds (all idle
  times are tested at once);
* the cone NAT's mapping is endpoint-independent, the symmetric one's address-and-port-dependent,
  both filter by address and port, and both report the NAT's public address;
* a third-party STUN client behind the cone NAT learns that NAT's public address from ``serve``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "topologies" / "probe_check.py"
DEBIAN_PYTHON = "/usr/bin/python3"
NATCHAT = REPO / ".venv" / "bin" / "natchat"

STREAM_GAP = 3.0
"""The ``stream`` kind's setup before its idle time starts (ProbeConfig.stream_gap)."""
SLACK = 4.0
"""Wall time allowed beyond the longest lifetime, its setup and one resolution step: the confirming
idle time (1 s), the grace for a late datagram (0.5 s), and starting Python and the network."""


def _missing() -> str | None:
    """Why the Mininet checks cannot run here, or None if they can."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("mn", "mnexec", "brctl", "iptables", "conntrack", "ip", "ss"):
        if shutil.which(tool) is None:
            return f"{tool} not installed (apt-get install mininet bridge-utils iptables conntrack iproute2 ...)"
    probe = subprocess.run([DEBIAN_PYTHON, "-c", "import mininet"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        return f"{DEBIAN_PYTHON} cannot import mininet"
    if not NATCHAT.exists():
        return f"{NATCHAT} missing (make install)"
    return None


pytestmark = [pytest.mark.mininet, pytest.mark.skipif(_missing() is not None, reason=str(_missing()))]


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    proc = subprocess.run(
        [DEBIAN_PYTHON, str(SCRIPT), "--natchat", str(NATCHAT)],
        capture_output=True,
        text=True,
        timeout=1500,  # natnet queues behind another network on this machine for up to 1200 s
        stdin=subprocess.DEVNULL,
        cwd=REPO,
    )
    assert proc.returncode == 0, f"probe_check.py failed:\n{proc.stdout}\n{proc.stderr[-3000:]}"
    result: dict[str, Any] = json.loads(proc.stdout)
    assert not result["server_died"], f"natchat serve exited during the run: {result['server_stderr']}"
    return result


def _probe(run: dict[str, Any], nat: str) -> dict[str, Any]:
    found: dict[str, Any] = run["nats"][nat]
    assert found["status"] == 0, f"{nat}: probe-mapping failed ({found['status']}): {found['stderr']}"
    assert found["answer"] is not None, f"{nat}: no JSON answer: {found['stdout']}"
    return found


@pytest.mark.parametrize("nat", ["nat1", "nat2"])
def test_each_kind_is_within_a_second_of_the_kernel(run: dict[str, Any], nat: str) -> None:
    found = _probe(run, nat)
    kernel = {"outbound": found["udp_timeout"], "reply": found["udp_timeout"], "stream": found["udp_timeout_stream"]}
    lifetimes = {lt["kind"]: lt for lt in found["answer"]["lifetimes"]}
    assert set(lifetimes) == set(kernel)
    for kind, seconds in kernel.items():
        lt = lifetimes[kind]
        assert lt["survived"] is not None and lt["expired"] is not None, f"{nat} {kind}: {lt}"
        assert abs(lt["survived"] - seconds) <= 1.0 and abs(lt["expired"] - seconds) <= 1.0, (
            f"{nat} {kind}: kernel {seconds} s, probe says between {lt['survived']} and {lt['expired']} s"
        )
        assert lt["survived"] < lt["expired"]


def test_the_kernel_values_differ_so_the_probe_cannot_pass_by_luck(run: dict[str, Any]) -> None:
    values = {run["nats"][nat][key] for nat in ("nat1", "nat2") for key in ("udp_timeout", "udp_timeout_stream")}
    assert len(values) == 4


@pytest.mark.parametrize("nat", ["nat1", "nat2"])
def test_wall_time_is_the_longest_lifetime_plus_a_few_seconds(run: dict[str, Any], nat: str) -> None:
    found = _probe(run, nat)
    resolution = found["answer"]["tested"]["step"]
    longest = max(found["udp_timeout"], found["udp_timeout_stream"] + STREAM_GAP)
    assert found["wall_s"] <= longest + resolution + SLACK, f"{nat}: took {found['wall_s']} s"
    assert found["answer"]["elapsed"] <= found["wall_s"]


def test_cone_nat_is_classified_endpoint_independent(run: dict[str, Any]) -> None:
    answer = _probe(run, "nat1")["answer"]
    assert answer["nat"] is True
    assert answer["mapping"] == ["endpoint-independent", "address-dependent"]
    assert answer["mapping_seen"]["main"] == answer["mapping_seen"]["alt"]
    assert answer["filtering"] == ["address-and-port-dependent"]


def test_symmetric_nat_is_classified_address_and_port_dependent(run: dict[str, Any]) -> None:
    answer = _probe(run, "nat2")["answer"]
    assert answer["nat"] is True
    assert answer["mapping"] == ["address-and-port-dependent"]
    assert answer["mapping_seen"]["main"] != answer["mapping_seen"]["alt"]
    assert answer["filtering"] == ["address-and-port-dependent"]


@pytest.mark.parametrize("nat", ["nat1", "nat2"])
def test_public_address_is_the_one_conntrack_gave(run: dict[str, Any], nat: str) -> None:
    found = _probe(run, nat)
    public = found["answer"]["public"]
    assert public.split(":")[0] == found["wan_ip"]
    assert public in found["public_seen_by_conntrack"]


def test_third_party_stun_client_behind_the_cone_nat_learns_its_public_address(run: dict[str, Any]) -> None:
    stun = run["stun"]
    if stun is None:
        pytest.skip("turnutils_stunclient not installed (Debian package: coturn)")
    assert stun["status"] == 0, stun
    printed = set(re.findall(r"UDP reflexive addr: (\S+:\d+)", stun["stdout"]))
    assert len(printed) == 1, stun["stdout"]
    (address,) = printed
    assert address.startswith(f"{run['nats']['nat1']['wan_ip']}:")
    assert address in stun["public_seen_by_conntrack"]
