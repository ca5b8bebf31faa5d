"""The NAT grid, short: every ordered pair of the NAT zoo's kinds, two fresh pairs each.

Runs topologies/nat_grid.py --pairs 2 (see its docstring): one Mininet network with every kind
(open, easy, easy-trap, hard, hard-trap, cgnat, cgnat-hairpin, same-lan), `natchat serve --midpeer` on
the server, and for each cell two fresh pairs of `natchat join --json` chatting both ways. The script
fails a cell when a pair gets a worse path than the cell expects, loses a message, or is relayed without
the server relaying; this test holds its JSON report to that, and to the grid being whole.
"""

from __future__ import annotations

from pathlib import Path

from .conftest import run_scenario

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "topologies" / "nat_grid.py"
PAIRS = 2
KINDS = ("open", "easy", "easy-trap", "hard", "hard-trap", "cgnat", "cgnat-hairpin")
RANK = {"lan": 0, "direct": 1, "relay": 2}


def test_short_grid_over_the_nat_zoo(tmp_path: Path) -> None:
    results = run_scenario(SCRIPT, "--pairs", str(PAIRS), tmp_path=tmp_path, timeout=900)
    cells = {(c["first"], c["other"]): c for c in results["cells"]}
    wanted = {(a, b) for a in KINDS for b in KINDS} | {("same-lan", "same-lan")}
    assert set(cells) == wanted, "every ordered pair of kinds, and same-lan, is a cell"
    for key, cell in cells.items():
        assert len(cell["pairs"]) == PAIRS, key
        worse = []
        for pair in cell["pairs"]:
            assert pair["delivered"] == 2, (key, pair)
            assert pair["first_s"] is not None and pair["ports"] >= 2, (key, pair)
            if max(RANK[pair["path"]], RANK[pair["path_back"]]) > RANK[cell["expected"]]:
                # only a birthday cell ("direct%", share < 1) may relay some of its pairs (its one
                # attempt failed)
                assert cell["share"] < 1.0 and {pair["path"], pair["path_back"]} <= {"direct", "relay"}, (key, pair)
                worse.append(pair)
        assert cell["pooled"] or not worse, (key, worse)
    # with 2 pairs a cell the birthday cells are judged together, by the script's own row (which
    # run_scenario holds to passed): how many of them may relay is nat_grid.py's rule, not repeated here
    assert sum(c["pooled"] for c in cells.values()) == 12, "the easy/CGN <-> hard cells are the birthday cells"
    assert [r for r in results["rows"] if r["scenario"].startswith("birthday cells together")], results["rows"]
    # expectations that birthday punching does not change: cone and open direct, both symmetric relayed
    assert cells["easy", "easy"]["expected"] == cells["open", "hard"]["expected"] == "direct"
    assert cells["hard", "hard"]["expected"] == "relay"
    # carrier-grade NAT: behind one CGN, direct only where it hairpins
    assert {p["path"] for p in cells["cgnat-hairpin", "cgnat-hairpin"]["pairs"]} == {"direct"}
    assert {p["path"] for p in cells["cgnat", "cgnat"]["pairs"]} == {"relay"}
    assert {p["path"] for p in cells["same-lan", "same-lan"]["pairs"]} == {"lan"}
