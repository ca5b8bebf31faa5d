"""The sealing primitives: pair keys agree, sealed data opens only with the right key and header."""

from __future__ import annotations

import pytest

from natchat.proto import seal, wire
from natchat.proto.seal import KeyPair, Keyring, SealError

ALICE = KeyPair.from_seed(bytes(range(32)))
BOB = KeyPair.from_seed(bytes(range(32, 64)))
MALLORY = KeyPair.from_seed(bytes(range(64, 96)))


def test_both_peers_derive_the_same_pair_key_bound_to_their_ids() -> None:
    ab = seal.pair_key(ALICE.private, BOB.public, "alice", "bob")
    assert ab == seal.pair_key(BOB.private, ALICE.public, "bob", "alice")
    assert len(ab) == 32 and len(ALICE.public) == 32
    # the same keys under other names give another key: a key is good for one pair of IDs only
    assert ab != seal.pair_key(ALICE.private, BOB.public, "alice", "carol")
    assert ab != seal.pair_key(MALLORY.private, BOB.public, "alice", "bob")
    assert KeyPair().public != KeyPair().public  # a fresh key pair per session


def test_sealed_text_opens_with_the_pair_key_and_header_only() -> None:
    key = seal.pair_key(ALICE.private, BOB.public, "alice", "bob")
    nonce, box = seal.seal(key, b"header", "hello ☃".encode())
    assert len(nonce) == seal.NONCE_BYTES and len(box) == len("hello ☃".encode()) + seal.TAG_BYTES
    assert b"hello" not in box
    assert seal.open(key, nonce, b"header", box) == "hello ☃".encode()
    other = seal.pair_key(MALLORY.private, BOB.public, "mallory", "bob")
    with pytest.raises(SealError):
        seal.open(other, nonce, b"header", box)  # another key
    with pytest.raises(SealError):
        seal.open(key, nonce, b"headex", box)  # another header
    with pytest.raises(SealError):
        seal.open(key, nonce, b"header", box[:-1] + bytes([box[-1] ^ 1]))  # one bit flipped
    with pytest.raises(SealError):
        seal.open(key, bytes(12), b"header", box)  # another nonce
    with pytest.raises(SealError):
        seal.open(key, b"short", b"header", box)


def test_nonces_are_fresh_unless_a_test_fixes_them() -> None:
    key = bytes(32)
    assert seal.seal(key, b"", b"x")[0] != seal.seal(key, b"", b"x")[0]
    fixed = seal.seal(key, b"", b"x", random=lambda n: b"\x07" * n)
    assert fixed == seal.seal(key, b"", b"x", random=lambda n: b"\x07" * n)
    assert fixed[0] == b"\x07" * 12


def test_an_unusable_public_key_is_refused() -> None:
    with pytest.raises(SealError):
        seal.pair_key(ALICE.private, bytes(32), "alice", "bob")  # a low-order point: an all-zero secret
    with pytest.raises(SealError):
        seal.pair_key(ALICE.private, b"short", "alice", "bob")


def test_keyring_caches_per_peer_and_follows_a_new_key() -> None:
    ring = Keyring("alice", ALICE)
    first = ring.pair("bob", BOB.public)
    assert ring.pair("bob", BOB.public) is first  # computed once
    assert ring.pair("bob", MALLORY.public) != first  # bob came back with another key
    assert ring.pair("bob", BOB.public) == first


def test_the_header_covers_every_field_but_the_seal() -> None:
    chat = wire.Chat(src="a", dst="b", stream=7, base=1, seq=2, group=False, n=b"", box=b"")
    sealed = wire.Chat(src="a", dst="b", stream=7, base=1, seq=2, group=False, n=bytes(12), box=bytes(20))
    assert wire.sealed_header(chat) == wire.sealed_header(sealed)
    for changed in (
        wire.Chat(src="a", dst="c", stream=7, base=1, seq=2, group=False, n=b"", box=b""),
        wire.Chat(src="a", dst="b", stream=7, base=1, seq=3, group=False, n=b"", box=b""),
        wire.Chat(src="a", dst="b", stream=7, base=1, seq=2, group=True, n=b"", box=b""),
    ):
        assert wire.sealed_header(changed) != wire.sealed_header(chat)
    ack = wire.ChatAck(src="a", dst="b", stream=7, seq=2, n=bytes(12), tag=bytes(16))
    probe = wire.Probe(src="a", dst="b", attempt=1, n=bytes(12), tag=bytes(16), ack=True, ping=5)
    assert b'"t":"chat_ack"' in wire.sealed_header(ack) and b'"ping":5' in wire.sealed_header(probe)
    assert wire.sealed_header(probe) != wire.sealed_header(
        wire.Probe(src="a", dst="b", attempt=1, n=bytes(12), tag=bytes(16), ack=False, ping=5)
    )
