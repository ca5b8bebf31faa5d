"""Sealing and opening peer-to-peer datagrams for this session (``seal.py`` has the cryptography).

Every ``probe``, ``chat`` and ``chat_ack`` is sealed with the key this client shares with the peer it
names (a chat's text encrypted into its box, the others carrying a tag), and opened only with the key of
the peer it claims to be from. ``docs/PROTOCOL.md`` (*End-to-end sealing*).

Owns: the keyring (pair keys per peer key), the counts of datagrams that could not be sealed or did not
open, and when the user was last warned about each peer. May not: look up keys (the caller passes the
peer's public key from its details), or decide what happens to a datagram that does not open (it is
dropped by the caller).
"""

from __future__ import annotations

from typing import TypeVar

import msgspec

from . import seal, wire
from .events import Rejected

WARN_EVERY = 60.0
"""Seconds between two warnings about datagrams not sealed with the key of the peer they claim to be from."""

_S = TypeVar("_S", wire.Probe, wire.Chat, wire.ChatAck)


class Sealer:
    def __init__(self, keyring: seal.Keyring) -> None:
        self.keyring = keyring
        self.unsealable = 0
        """Datagrams not sent because the peer's key cannot be used."""
        self.rejected = 0
        """Datagrams dropped because they were not sealed with the key of the peer they claim to be from."""
        self._warned: dict[str, float] = {}  # peer -> when we last warned about it

    @property
    def public(self) -> bytes:
        return self.keyring.public

    def seal(self, msg: _S, peer_key: bytes, plaintext: bytes = b"") -> _S | None:
        """``msg`` (made with an empty nonce, and an empty box or tag) sealed for its ``dst``:
        ``plaintext`` encrypted into the box (a chat), or just the tag; None if the key is unusable."""
        try:
            key = self.keyring.pair(msg.dst, peer_key)
        except seal.SealError:
            self.unsealable += 1
            return None
        nonce, sealed = seal.seal(key, wire.sealed_header(msg), plaintext)
        if isinstance(msg, wire.Chat):
            return msgspec.structs.replace(msg, n=nonce, box=sealed)
        return msgspec.structs.replace(msg, n=nonce, tag=sealed)

    def open(self, msg: wire.Sealed, peer_key: bytes, now: float) -> tuple[bytes | None, Rejected | None]:
        """What ``msg`` carries (a chat's text; nothing for the others) if it is sealed with the key of its
        ``src``; else None, counted, with a warning to show once a minute per peer."""
        sealed = msg.box if isinstance(msg, wire.Chat) else msg.tag
        try:
            key = self.keyring.pair(msg.src, peer_key)
            return seal.open(key, msg.n, wire.sealed_header(msg), sealed), None
        except seal.SealError:
            self.rejected += 1
            if now < self._warned.get(msg.src, float("-inf")) + WARN_EVERY:
                return None, None
            self._warned[msg.src] = now
            return None, Rejected(msg.src, "bad_seal")

    def forget(self, peer: str) -> None:
        self.keyring.forget(peer)


def max_text_bytes(my_id: str, *, relayed: bool) -> int:
    """The longest text (UTF-8 bytes) one message from ``my_id`` can carry: sealed, to a peer with the
    longest ID, with the largest counters, and wrapped in a ``relay`` if ``relayed``, its datagram stays
    within :data:`~natchat.proto.wire.MAX_DATAGRAM`."""
    low, high = 0, wire.MAX_DATAGRAM  # the datagram grows with the text: search
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if _largest_chat(my_id, mid, relayed) <= wire.MAX_DATAGRAM else (low, mid - 1)
    return low


def _largest_chat(my_id: str, text_bytes: int, relayed: bool) -> int:
    box = bytes(text_bytes + seal.TAG_BYTES)
    longest = wire.Chat(src=my_id, dst="x" * 32, stream=2**53, base=2**53, seq=2**53, group=True, n=bytes(12), box=box)
    size = wire.encoded_size(longest)
    if relayed:
        relay = wire.Relay(id=my_id, token="0" * 32, dst="x" * 32, data=msgspec.Raw(b"0" * size))
        size = wire.encoded_size(relay)
    return size
