"""The chat client as a sans-I/O object: a facade over the units that do the work.

The shell feeds :class:`ClientSession` datagrams (:meth:`~ClientSession.receive_datagram`), the time
(:meth:`~ClientSession.handle_timer`) and the user's commands (:meth:`~ClientSession.chat`,
:meth:`~ClientSession.show_list`, ...); it carries out :meth:`~ClientSession.actions` (sends, sockets to
open and close: :mod:`~natchat.proto.actions`), shows :meth:`~ClientSession.next_event`, and sleeps until
:meth:`~ClientSession.get_timer`, the earliest of the units' timers.

A datagram's way: :meth:`~ClientSession.receive_datagram` decodes it once and dispatches on who sent it.

* From the server or a midPeer (``join --midpeer``): its :class:`~natchat.proto.registration.Registration`
  takes the control messages (``registered``, ``challenge``, ``alive``, ``bye``, refusals) and says what
  they did (:class:`~natchat.proto.registration.Control`), which this facade turns into events; the
  server's list messages (``page``, ``delta``, ``details``) go through
  :meth:`~natchat.proto.peers.Peers.from_list` to the :class:`~natchat.proto.roster.Roster`, with every
  peer's details judged by the :class:`~natchat.proto.vetting.Vetting` (identities) before use; the
  introducer's (``punch_go``, ``punch_invite``, ``relayed``, ``error`` about a peer) go to
  :meth:`~natchat.proto.peers.Peers.from_introducer`; STUN answers to the
  :class:`~natchat.proto.mappingcheck.MappingCheck`.
* From a peer, directly or relayed: one path (:meth:`~natchat.proto.peers.Peers.from_peer`): held until
  the peer's key is known, opened (:class:`~natchat.proto.sealing.Sealer`), then handed to the peer's
  :class:`~natchat.proto.link.PeerLink`, which owns the direct path (punching), the relay policy and the
  reliable streams.

Owns: the session's state (registering, registered, leaving, done) and public address, the public API,
the one dispatch, and what the registrations' controls and timer outcomes mean to the user. May not:
keep peers' details, keys, identities or paths (the units do).

Keys are only ever taken from the server the session registered with, never from a midPeer (which
relays: it must not be able to read). ``docs/ARCHITECTURE.md`` draws the units and who calls whom.
"""

from __future__ import annotations

import dataclasses
import enum
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from . import seal, stun, wire
from .actions import Action, CloseSocket, OpenSocket, Send
from .directory import HELD_MAX, HELD_PEERS, SHOW_RETRY, SHOW_TRIES
from .events import ClientEvent, Joined, Left, Notice, PathReport, Refused, ServerLost
from .identity import Identity, PeerIdentities
from .identity_events import SendBlocked
from .link import Direct, Held, LinkConfig
from .mappingcheck import MappingCheck
from .peers import Peers
from .ports import Ports
from .punch import Phase
from .registration import Control, GaveUp, LeaveUnanswered, Lost, RegConfig, Registration
from .relaypolicy import RelayConfig
from .roster import Roster
from .sealing import Sealer, max_text_bytes
from .sockets import MAIN
from .stream import StreamConfig
from .vetting import Vetting
from .wire import Addr, PeerInfo

__all__ = [
    "HELD_MAX",
    "HELD_PEERS",
    "MAIN",
    "SHOW_RETRY",
    "SHOW_TRIES",
    "Blocked",
    "ClientConfig",
    "ClientSession",
    "CloseSocket",
    "MessageTooLong",
    "NoPeers",
    "OpenSocket",
    "Send",
    "State",
    "UnknownPeer",
]

_S = TypeVar("_S", wire.Probe, wire.Chat, wire.ChatAck)
PATH_MODES = ("auto", "direct", "relay")


@dataclass(frozen=True, slots=True)
class ClientConfig:
    keepalive: float = 10.0
    """Seconds between keepalives (shortened to a third of the server's timeout if that is less)."""
    deliver_within: float = 10.0
    """A chat message not acknowledged within this many seconds is reported as undeliverable."""
    attempt_time: float = 1.5
    """The longest one hole-punching attempt probes before the next starts from a fresh port; on a fast
    path attempts are shorter (``attempt_rtts`` round trips of the slower peer to the server, at least
    ``attempt_min``: between nearby trap NATs each attempt is a lottery, and more tickets a second win
    sooner)."""
    attempt_rtts: float = 10.0
    attempt_min: float = 0.04
    probe_interval: float = 0.1
    retransmit_first: float = 0.3
    retransmit_max: float = 2.0
    path_dead_after: float = 2.0
    """An up path that has not acknowledged anything for this long is punched again."""
    register_within: float | None = 10.0
    """Give up if the server never answers the first registration (None: keep trying)."""
    leave_within: float = 0.5
    """How long ``@exit`` waits for the server to acknowledge the deregistration."""
    window: int = 32
    """Messages in flight per peer."""
    path: str = "auto"
    """``auto``: direct when possible, else the midPeer relay (if the introducer offers one);
    ``direct``: never relay (``--direct-only``); ``relay``: always relay (``--relay-only``)."""
    relay_after: float = 3.0
    """Seconds without a direct path, with messages waiting, before they go through the relay."""
    upgrade_max: float = 15.0
    """While relayed, direct attempts are retried with growing gaps of at most this many seconds ..."""
    upgrade_for: float = 120.0
    """... for as long as the peer was chatted with in the last this many seconds."""
    ping_timeout: float = 2.0
    """How long ``@path`` waits for its round-trip measurement."""
    secret: bytes | None = None
    """``--secret``: the pre-shared secret the server (and midPeer) may require (never sent)."""
    spray: bool = True
    """Take part in birthday attempts (spray, fan out) when the introducer schedules them; false with
    ``--no-spray`` (``NATCHAT_NO_SPRAY``)."""
    learn_mapping: bool = True
    """Learn the mapping kind by STUN on a challenge that names the server's second port."""

    def __post_init__(self) -> None:
        if self.path not in PATH_MODES:
            raise ValueError(f"path must be one of {PATH_MODES}, not {self.path!r}")

    def link(self) -> LinkConfig:
        stream = StreamConfig(self.deliver_within, self.retransmit_first, self.retransmit_max, self.window)
        relay = RelayConfig(self.path, self.relay_after, self.upgrade_max, self.upgrade_for)
        return LinkConfig(
            stream,
            relay,
            self.probe_interval,
            self.path_dead_after,
            self.ping_timeout,
            self.deliver_within,
            self.spray,
        )


class UnknownPeer(LookupError):
    pass


class NoPeers(LookupError):
    """``@all`` with nobody else in the list."""


class MessageTooLong(ValueError):
    pass


class Blocked(LookupError):
    """``@chat`` to a peer whose identity is not the one pinned (or whose details were refused)."""

    def __init__(self, event: SendBlocked) -> None:
        super().__init__(event.message)
        self.event = event


class State(enum.Enum):
    REGISTERING = "registering"
    REGISTERED = "registered"
    LEAVING = "leaving"
    DONE = "done"


class ClientSession:
    def __init__(
        self,
        client_id: str,
        server: Addr,
        priv: Addr,
        *,
        config: ClientConfig | None = None,
        midpeer: Addr | None = None,
        rng: random.Random | None = None,
        keys: seal.KeyPair | None = None,
        identity: Identity | None = None,
        issued: int = 0,
        peer_ids: PeerIdentities | None = None,
    ) -> None:
        """``midpeer``: a standalone midPeer to introduce and relay (None: the server does both).
        ``keys``: this session's key pair (default: a new one); its public key goes with the registration.
        ``identity``: the long-term identity that signs it, with ``issued`` (when the run started, ns since
        1970; ``identity.py``); ``peer_ids``: what the session makes of its peers' identities, with the
        pin book (default with an identity: check signatures, pin nothing, as ``--ephemeral``). Without
        either, peers' identities are not checked."""
        self.id = client_id
        self.server, self.priv = server, priv
        self.config = config or ClientConfig()
        self._rng = rng or random.Random()
        self.state = State.REGISTERING
        self.pub: Addr | None = None
        self._sealer = Sealer(seal.Keyring(client_id, keys or seal.KeyPair()))
        self._io = io = Ports(client_id, self.config, priv, self._sealer)
        reg = RegConfig(self.config.keepalive, self.config.register_within, self.config.secret, spray=self.config.spray)
        home_reg = dataclasses.replace(reg, learn_mapping=self.config.learn_mapping)
        signed = None
        if identity is not None:
            signed = wire.signed(identity.public, identity.sign(client_id, self.public_key, issued), issued)
            peer_ids = peer_ids if peer_ids is not None else PeerIdentities(str(server), None)
        own = None if identity is None else identity.public
        self._vetting = io.vetting = Vetting(client_id, peer_ids, own, io.emit)
        self._home = io.home = Registration(
            client_id, server, priv, home_reg, self._sender(server), key=self.public_key, signed=signed
        )
        self._mapping = MappingCheck(server, self._rng, io)
        self._mid = None
        if midpeer is not None and midpeer != server:
            self._mid = Registration(
                client_id, midpeer, priv, reg, self._sender(midpeer), key=self.public_key, signed=signed
            )
        io.mid = self._mid
        self._roster: Roster[Held] = Roster(client_id, self._home_token, self._sender(server), io.emit, self._rng)
        io.roster = self._roster
        self._links = Peers(io, self.config.link(), self._rng)
        self._max_text: dict[bool, int] = {}  # may be relayed -> max_text_bytes

    # --- what the shell reads ---------------------------------------------------------------------

    def actions(self) -> list[Action]:
        self._roster.flush()
        return self._io.take_actions()

    def next_event(self) -> ClientEvent | None:
        return self._vetting.marked(self._io.events.popleft()) if self._io.events else None

    @property
    def identities(self) -> PeerIdentities | None:
        """What the session knows of its peers' identities (the shell saves its pins when dirty)."""
        return self._vetting.ids

    def peers(self) -> list[str]:
        """The peer list (IDs), in registration order, this client included."""
        return list(self._roster.list.ids)

    def details(self, peer: str) -> PeerInfo | None:
        """``peer``'s addresses and key, if this session has looked them up."""
        return self._roster.directory.get(peer)

    def path(self, peer: str) -> tuple[str, Addr | None]:
        """The phase of the direct path to ``peer`` and the address it goes to."""
        link = self._links.get(peer)
        return (link.path.phase.value, link.path.addr) if link else (Phase.IDLE.value, None)

    def path_kind(self, peer: str) -> str:
        """How messages to ``peer`` go now: ``lan``, ``direct``, ``relay`` or ``none``."""
        link = self._links.get(peer)
        return link.kind() if link is not None else "none"

    def streams(self, peer: str) -> tuple[int, int | None]:
        """The stream this session sends ``peer`` and the one it receives from it (None: none yet)."""
        link = self._links.get(peer)
        if link is None:
            raise UnknownPeer(peer)
        return link.tx.stream, link.rx.stream

    def unacknowledged(self, peer: str) -> list[int]:
        """The seqs of the messages to ``peer`` not acknowledged yet."""
        link = self._links.get(peer)
        return [] if link is None else list(link.tx.outbox)

    def held_for_keys(self) -> dict[str, int]:
        """Datagrams kept until their sender's key is looked up, per peer."""
        return self._roster.directory.held()

    def seal(self, msg: _S, plaintext: bytes = b"") -> _S | None:
        """``msg`` sealed for its ``dst`` as this session seals (None: no usable key looked up)."""
        return self._io.seal(msg, plaintext)

    @property
    def dropped(self) -> int:
        """Datagrams dropped (malformed, not for us, replays, unusable keys, ...)."""
        return self._io.dropped + self._roster.list.dropped + self._sealer.unsealable

    @property
    def rejected(self) -> int:
        """Datagrams dropped because they were not sealed with the key of the peer they claim to be from."""
        return self._sealer.rejected

    @property
    def public_key(self) -> bytes:
        return self._sealer.public

    @property
    def token(self) -> str | None:
        return self._home.token

    @property
    def relay_ready(self) -> bool:
        """Messages may go through a relay now."""
        return self._io.relay_ready

    @property
    def max_text_bytes(self) -> int:
        """The longest text (UTF-8 bytes) one message can carry (:func:`~natchat.proto.sealing.max_text_bytes`;
        wrapped for the relay if a relay may carry it)."""
        relayed = self.config.path != "direct" and (self._mid is not None or self._io.intro.relay)
        if relayed not in self._max_text:
            self._max_text[relayed] = max_text_bytes(self.id, relayed=relayed)
        return self._max_text[relayed]

    def get_timer(self) -> float | None:
        if self.state is State.DONE:
            return None
        if self.state is State.LEAVING:
            return self._home.get_timer()
        timers = [self._home.get_timer(), *self._roster.get_timers()]
        timers.extend(self._mapping.timers())
        if self._mid is not None:
            timers.append(self._mid.get_timer())
        timers.extend(self._links.get_timers())
        return min(timers)

    # --- what the shell feeds -----------------------------------------------------------------------

    def start(self, now: float) -> None:
        self._home.start(now)
        if self._mid is not None:
            self._mid.start(now)

    def socket_opened(self, sock: int, local: Addr, now: float) -> None:
        peer = self._io.pool.opened(sock, local)
        if peer is not None and (link := self._links.get(peer)) is not None:
            link.socket_opened(sock, now)

    def chat(self, peer: str, text: str, now: float, *, group: bool = False) -> None:
        """Queue ``text`` for ``peer``; raises :class:`UnknownPeer` or :class:`MessageTooLong`."""
        if peer not in self._roster or peer == self.id:
            raise UnknownPeer(peer)
        self._check_size(text)
        if (seen := self._links.blocked(peer)) is not None:
            raise Blocked(SendBlocked(peer, seen.status))
        self._roster.need(peer, now)
        self._links[peer].chat(text, group, now)

    def chat_all(self, text: str, now: float) -> list[str]:
        """Queue ``text`` for every other peer in the list (each delivered like ``chat``); their IDs.
        Raises :class:`NoPeers` when nobody else is online, :class:`MessageTooLong` if it cannot fit."""
        others = [peer for peer in self._roster.list.ids if peer != self.id]
        if not others:
            raise NoPeers()
        self._check_size(text)
        sent = []
        for peer in others:
            try:
                self.chat(peer, text, now, group=True)
            except Blocked as exc:
                self._io.emit(exc.event)  # the others get it
            else:
                sent.append(peer)
        return sent

    def _check_size(self, text: str) -> None:
        size = len(text.encode())
        if size > self.max_text_bytes or len(text) > wire.MAX_TEXT_CHARS:
            raise MessageTooLong(f"{size} bytes")

    def show_list(self, now: float) -> None:
        """``@show_list`` (:meth:`~natchat.proto.roster.Roster.show_list`)."""
        self._roster.show_list(now)

    def whois(self, peer: str, now: float) -> None:
        """``@whois``: a :class:`~natchat.proto.identity_events.WhoisReport` follows (at once if the peer's
        identity is known or the peer is not listed; else once its details are looked up)."""
        answer = self._vetting.whois(peer, listed=peer in self._roster)
        if answer == "unknown_peer":
            raise UnknownPeer(peer)
        if answer == "look_up":
            self._roster.need(peer, now)

    def trust(self, peer: str, now: float) -> None:
        """``@trust``: pin the identity ``peer`` is blocked for; a ``Trusted`` (its details are looked up
        again and messages flow) or a ``NothingToTrust`` follows."""
        if self._vetting.trust(peer):
            self._roster.need(peer, now)

    def measure_path(self, peer: str, now: float) -> None:
        """``@path``: measure the round trip to ``peer`` over its current path; a
        :class:`~natchat.proto.events.PathReport` follows (at once if there is no path)."""
        if peer not in self._roster or peer == self.id:
            raise UnknownPeer(peer)
        link = self._links.get(peer)
        if link is None or link.kind() == "none":
            self._io.emit(PathReport(peer, "none", None, None))
            return
        link.measure(now)

    def close(self, now: float) -> None:
        """Deregister (the shell exits on the :class:`Left` event)."""
        if self.state is State.DONE or self.state is State.LEAVING:
            return
        self._links.close()
        if self._mid is not None:
            self._mid.say_goodbye()
        if self._home.leave(now, self.config.leave_within):
            self.state = State.LEAVING
            return
        self.state = State.DONE
        self._io.emit(Left(acknowledged=False))

    def receive_datagram(self, data: bytes, sock: int, addr: Addr, now: float) -> None:
        """The one dispatch: by who sent it (the server, the midPeer, or a peer), then by type."""
        if self.state is State.DONE:
            return
        if stun.is_stun(data):  # before JSON: the answers that tell the mapping kind
            self._mapping.receive_stun(data, sock, addr, now)
            return
        try:
            msg = wire.decode(data)
        except wire.WireError:
            self._io.drop()
            return
        reg = self._home if addr == self.server else self._mid if self._mid and addr == self._mid.server else None
        if reg is None:
            self._links.from_peer(msg, Direct(sock, addr), now)
        elif (control := reg.on_control(msg, now)) is not None:
            (self._home_control if reg is self._home else self._mid_control)(control, msg, now)
        elif reg is self._home and self._links.from_list(msg, now):
            pass
        elif reg is self._io.intro:
            self._links.from_introducer(msg, sock, now)
        else:
            self._io.drop()

    def handle_timer(self, now: float) -> None:
        if self.state is State.LEAVING:
            if isinstance(self._home.handle_timer(now), LeaveUnanswered):
                self.state = State.DONE
                self._io.emit(Left(acknowledged=False))
            return
        self._mapping.handle_timer(now)
        self._home.list_version = self._roster.list.ver or 0
        outcome = self._home.handle_timer(now)
        if isinstance(outcome, GaveUp):
            self.state = State.DONE
            limit = self.config.register_within
            self._io.emit(Refused("no_answer", f"no answer from the server {self.server} within {limit:g} s"))
            return
        if isinstance(outcome, Lost):
            self._lost(outcome.reason)
        if self._mid is not None:
            outcome = self._mid.handle_timer(now)
            if isinstance(outcome, GaveUp):
                text = f"no answer from the midPeer {self._mid.server}; the server introduces, no relay"
                self._io.emit(Notice("midpeer_lost", text))
            elif isinstance(outcome, Lost):
                self._io.emit(
                    Notice("midpeer_lost", f"midPeer {self._mid.server}: {outcome.reason}; registering again")
                )
        self._roster.handle_timer(now)
        self._links.handle_timer(now)

    # --- the registrations: what their control messages mean ----------------------------------------

    def _home_control(self, control: Control, msg: wire.AnyMessage, now: float) -> None:
        emit = self._io.emit
        if control is Control.CHALLENGED:
            self._mapping.challenged(msg, now)
        match control, msg:
            case Control.JOINED, wire.Registered(pub=pub):
                self.state, self.pub = State.REGISTERED, pub
                emit(Joined(self.id, pub, again=self._home.again))
                self._roster.list.registered(now)
            case Control.NEEDS_SECRET, _:
                self.state = State.DONE
                emit(
                    Refused("secret_required", "the server requires a secret: give it with --secret or NATCHAT_SECRET")
                )
            case Control.CHALLENGED, _ if self._home.unchecked_secret:
                emit(Notice("secret_unchecked", "the server does not check the secret"))
            case Control.ALIVE, wire.Alive(ver=ver, pub=pub):
                self.pub = pub
                self._roster.alive(ver, now)
            case Control.BYE, _:
                self.state = State.DONE
                emit(Left(acknowledged=True))
            case Control.REFUSED, wire.Error(code=code, msg=text):
                self.state = State.DONE
                emit(Refused(code, text))
            case Control.FORGOTTEN, _:
                self._lost("the server does not know this client (restarted?)")
            case Control.STALE, wire.Registered() | wire.Challenge() | wire.Alive() | wire.Bye():
                self._io.drop()

    def _mid_control(self, control: Control, msg: wire.AnyMessage, now: float) -> None:
        server = self._io.mid.server if self._io.mid is not None else None
        match control, msg:
            case Control.JOINED, wire.Registered(relay=False):
                self._io.emit(Notice("no_relay", f"the midPeer {server} introduces but does not relay"))
            case Control.NEEDS_SECRET, _:
                text = f"the midPeer {server} requires a secret; the server introduces, no relay"
                self._io.emit(Notice("secret_required", text))
            case Control.REFUSED, wire.Error(code=code, msg=text):
                self._io.emit(Notice(code, f"midPeer {server}: {text}; the server introduces, no relay"))

    def _lost(self, reason: str) -> None:
        """The server is lost (its registration is already asking again)."""
        self._io.emit(ServerLost(reason))
        self.state = State.REGISTERING

    def _home_token(self) -> str | None:
        """The session's token while it is registered with the server."""
        return self.token if self.state is State.REGISTERED else None

    def _sender(self, server: Addr) -> Callable[[wire.Message], None]:
        return lambda msg: self._io.send(MAIN, msg, server)
