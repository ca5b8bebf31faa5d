#!/usr/bin/python3
"""Run ``natchat probe-mapping`` behind real Linux NATs with known conntrack timeouts (run as root).

    /usr/bin/python3 topologies/probe_check.py [--natchat PATH] [-v]

Builds the seed network with nat1 a cone NAT and nat2 a symmetric one, each with its own short
``nf_conntrack_udp_timeout`` / ``nf_conntrack_udp_timeout_stream`` (they are per network namespace),
starts ``natchat serve`` on ``server``, and runs ``natchat probe-mapping --json`` on pri1_2 (behind nat1)
and pri2_2 (behind nat2) at the same time. Also asks the server for pri1_2's public address with a
third-party STUN client (``turnutils_stunclient``, from coturn) when it is installed.

Prints one JSON object on stdout: per NAT the kernel's settings read back from its namespace, the
probe's exit status, wall time, JSON answer and stderr; the STUN client's output; and the NAT's real
public address of each flow as conntrack shows it. ``tests/mininet/test_probe.py`` checks it; this
script only measures. All traffic stays inside the namespaces it creates.

Another natnet network on the same machine is waited for (natnet's lock).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from harness import is_root  # noqa: E402
from natnet import seed_network, seed_spec  # noqa: E402

KINDS = ("cone", "symmetric")
UDP_TIMEOUT = (5, 7)
"""nf_conntrack_udp_timeout of nat1 and nat2: short, so the whole check takes well under a minute."""
UDP_TIMEOUT_STREAM = (9, 12)
SERVER_PORT = 10080
PROBE_PORT = 10079
MAX_IDLE = 20
"""--max of the probes: longer than every timeout above, so each is bracketed."""
PROBE_LIMIT_S = 90.0
"""A probe still running after this long is killed (and reported as such)."""


def wait_bound(host: Any, port: int, within: float = 15.0) -> bool:
    """Wait until something in ``host`` listens on UDP ``port`` (the server finished starting)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if f":{port} " in host.cmd(f"ss -Huln sport = :{port}"):
            return True
        time.sleep(0.1)
    return False


def stun_client(host: Any, server_ip: str) -> dict[str, Any] | None:
    """Run turnutils_stunclient in ``host`` against the natchat server (None if not installed)."""
    binary = shutil.which("turnutils_stunclient")
    if binary is None:
        return None
    out, err, code = host.pexec([binary, "-p", str(SERVER_PORT), server_ip])
    return {"status": code, "stdout": out, "stderr": err}


def conntrack_public(nat: Any, private_ip: str, dport: int) -> list[str]:
    """The public ip:port nat1/nat2 gave flows from ``private_ip`` to port ``dport`` (reply tuple's dst)."""
    out, _, _ = nat.pexec(["conntrack", "-L", "-p", "udp", "-s", private_ip, "--dport", str(dport)])
    found = []
    for line in out.splitlines():
        dsts = [kv[len("dst=") :] for kv in line.split() if kv.startswith("dst=")]
        dports = [kv[len("dport=") :] for kv in line.split() if kv.startswith("dport=")]
        if len(dsts) >= 2 and len(dports) >= 2:  # the second pair is the reply tuple's
            found.append(f"{dsts[1]}:{dports[1]}")
    return found


def measure(natchat: str, verbose: bool) -> dict[str, Any]:
    """One run: build the network, serve, probe behind both NATs at once, tear down."""
    spec = seed_spec(KINDS, udp_timeout=UDP_TIMEOUT, udp_timeout_stream=UDP_TIMEOUT_STREAM, hosts_per_lan=1)
    server_ip = spec.server_ip()
    result: dict[str, Any] = {"server": f"{server_ip}:{SERVER_PORT}", "probe_port": PROBE_PORT, "nats": {}}
    t_build = time.monotonic()
    with seed_network(KINDS, udp_timeout=UDP_TIMEOUT, udp_timeout_stream=UDP_TIMEOUT_STREAM, hosts_per_lan=1) as net:
        result["build_s"] = round(time.monotonic() - t_build, 3)
        server = net["server"].popen(
            [natchat, "serve", "--port", str(SERVER_PORT), "--probe-port", str(PROBE_PORT)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            if not wait_bound(net["server"], PROBE_PORT):
                result["error"] = "natchat serve did not start"
                return result
            result["stun"] = stun_client(net["pri1_2"], server_ip)
            if result["stun"] is not None:  # the NAT's real mapping of the STUN client's flow
                result["stun"]["public_seen_by_conntrack"] = conntrack_public(
                    net["nat1"], spec.private_ip(1, 2), SERVER_PORT
                )
            argv = [natchat, "probe-mapping", "--server", f"{server_ip}:{SERVER_PORT}", "--max", str(MAX_IDLE)]
            probes = {
                n: (
                    time.monotonic(),
                    net[spec.private_name(n, 2)].popen(
                        [*argv, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                    ),
                )
                for n in range(1, len(KINDS) + 1)
            }
            for n, kind in enumerate(KINDS, start=1):
                started, proc = probes[n]
                try:
                    out, err = proc.communicate(timeout=max(1.0, started + PROBE_LIMIT_S - time.monotonic()))
                    status: int | None = proc.returncode
                except subprocess.TimeoutExpired:
                    proc.kill()
                    out, err = proc.communicate(timeout=5)
                    status = None
                wall = time.monotonic() - started
                nat = net[spec.nat_name(n)]
                try:
                    answer = json.loads(out)
                except ValueError:
                    answer = None
                result["nats"][spec.nat_name(n)] = {
                    "kind": kind,
                    "host": spec.private_name(n, 2),
                    "wan_ip": spec.nat_wan_ip(n),
                    "udp_timeout": nat.conntrack_sysctl("nf_conntrack_udp_timeout"),
                    "udp_timeout_stream": nat.conntrack_sysctl("nf_conntrack_udp_timeout_stream"),
                    "status": status,
                    "wall_s": round(wall, 3),
                    "answer": answer,
                    "stdout": out if answer is None else "",
                    "stderr": err[-2000:],
                    "public_seen_by_conntrack": conntrack_public(nat, spec.private_ip(n, 2), SERVER_PORT),
                }
            if verbose:
                for n in range(1, len(KINDS) + 1):
                    host = spec.private_name(n, 2)
                    out, err, _ = net[host].pexec(
                        [natchat, "probe-mapping", "--server", server_ip, "--max", "3", "--kind", "outbound"]
                    )
                    print(f"--- {host} (short run, text output):\n{out}{err}", file=sys.stderr)
        finally:
            result["server_died"] = server.poll() is not None
            server.terminate()
            try:
                _, server_err = server.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                server.kill()
                _, server_err = server.communicate(timeout=5)
            result["server_stderr"] = server_err[-2000:]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--natchat",
        default=os.environ.get("NATCHAT_BIN", os.path.join(REPO, ".venv", "bin", "natchat")),
        help="the natchat program to run inside the hosts",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="also print the probes' text output")
    args = parser.parse_args()
    if not is_root():
        return 2
    natchat = os.path.abspath(args.natchat)
    result = measure(natchat, args.verbose)
    print(json.dumps(result, indent=2))
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    sys.exit(main())
