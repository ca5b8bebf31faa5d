#!/usr/bin/python3
"""Figure 6 of ``make bench``: time from ``@chat`` to the first delivery across two cone NATs, in RTTs.

    /usr/bin/python3 bench/mininet_chat.py [--pairs 10] [--json PATH]      (root; Debian's python)

Builds the seed network with two cone NATs and 20 ms of one-way delay per NAT crossing
(topologies/natnet.py), runs ``natchat serve`` on ``server``, and for each of ``--pairs`` fresh pairs
starts ``natchat join`` on pri1_2 and pri2_2, types ``@chat`` on the first and times until the second
prints the message (topologies/seed_scenario.py's ``run_pairs``). The reference, measured in the same
network: the peers' round-trip time, the sum of ``ping`` from each private host to the server (a
peer-to-peer round trip crosses each NAT once in each direction, as these two pings together do; the
delay is added to every packet a NAT box receives). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "topologies"))

from hostproc import Transcript  # noqa: E402
from natnet import seed_network  # noqa: E402
from seed_scenario import SeedScenario, run_pairs  # noqa: E402

DELAY_MS = 20.0


def ping_ms(host: object, dest: str, count: int = 5) -> float:
    """Median ``ping`` round trip from ``host`` to ``dest``, in milliseconds."""
    out = host.cmd(f"ping -n -q -c {count} -i 0.2 {dest}")  # type: ignore[attr-defined]
    match = re.search(r"= [\d.]+/([\d.]+)/", out)
    if match is None:
        raise RuntimeError(f"ping {dest} failed: {out.strip()}")
    return float(match.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--json", metavar="PATH", help="also write the result there")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print(json.dumps({"skipped": "not root (Mininet needs network namespaces)"}))
        return 0
    sc = SeedScenario(Transcript(echo=False))
    with seed_network(("cone", "cone"), hosts_per_lan=1, public_hosts=0, wan_delay_ms=DELAY_MS) as net:
        server = net["server"].IP()
        rtt_ms = ping_ms(net["pri1_2"], server) + ping_ms(net["pri2_2"], server)
        run_pairs(sc, net, DELAY_MS, args.pairs)
    stats = sc.punch[0]
    times = sorted(stats.delivery_s)
    rtt = rtt_ms / 1000
    result = {
        "one_way_delay_ms_per_nat": DELAY_MS,
        "peer_rtt_ms": rtt_ms,
        "pairs": stats.pairs,
        "delivered": stats.delivered,
        "first_attempt": stats.first_attempt,
        "chat_to_delivery_median_ms": statistics.median(times) * 1000 if times else None,
        "chat_to_delivery_max_ms": times[-1] * 1000 if times else None,
        "median_rtts": statistics.median(times) / rtt if times else None,
        "max_rtts": times[-1] / rtt if times else None,
        "goal": "<= 3 RTT",
        "passed": all(r.passed for r in sc.rows),
    }
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
