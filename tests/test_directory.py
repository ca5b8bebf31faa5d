"""The peer directory and @show_list's lookup alone (natchat/proto/directory.py)."""

from __future__ import annotations

from natchat.proto.directory import (
    HELD_MAX,
    HELD_PEERS,
    LOOKUP_BATCH,
    LOOKUP_FOR,
    LOOKUP_RETRY,
    SHOW_RETRY,
    SHOW_TRIES,
    PeerDirectory,
    ShowList,
)
from natchat.proto.wire import Addr, PeerInfo


def info(peer: str) -> PeerInfo:
    return PeerInfo(peer, Addr("10.0.0.1", 1000), Addr("192.168.1.2", 1000), bytes(32))


def test_needs_are_looked_up_in_batches_once_and_asked_again_for_a_while() -> None:
    d: PeerDirectory[str] = PeerDirectory()
    peers = [f"p{i}" for i in range(LOOKUP_BATCH + 3)]
    for p in peers:
        d.need(p, 1.0)
    d.need("p0", 1.5)  # wanted already
    assert d.lookups() == [peers[:LOOKUP_BATCH], peers[LOOKUP_BATCH:]]
    assert d.lookups() == [] and d.asked_at == 1.0 + LOOKUP_RETRY
    d.need("p0", 2.0)  # asked, not answered: not wanted again
    assert d.lookups() == []
    listed = set(peers) - {"p1"}
    again = d.ask_again(1.0 + LOOKUP_RETRY, listed)
    assert sorted(p for batch in again for p in batch) == sorted(listed)  # p1 left the list: not asked
    assert d.ask_again(1.0 + LOOKUP_FOR, listed) == [] and d.asked_at == float("inf")  # given up


def test_held_datagrams_come_back_in_order_when_the_key_arrives() -> None:
    d: PeerDirectory[str] = PeerDirectory()
    for i in range(HELD_MAX + 2):
        assert d.hold("a", f"d{i}", 1.0)
    assert d.held() == {"a": HELD_MAX}
    assert d.learn([info("a")]) == [("a", [f"d{i}" for i in range(2, HELD_MAX + 2)])]
    assert not d.hold("a", "later", 2.0) and d.get("a") == info("a") and d.held() == {}


def test_holding_is_bounded_in_peers() -> None:
    d: PeerDirectory[str] = PeerDirectory()
    for i in range(HELD_PEERS + 5):
        assert d.hold(f"p{i}", "x", 1.0)  # held, or dropped: never handled before a key
    assert len(d.held()) == HELD_PEERS
    assert sum(len(b) for b in d.lookups()) == HELD_PEERS  # and only those are looked up


def test_forget_stale_and_clear() -> None:
    d: PeerDirectory[str] = PeerDirectory()
    d.learn([info("a"), info("b")])
    d.stale("a")
    d.forget("b")
    assert d.get("a") is None and d.get("b") is None
    d.learn([info("c")])
    d.clear()
    assert d.get("c") is None


def test_show_list_pages_retries_and_its_words_when_unavailable() -> None:
    show = ShowList(q=0, send_at=0.0)
    show.retry(7, 1.0)
    assert (show.tries, show.q, show.send_at) == (1, 7, 1.0 + SHOW_RETRY)
    assert show.page(8, 1, 0, 2, [info("a")]) is None  # another lookup's page
    assert show.page(7, 1, 1, 2, [info("b")]) is None
    assert show.page(7, 1, 0, 3, [info("x")]) is None  # another page count: ignored
    assert show.page(7, 1, 0, 2, [info("a")]) == (info("a"), info("b"))
    show.too_often("at most once a second", 2.0)
    assert show.send_at == 2.0 + SHOW_RETRY
    for q in range(SHOW_TRIES - 1):
        show.retry(q, 3.0)
    assert show.exhausted
    assert show.unavailable() == f"the server did not send the list: at most once a second (asked {SHOW_TRIES} times)"
