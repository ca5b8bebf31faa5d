"""The session's check of its own NAT's mapping kind, between the learner and the registrations.

When the server's ``challenge`` names its second port (and the home registration wants the kind), the
check asks both ports by STUN (:class:`~natchat.proto.mapping.MappingLearner`) from the registered
socket; once both answers are in, or the learner's deadline passes without them (unknown), it tells
both registrations, and their next ``register`` says so (``mapping``). The introducer chooses the
punching strategy per pair from that.

Owns: the learner. May not: register (the registrations send), or know about peers.
"""

from __future__ import annotations

import random

from . import wire
from .birthday import MappingKind
from .mapping import MappingLearner
from .ports import Ports
from .sockets import MAIN
from .wire import Addr

_ON_THE_WIRE: dict[MappingKind | None, wire.Mapping | None] = {
    MappingKind.ENDPOINT_INDEPENDENT: "independent",
    MappingKind.ENDPOINT_DEPENDENT: "dependent",
}


class MappingCheck:
    def __init__(self, server: Addr, rng: random.Random, io: Ports) -> None:
        self._server = server
        self._learner = MappingLearner(server, rng)
        self._io = io

    def challenged(self, msg: wire.AnyMessage, now: float) -> None:
        """The server challenged the home registration: ask both its ports, if it wants the kind."""
        home = self._io.home
        if isinstance(msg, wire.Challenge) and home.learning:
            assert msg.alt is not None
            for data, dst in self._learner.start(msg.alt, home.srtt, now):
                self._io.send_raw(MAIN, data, dst, None)

    def receive_stun(self, data: bytes, sock: int, addr: Addr, now: float) -> None:
        """A STUN datagram: the answer that makes the kind known, if it came from the server's host to the
        registered socket (the learner checks the rest); anything else is counted as dropped."""
        if sock == MAIN and addr.host == self._server.host and self._learner.receive_untrusted(data):
            self._known(now)
        else:
            self._io.drop()

    def timers(self) -> list[float]:
        learner = self._learner
        return [learner.deadline] if learner.waiting and learner.deadline is not None else []

    def handle_timer(self, now: float) -> None:
        if self._learner.expired(now):
            self._known(now)

    def _known(self, now: float) -> None:
        mapping = _ON_THE_WIRE.get(self._learner.kind)
        self._io.home.mapping_known(mapping, now)
        if (mid := self._io.mid) is not None:
            mid.mapping, mid.mapping_learned = mapping, True  # said with its next registration
