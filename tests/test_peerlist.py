"""The peer-list mirror alone (natchat/proto/peerlist.py): pages, versioned deltas, gaps, syncs."""

from __future__ import annotations

from natchat.proto import wire
from natchat.proto.peerlist import SYNC_RETRY, PeerList


def page(ver: int, index: int, count: int, ids: str) -> wire.ListPage:
    return wire.ListPage(ver=ver, index=index, count=count, peers=ids)


def test_a_snapshot_in_pages_arrives_in_any_order() -> None:
    plist = PeerList()
    assert plist.on_page(page(5, 1, 2, "c d")) is None
    update = plist.on_page(page(5, 0, 2, "a b"))
    assert update is not None and update.snapshot and update.joined == ("a", "b", "c", "d")
    assert list(plist.ids) == ["a", "b", "c", "d"] and plist.ver == 5 and plist.sync_at is None


def test_pages_older_than_the_list_or_malformed_are_dropped() -> None:
    plist = PeerList()
    plist.on_page(page(5, 0, 1, "a"))
    assert plist.on_page(page(4, 0, 1, "x")) is None and plist.on_page(page(6, 2, 2, "y")) is None
    assert list(plist.ids) == ["a"] and plist.dropped == 2


def test_deltas_apply_in_place_skip_what_was_had_and_say_what_changed() -> None:
    plist = PeerList()
    plist.replace(["a", "b"], 3)
    update = plist.on_delta(wire.ListDelta(ver=3, changes="+a +c -b +a"))  # version 3 was had already
    assert (update.joined, update.left, update.changed, update.gap) == (("c", "a"), ("b",), ("a",), False)
    assert list(plist.ids) == ["a", "c"] and plist.ver == 6 and plist.ids["a"] == 6
    again = plist.on_delta(wire.ListDelta(ver=4, changes="+c -b +a"))  # a repeated delta: nothing new
    assert not again.shown and plist.ver == 6


def test_a_gap_stops_applying_and_asks_for_the_rest_once_a_second() -> None:
    plist = PeerList()
    plist.replace(["a"], 1)
    update = plist.on_delta(wire.ListDelta(ver=3, changes="+z"))
    assert update.gap and "z" not in plist and plist.ver == 1
    assert plist.sync(10.0) == 1
    assert plist.sync(10.0 + SYNC_RETRY / 2) is None  # one is on its way
    assert plist.sync_due(10.0 + SYNC_RETRY) and plist.sync(10.0 + SYNC_RETRY) == 1


def test_before_its_first_list_a_client_asks_for_everything_after_a_second() -> None:
    plist = PeerList()
    plist.registered(100.0)
    assert plist.on_delta(wire.ListDelta(ver=1, changes="+a")).gap and plist.ver is None
    assert not plist.sync_due(100.5) and plist.sync_due(100.0 + SYNC_RETRY)
    assert plist.sync(101.0) == 0  # since 0: the whole list


def test_a_snapshot_says_who_left_and_whether_the_order_changed() -> None:
    plist = PeerList()
    plist.replace(["a", "b", "c"], 1)
    update = plist.replace(["a", "c", "b"], 2)
    assert update.reordered and update.shown and not update.joined and not update.left
    update = plist.replace(["c"], 3)
    assert update.left == ("a", "b") and update.count == 1
    assert plist.behind(4) and not plist.behind(3)
