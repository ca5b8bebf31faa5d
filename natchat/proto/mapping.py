"""The client's own mapping kind: one STUN Binding Request from the registered socket to the server's main
port and one to its second (``alt``) port; the two XOR-MAPPED-ADDRESSes give
:func:`~natchat.proto.birthday.classify` (the same address: endpoint-independent, "easy"; different:
endpoint-dependent, "hard").

Owns: the two transaction IDs (drawn from the ``rng`` it is given), the answers heard, and the deadline
(at most three round trips of the challenge exchange, at least 0.2 s, at most 1 s). May not: send
(it returns the requests to send), register, or know about peers.
"""

from __future__ import annotations

import random

from . import stun
from .birthday import MappingKind, classify
from .wire import Addr

WAIT_RTTS = 3.0
WAIT_MIN = 0.2
WAIT_MAX = 1.0


class MappingLearner:
    def __init__(self, server: Addr, rng: random.Random) -> None:
        self.server = server
        self._rng = rng
        self._ids: dict[bytes, str] = {}  # transaction ID -> "main" or "alt"
        self._seen: dict[str, Addr] = {}
        self.deadline: float | None = None
        self.kind: MappingKind | None = None
        """None until learned (or given up on: then :attr:`MappingKind.UNKNOWN`)."""

    @property
    def waiting(self) -> bool:
        return self.deadline is not None and self.kind is None

    def start(self, alt: int, rtt: float | None, now: float) -> list[tuple[bytes, Addr]]:
        """Ask both ports at once (again, if a challenge comes again); the requests to send."""
        self._ids.clear()
        self._seen.clear()
        self.kind = None
        self.deadline = now + min(WAIT_MAX, max(WAIT_MIN, WAIT_RTTS * (rtt or 0.0)))
        out = []
        for via, addr in (("main", self.server), ("alt", Addr(self.server.host, alt))):
            tid = self._rng.getrandbits(96).to_bytes(12, "big")
            self._ids[tid] = via
            out.append((stun.binding_request(tid), addr))
        return out

    def receive_untrusted(self, data: bytes) -> bool:
        """A STUN datagram from the server's address; True if that made the kind known."""
        try:
            msg = stun.parse(data)
        except stun.StunError:
            return False
        via = self._ids.get(msg.transaction_id)
        value = msg.attribute(stun.XOR_MAPPED_ADDRESS)
        if self.kind is not None or via is None or msg.cls != stun.SUCCESS or value is None:
            return False
        try:
            self._seen[via] = stun.decode_xor_address(value, msg.transaction_id)
        except stun.StunError:
            return False
        if len(self._seen) < 2:
            return False
        self.kind = classify(self._seen["main"], self._seen["alt"])
        return True

    def expired(self, now: float) -> bool:
        """True once, when the deadline passes without both answers (the kind is unknown then)."""
        if self.waiting and self.deadline is not None and now >= self.deadline:
            self.kind = MappingKind.UNKNOWN
            return True
        return False
