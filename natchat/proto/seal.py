"""End-to-end sealing of what peers send each other, as pure functions (computation only, no I/O).

Each client makes an X25519 key pair per session; its public key travels with its registration and in
the peer list. Two peers derive the same pair key from their own private key and the other's public key
(X25519, then HKDF-SHA256 bound to both IDs). Every peer-to-peer datagram is sealed with it
(ChaCha20-Poly1305, a random 12-byte nonce, the datagram's other fields as associated data): a chat's
text is encrypted, and acknowledgements and probes carry a tag that authenticates them. A relay or the
server sees IDs, counters and sizes, never the text, and cannot forge or alter a datagram unnoticed.
See ``docs/PROTOCOL.md`` ("End-to-end sealing").
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES: Final = 32
"""A public key, and a pair key."""
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
"""What sealing adds to the plaintext."""
INFO_PREFIX: Final = b"natchat v1 "


class SealError(ValueError):
    """A sealed datagram that does not open with the pair key, or a peer key that cannot be used."""


class KeyPair:
    """One client session's X25519 key pair; ``public`` is the 32 raw bytes that go on the wire."""

    def __init__(self, private: X25519PrivateKey | None = None) -> None:
        self.private = private if private is not None else X25519PrivateKey.generate()
        self.public = self.private.public_key().public_bytes_raw()

    @classmethod
    def from_seed(cls, seed: bytes) -> KeyPair:
        """A fixed key pair from 32 bytes (tests)."""
        return cls(X25519PrivateKey.from_private_bytes(seed))


def pair_key(my_private: X25519PrivateKey, peer_public: bytes, my_id: str, peer_id: str) -> bytes:
    """The key two peers share: HKDF-SHA256 of their X25519 secret, bound to both IDs (sorted)."""
    try:
        secret = my_private.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError as exc:  # not 32 bytes, or a low-order point (an all-zero secret)
        raise SealError(f"unusable public key: {exc}") from None
    info = INFO_PREFIX + b" ".join(sorted([my_id.encode(), peer_id.encode()]))
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(secret)


def seal(
    key: bytes, header: bytes, plaintext: bytes, *, random: Callable[[int], bytes] = os.urandom
) -> tuple[bytes, bytes]:
    """Encrypt and authenticate ``plaintext``, and authenticate ``header``: ``(nonce, ciphertext)``.

    The ciphertext is :data:`TAG_BYTES` longer than the plaintext (an empty plaintext gives the tag
    alone). ``random`` makes the nonce (tests may pass a deterministic one)."""
    nonce = random(NONCE_BYTES)
    return nonce, ChaCha20Poly1305(key).encrypt(nonce, plaintext, header)


def open(key: bytes, nonce: bytes, header: bytes, ciphertext: bytes) -> bytes:
    """The plaintext that :func:`seal` sealed with ``key`` and ``header``; :class:`SealError` otherwise."""
    if len(nonce) != NONCE_BYTES:
        raise SealError(f"a nonce is {NONCE_BYTES} bytes, not {len(nonce)}")
    try:
        return ChaCha20Poly1305(key).decrypt(nonce, ciphertext, header)
    except InvalidTag:
        raise SealError("not sealed with the pair key, or altered") from None


class Keyring:
    """This session's key pair and the pair key with each peer, computed once per peer public key."""

    def __init__(self, my_id: str, keys: KeyPair) -> None:
        self.my_id = my_id
        self.keys = keys
        self._pairs: dict[str, tuple[bytes, bytes]] = {}  # peer ID -> (its public key, the pair key)

    @property
    def public(self) -> bytes:
        return self.keys.public

    def pair(self, peer_id: str, peer_public: bytes) -> bytes:
        """The pair key with ``peer_id`` whose public key is ``peer_public``; :class:`SealError` if unusable."""
        cached = self._pairs.get(peer_id)
        if cached is not None and cached[0] == peer_public:
            return cached[1]
        key = pair_key(self.keys.private, peer_public, self.my_id, peer_id)
        self._pairs[peer_id] = (peer_public, key)
        return key

    def forget(self, peer_id: str) -> None:
        self._pairs.pop(peer_id, None)
