"""The list fan-out alone: batching by the send clock, deltas, shared snapshot pages and sync."""

from __future__ import annotations

from natchat.proto import wire
from natchat.proto.fanout import PAGES_REUSE, ListFanout, pack
from natchat.proto.wire import Addr

A = Addr("10.0.0.1", 1000)
B = Addr("10.0.0.2", 1000)


def decoded(out: list[tuple[bytes, Addr]]) -> list[tuple[wire.AnyMessage, Addr]]:
    return [(wire.decode(data), dst) for data, dst in out]


def test_changes_wait_for_the_send_clock_and_go_as_one_delta() -> None:
    fan = ListFanout()
    assert fan.record(1, "+a") is None and fan.record(2, "+b") is None
    assert fan.unsent == 2 and fan.take() == []
    data = fan.flush()
    fan.broadcast([(data, A), (data, B)])
    assert fan.unsent == 0
    delta = wire.ListDelta(ver=1, changes="+a +b")
    assert decoded(fan.take()) == [(delta, A), (delta, B)]


def test_a_full_batch_is_returned_to_go_now() -> None:
    fan = ListFanout()
    change = "+" + "x" * 32
    full = None
    version = 0
    while full is None:
        version += 1
        full = fan.record(version, change)
    delta = wire.decode(full)
    assert isinstance(delta, wire.ListDelta) and delta.ver == 1 and len(full) <= wire.MAX_DATAGRAM
    assert delta.changes.split() == [change] * (version - 1) and fan.unsent == 1  # the last one waits


def test_pages_are_shared_within_a_burst_only() -> None:
    fan = ListFanout()
    assert fan.pages_version(5) is None
    assert fan.send_snapshot(5, ["a", "b"], A) == 5
    assert fan.pages_version(5 + PAGES_REUSE) == 5 and fan.pages_version(6 + PAGES_REUSE) is None
    assert fan.send_snapshot(7, None, B) == 5  # the same pages, at their version
    out = fan.take()
    assert [dst for _, dst in out] == [A, B] and out[0][0] is out[1][0]  # encoded once
    assert wire.decode(out[1][0]) == wire.ListPage(ver=5, index=0, count=1, peers="a b")
    assert fan.pages_version(5) is None  # a new burst: the old pages went out


def test_a_big_list_is_paged_and_changes_since_are_packed() -> None:
    fan = ListFanout()
    ids = [f"client-{i:05d}" for i in range(2000)]
    fan.send_snapshot(9, ids, A)
    pages = [m for m, _ in decoded(fan.take())]
    assert all(isinstance(p, wire.ListPage) for p in pages) and len(pages) > 1
    assert [i for p in pages for i in p.ids()] == ids  # type: ignore[union-attr]
    fan.send_changes(3, [f"+{i}" for i in ids], B)
    deltas = [m for m, _ in decoded(fan.take())]
    assert len(deltas) > 1 and deltas[0].ver == 4  # type: ignore[union-attr]
    assert deltas[1].ver == 4 + len(deltas[0].changes.split())  # type: ignore[union-attr]


def test_pack_respects_the_datagram_budget() -> None:
    batches = list(pack(["x" * 99] * 100, 100))
    assert all(sum(len(i) + 1 for i in b) <= wire.MAX_DATAGRAM - 100 for b in batches)
    assert sum(len(b) for b in batches) == 100 and list(pack([], 0)) == []
