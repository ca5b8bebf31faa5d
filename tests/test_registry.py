"""The registry alone: entries, expiry order, the address index, tokens and the versioned log."""

from __future__ import annotations

from natchat.proto import wire
from natchat.proto.registry import DELTA_LOG, Registry
from natchat.proto.wire import Addr, PeerInfo

from .sim import tokens

A = Addr("10.0.0.1", 1000)
B = Addr("10.0.0.2", 1000)
PRIV = Addr("192.168.1.2", 10081)


def info(cid: str, pub: Addr) -> PeerInfo:
    return PeerInfo(cid, pub, PRIV, b"k" * 32)


def registry(timeout: float = 30.0) -> Registry:
    return Registry(timeout=timeout, token_factory=tokens())


def test_add_commits_a_version_and_keeps_registration_order() -> None:
    reg = registry()
    b, change_b = reg.add(info("b", B), 0.0)
    a, change_a = reg.add(info("a", A), 1.0)
    assert (change_b, change_a) == (wire.change("b", gone=False), wire.change("a", gone=False))
    assert reg.version == 2 and reg.ids() == ["b", "a"] and reg.addresses() == [B, A]
    assert reg.addressed(b"x") == [(b"x", B), (b"x", A)]
    assert reg.token("a") == a.token != b.token and reg.token("x") is None
    assert reg.get("a") is a and reg.knows_addr(A) and not reg.knows_addr(Addr("10.0.0.3", 1))


def test_expiry_is_by_last_heard_and_touch_moves_a_client_last() -> None:
    reg = registry(timeout=10.0)
    a, _ = reg.add(info("a", A), 0.0)
    reg.add(info("b", B), 1.0)
    assert reg.next_deadline() == 10.0
    reg.touch(a, 5.0)
    assert reg.next_deadline() == 11.0  # b is now the oldest
    assert [e.info.id for e, _ in reg.expire(10.999)] == []
    gone = list(reg.expire(15.0))
    assert [(e.info.id, change) for e, change in gone] == [("b", wire.change("b", gone=True)), ("a", "-a")]
    assert len(reg) == 0 and reg.next_deadline() is None and reg.version == 4


def test_update_moves_the_address_index_and_returns_the_old_address() -> None:
    reg = registry()
    a, _ = reg.add(info("a", A), 0.0)
    old, change = reg.update(a, B, PRIV)
    assert old == A and change == wire.change("a", gone=False) and reg.version == 2
    assert reg.knows_addr(B) and not reg.knows_addr(A) and a.info.pub == B and a.info.key == b"k" * 32
    reg.update(a, B, PRIV, b"n" * 32)
    assert a.info.key == b"n" * 32


def test_changes_since_reaches_back_as_far_as_the_log() -> None:
    reg = registry()
    for i in range(DELTA_LOG + 10):
        reg.add(info(f"c{i}", Addr("10.1.0.1", i + 1)), 0.0)
    version = reg.version
    assert reg.changes_since(version) == [] and reg.changes_since(version + 5) == []
    assert reg.changes_since(version - 2) == [f"+c{version - 2}", f"+c{version - 1}"]
    assert reg.changes_since(0) is None  # "everything"
    assert reg.changes_since(version - DELTA_LOG) is not None  # the oldest change still logged
    assert reg.changes_since(version - DELTA_LOG - 1) is None
    assert reg.sizes() == {"entries": version, "expiry": version, "by_addr": version, "log": DELTA_LOG}


def test_preload_adds_without_committing_a_change() -> None:
    reg = registry()
    entry = reg.preload(info("a", A), "t" * 32, 3.0)
    assert reg.version == 0 and reg.changes_since(0) == []
    assert reg.get("a") is entry and reg.token("a") == "t" * 32 and reg.next_deadline() == 33.0


def test_remove_keeps_the_index_of_another_client_at_that_address() -> None:
    reg = registry()
    a, _ = reg.add(info("a", A), 0.0)
    reg.add(info("b", B), 0.0)
    reg.update(reg.get("b") or a, A, PRIV)  # b moved onto a's old address (a NAT reused it)
    reg.remove("a")
    assert reg.knows_addr(A) and reg.sizes()["by_addr"] == 1
