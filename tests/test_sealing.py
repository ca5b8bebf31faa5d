"""Sealer alone (natchat/proto/sealing.py): round trips, rejections warned once a minute per peer, unusable
keys counted, and the longest text as docs/PROTOCOL.md (*The longest text*) states it."""

from __future__ import annotations

from natchat.proto import wire
from natchat.proto.events import Rejected
from natchat.proto.seal import KeyPair, Keyring
from natchat.proto.sealing import WARN_EVERY, Sealer, max_text_bytes

A = KeyPair.from_seed(bytes(range(32)))
B = KeyPair.from_seed(bytes(range(32, 64)))
M = KeyPair.from_seed(bytes(range(64, 96)))


def chat(src: str = "a", dst: str = "b") -> wire.Chat:
    return wire.Chat(src=src, dst=dst, stream=7, base=1, seq=1, group=False, n=b"", box=b"")


def test_seal_then_open_round_trip() -> None:
    a, b = Sealer(Keyring("a", A)), Sealer(Keyring("b", B))
    sealed = a.seal(chat(), B.public, b"hello")
    assert sealed is not None and len(sealed.n) == 12 and len(sealed.box) == 5 + 16
    assert b.open(sealed, A.public, 0.0) == (b"hello", None)
    ack = a.seal(wire.ChatAck(src="a", dst="b", stream=7, seq=1, n=b"", tag=b""), B.public)
    assert ack is not None and b.open(ack, A.public, 0.0) == (b"", None)
    assert (a.unsealable, b.rejected) == (0, 0)


def test_a_wrong_key_is_rejected_and_warned_once_a_minute_per_peer() -> None:
    assert WARN_EVERY == 60.0
    m, b = Sealer(Keyring("a", M)), Sealer(Keyring("b", B))  # M claims to be a
    forged = m.seal(chat(), B.public, b"x")
    assert forged is not None
    assert b.open(forged, A.public, 0.0) == (None, Rejected("a", "bad_seal"))
    assert b.open(forged, A.public, 59.9) == (None, None)
    other = Sealer(Keyring("c", M)).seal(chat(src="c"), B.public, b"x")
    assert other is not None and b.open(other, A.public, 1.0) == (None, Rejected("c", "bad_seal"))
    assert b.open(forged, A.public, 60.0) == (None, Rejected("a", "bad_seal"))
    assert b.rejected == 4


def test_an_unusable_key_is_counted_and_nothing_sealed() -> None:
    a = Sealer(Keyring("a", A))
    assert a.seal(chat(), bytes(32)) is None
    assert a.unsealable == 1


def test_the_longest_text_is_the_documented_figure() -> None:
    long_id = "x" * 32
    assert max_text_bytes(long_id, relayed=True) == 605
    assert max_text_bytes(long_id, relayed=False) == 719
    assert max_text_bytes("a", relayed=True) == 653
    assert max_text_bytes("a", relayed=False) == 743
