"""The session's outputs, and what its peer links may use: the one place datagrams and events leave from.

Owns: the action list the shell carries out (sends, sockets), the event queue the shell shows, the count
of dropped datagrams, and which registration introduces (the midPeer's, unless there is none or it never
answered: then the server's). May not: decide anything; it builds only the envelopes (``punch_req``,
``relay``) around what it is given.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, TypeVar

import msgspec

from . import birthday, wire
from .actions import Action, Send
from .events import ClientEvent
from .registration import Registration, RegState
from .sealing import Sealer
from .sockets import MAIN, SocketPool
from .wire import Addr, PeerInfo

if TYPE_CHECKING:
    from .client import ClientConfig
    from .link import Held
    from .roster import Roster
    from .vetting import Vetting

_S = TypeVar("_S", wire.Probe, wire.Chat, wire.ChatAck)


class Ports:
    """Implements :class:`~natchat.proto.link.LinkContext` for every link of one session."""

    def __init__(self, client_id: str, config: ClientConfig, priv: Addr, sealer: Sealer) -> None:
        self.id = client_id
        self.config = config
        self.sealer = sealer
        self.actions: list[Action] = []
        self.events: deque[ClientEvent] = deque()
        self.dropped = 0
        self.pool = SocketPool(priv, self.actions_append)
        self.spray_budget = birthday.spray_budget()
        """Probes sprayed per peer and in all, per minute (one for the session)."""
        self.fan_out_budget = birthday.fan_out_budget()
        """Fan-out sockets opened per peer and in all, per minute (one for the session)."""
        self.home: Registration
        self.mid: Registration | None = None
        self.roster: Roster[Held]
        self.vetting: Vetting

    def actions_append(self, action: Action) -> None:
        self.actions.append(action)

    def take_actions(self) -> list[Action]:
        out, self.actions = self.actions, []
        return out

    @property
    def intro(self) -> Registration:
        """Who introduces us to peers (and relays)."""
        if self.mid is not None and self.mid.state is not RegState.GAVE_UP:
            return self.mid
        return self.home

    @property
    def relay_ready(self) -> bool:
        """Messages may go through a relay now."""
        intro = self.intro
        return self.config.path != "direct" and intro.registered and intro.relay

    @property
    def relay_server(self) -> Addr:
        return self.intro.server

    @property
    def has_midpeer(self) -> bool:
        return self.mid is not None

    @property
    def intro_token(self) -> str | None:
        return self.intro.token

    @property
    def attempt_time(self) -> float:
        """How long a punching attempt lasts: long enough for a few round trips, short enough that a
        failed one (the conntrack trap) is soon retried from fresh ports."""
        return self.attempt_time_for(0.0)

    def attempt_time_for(self, pair_rtt: float) -> float:
        """:attr:`attempt_time` for a pair whose slower peer has round trip ``pair_rtt`` to the server
        (from its ``punch_go``): the round trips counted are the slower of that and our own, since a probe
        from the peer may take as long as its own way to the server and ours together."""
        cfg, srtt = self.config, self.intro.srtt
        if srtt is None:
            return cfg.attempt_time
        return min(cfg.attempt_time, max(cfg.attempt_min, cfg.attempt_rtts * max(srtt, pair_rtt)))

    def details(self, peer: str) -> PeerInfo | None:
        return self.roster.directory.get(peer)

    def need(self, peer: str, now: float) -> None:
        self.roster.need(peer, now)

    def seal(self, msg: _S, plaintext: bytes = b"") -> _S | None:
        info = self.roster.directory.get(msg.dst)
        return None if info is None else self.sealer.seal(msg, info.key, plaintext)

    def ask(self, sock: int, peer: str, attempt: int) -> None:
        intro = self.intro
        if intro.token is None:
            return  # registering again; ask once the introducer knows us
        priv, rtt = self.pool.local(sock), intro.srtt or 0.0
        req = wire.PunchRequest(id=self.id, token=intro.token, peer=peer, attempt=attempt, priv=priv, rtt=rtt)
        self.send(sock, req, intro.server)

    def send(self, sock: int, msg: wire.Message, addr: Addr) -> None:
        self.actions.append(Send(sock, wire.encode(msg), addr))

    def send_raw(self, sock: int, data: bytes, addr: Addr, not_before: float | None) -> None:
        self.actions.append(Send(sock, data, addr, not_before=not_before))

    def send_relayed(self, peer: str, msg: wire.Message) -> None:
        intro = self.intro
        if intro.token is None:
            return  # registering again; retransmissions will follow
        relay = wire.Relay(id=self.id, token=intro.token, dst=peer, data=msgspec.Raw(wire.encode(msg)))
        self.send(MAIN, relay, intro.server)

    def emit(self, event: ClientEvent) -> None:
        self.events.append(event)

    def drop(self) -> None:
        self.dropped += 1
