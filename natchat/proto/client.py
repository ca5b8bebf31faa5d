"""The chat client as a sans-I/O object: registration, keepalive, the peer list, punching and delivery.

The shell owns the sockets. Socket ``MAIN`` (0) is the one registered with the server; the session may
ask for more (:class:`OpenSocket`): a hole-punching attempt that failed is retried from a fresh local
port, because the failed attempt can leave a conntrack entry on the peer's NAT that makes it give its
host a different port toward us for as long as the entry lives (the "conntrack trap", see
``docs/PROTOCOL.md``). The shell reports the new socket's local address with :meth:`socket_opened`.

Who introduces: the rendezvous server, or a standalone midPeer (``join --midpeer``) with which the
session keeps a second :class:`~natchat.proto.registration.Registration`. When the introducer offers a
relay, a message that finds no direct path within ``relay_after`` seconds goes through it (wrapped in
:class:`~natchat.proto.wire.Relay`), and direct attempts go on in the background, with growing gaps;
the reliable stream is the same whichever way its datagrams go, so moving between paths neither loses
nor duplicates a message.

Paths to peers, per peer (:class:`_Link`):

``IDLE`` --(a message to send, or the server says "go")--> ``ASKING`` --(``PunchGo``)--> ``PROBING``
--(a probe or any datagram from the peer)--> ``UP``. An attempt that ends without a path is followed by
the next one from a fresh socket while there is something to deliver; a path that stops acknowledging
goes back to punching. Messages are numbered per stream, retransmitted with backoff, acknowledged,
deduplicated and shown in order; one that is not acknowledged within ``deliver_within`` fails (with
everything queued behind it, so order holds) and the stream starts afresh.

The list holds IDs only. A peer's details (addresses and the public key that seals what goes to and
comes from it) are looked up from the server when the session first needs them (:class:`~natchat.proto.wire.Lookup`,
batched in :meth:`ClientSession.actions`), or come with the server's ``punch_go``; keys are only ever
taken from the server the session registered with, never from a midPeer (which relays: it must not
be able to read). ``@show_list`` looks up everyone (:meth:`ClientSession.show_list`).
"""

from __future__ import annotations

import enum
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import msgspec

from . import seal, wire
from .actions import Action, CloseSocket, OpenSocket, Send
from .events import (
    ChatReceived,
    ClientEvent,
    DeliveryFailed,
    Joined,
    Left,
    ListChanged,
    ListShown,
    Notice,
    PathChanged,
    PathReport,
    PathUp,
    Refused,
    Rejected,
    ServerLost,
)
from .registration import RegConfig, Registration, RegState
from .server import SHOW_EVERY
from .wire import Addr, PeerInfo

MAIN = 0
"""Socket number of the socket registered with the server."""

LOOKUP_BATCH = 16
"""Peers per ``lookup`` datagram (the wire's limit)."""
LOOKUP_RETRY = 1.0
"""Seconds before a lookup without an answer is asked again ..."""
LOOKUP_FOR = 10.0
"""... for this long (a later need asks afresh)."""
HELD_MAX = 8
HELD_PEERS = 64
"""Datagrams kept per peer while its key is looked up (handled when it arrives), and for how many peers
at once: datagrams naming other peers are dropped meanwhile (a genuine peer sends again)."""
SHOW_TRIES = 4
SHOW_RETRY = 1.5
"""``@show_list`` asks the server this many times, this many seconds apart (the server answers one
client's ``@show_list`` at most once a second), before it says the list is unavailable."""

WARN_EVERY = 60.0
"""Seconds between two warnings about datagrams not sealed with the key of the peer they claim to be from."""

_S = TypeVar("_S", wire.Probe, wire.Chat, wire.ChatAck)


@dataclass(frozen=True, slots=True)
class ClientConfig:
    keepalive: float = 10.0
    """Seconds between keepalives (shortened to a third of the server's timeout if that is less)."""
    deliver_within: float = 10.0
    """A chat message not acknowledged within this many seconds is reported as undeliverable."""
    attempt_time: float = 1.5
    """The longest one hole-punching attempt probes before the next starts from a fresh port; on a fast
    path attempts are shorter (``attempt_rtts`` round trips to the server, at least ``attempt_min``)."""
    attempt_rtts: float = 10.0
    attempt_min: float = 0.1
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

    def __post_init__(self) -> None:
        if self.path not in PATH_MODES:
            raise ValueError(f"path must be one of {PATH_MODES}, not {self.path!r}")


PATH_MODES = ("auto", "direct", "relay")
RETIRED_STREAMS = 16
"""Ended incoming streams remembered per peer, so that a replayed datagram of one is not shown again."""
REFUSALS = ("id_taken", "server_full", "secret_required", "bad_secret", "key_changed")
"""Errors that end a registration attempt for good."""


class UnknownPeer(LookupError):
    pass


class NoPeers(LookupError):
    """``@all`` with nobody else in the list."""


class MessageTooLong(ValueError):
    pass


class State(enum.Enum):
    REGISTERING = "registering"
    REGISTERED = "registered"
    LEAVING = "leaving"
    DONE = "done"


class Phase(enum.Enum):
    IDLE = "idle"
    OPENING = "opening"  # waiting for the shell to open a fresh socket
    ASKING = "asking"  # asked the server to start an attempt
    PROBING = "probing"
    UP = "up"


@dataclass(slots=True)
class _Outgoing:
    seq: int
    text: str
    give_up_at: float
    group: bool = False
    sent_at: float | None = None
    next_tx: float = 0.0
    interval: float = 0.0


@dataclass(slots=True)
class _Link:
    peer: str
    stream: int
    phase: Phase = Phase.IDLE
    sock: int = MAIN
    addr: Addr | None = None
    attempt: int = 0
    attempt_ends: float = 0.0
    next_action: float = 0.0  # next probe or request retransmission
    candidates: list[Addr] = field(default_factory=list)
    last_heard: float = float("-inf")
    relayed: bool = False  # no direct path: messages go through the midPeer relay
    trying_since: float | None = None  # when we began looking for a path (None: not looking)
    next_direct: float = float("inf")  # while relayed: when the next background direct attempt starts
    direct_gap: float = 1.0
    last_used: float = float("-inf")  # last chat message to or from the peer
    ping: int = 0  # an @path measurement in flight (its nonce), and when it left
    ping_sent: float = 0.0
    next_seq: int = 1
    outbox: dict[int, _Outgoing] = field(default_factory=dict)
    rx_stream: int | None = None
    rx_next: int = 1
    rx_held: dict[int, tuple[str, bool]] = field(default_factory=dict)  # seq -> (text, sent to all)
    rx_ended: deque[int] = field(default_factory=lambda: deque(maxlen=RETIRED_STREAMS))  # streams replaced


@dataclass(slots=True)
class _Show:
    """An ``@show_list`` in progress: the server's pages of everyone's details for lookup ``q``."""

    q: int
    send_at: float  # when to (re)send the lookup
    tries: int = 0
    count: int | None = None
    pages: dict[int, list[PeerInfo]] = field(default_factory=dict)
    refused: str | None = None  # what the server said when it last refused (too_often)


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
    ) -> None:
        """``midpeer``: a standalone midPeer to introduce and relay (None: the server does both).
        ``keys``: this session's key pair (default: a new one); its public key goes with the registration."""
        self.id = client_id
        self._keyring = seal.Keyring(client_id, keys or seal.KeyPair())
        self.server = server
        self.priv = priv
        self.config = config or ClientConfig()
        self._rng = rng or random.Random()
        self.state = State.REGISTERING
        self.pub: Addr | None = None
        reg_config = RegConfig(self.config.keepalive, self.config.register_within, self.config.secret)
        key = self._keyring.public
        self._home = Registration(client_id, server, priv, reg_config, self._sender(server), key=key)
        self._mid = None
        if midpeer is not None and midpeer != server:
            self._mid = Registration(client_id, midpeer, priv, reg_config, self._sender(midpeer), key=key)
        self._retry_at = 0.0
        self._leave_by = 0.0
        # the peer list: a mirror of the server's registry at version ``_ver`` (None: not yet known),
        # each ID with the version of the last change about it
        self._peers: dict[str, int] = {}
        self._ver: int | None = None
        self._pages: dict[int, list[str]] = {}
        self._pages_key: tuple[int, int] | None = None  # (version, page count)
        self._sync_at: float | None = None
        # peers' details, looked up from the server (or from its punch_go) when needed
        self._details: dict[str, PeerInfo] = {}
        self._wanted: dict[str, float] = {}  # to look up with the next actions(): when first needed
        self._asked: dict[str, float] = {}  # looked up, no answer yet: when first asked
        self._asked_at = float("inf")  # when the lookups in _asked are due to be asked again
        self._held: dict[str, deque[Callable[[float], None]]] = {}  # datagrams from peers whose key is asked
        self._show: _Show | None = None
        self._shown: tuple[int, tuple[PeerInfo, ...], float] | None = None  # (version, list, when) last shown
        self._links: dict[str, _Link] = {}
        self._sock_owner: dict[int, str] = {}
        self._sock_local: dict[int, Addr] = {MAIN: priv}
        self._next_sock = MAIN + 1
        self._actions: list[Action] = []
        self._events: deque[ClientEvent] = deque()
        self.dropped = 0
        self.rejected = 0
        """Datagrams dropped because they were not sealed with the key of the peer they claim to be from."""
        self._warned: dict[str, float] = {}  # peer -> when we last warned about it (Rejected)
        self._max_text: dict[bool, int] = {}  # may be relayed -> max_text_bytes

    # --- what the shell reads ---------------------------------------------------------------------

    def actions(self) -> list[Action]:
        self._flush_lookups()
        out, self._actions = self._actions, []
        return out

    def next_event(self) -> ClientEvent | None:
        return self._events.popleft() if self._events else None

    def peers(self) -> list[str]:
        """The peer list (IDs), in registration order, this client included."""
        return list(self._peers)

    def details(self, peer: str) -> PeerInfo | None:
        """``peer``'s addresses and key, if this session has looked them up."""
        return self._details.get(peer)

    def path(self, peer: str) -> tuple[str, Addr | None]:
        """The phase of the direct path to ``peer`` and the address it goes to."""
        link = self._links.get(peer)
        return (link.phase.value, link.addr) if link else (Phase.IDLE.value, None)

    def path_kind(self, peer: str) -> str:
        """How messages to ``peer`` go now: ``lan``, ``direct``, ``relay`` or ``none``."""
        link = self._links.get(peer)
        if link is None:
            return "none"
        if link.phase is Phase.UP:
            info = self._details.get(peer)
            return "lan" if info is not None and link.addr == info.priv != info.pub else "direct"
        return "relay" if link.relayed else "none"

    @property
    def token(self) -> str | None:
        return self._home.token

    @property
    def srtt(self) -> float | None:
        """Smoothed round-trip time to the server (from first transmissions only, as Karn says)."""
        return self._home.srtt

    @property
    def clock_offset(self) -> float | None:
        """The server's clock minus ours, from the exchange with the shortest round trip (as NTP does)."""
        return self._home.clock_offset

    @property
    def keepalive(self) -> float:
        return self._home.keepalive

    @property
    def _intro(self) -> Registration:
        """Who introduces us to peers (and relays): the midPeer, unless there is none or it never answered."""
        if self._mid is not None and self._mid.state is not RegState.GAVE_UP:
            return self._mid
        return self._home

    @property
    def relay_ready(self) -> bool:
        """Messages may go through a relay now."""
        intro = self._intro
        return self.config.path != "direct" and intro.registered and intro.relay

    def get_timer(self) -> float | None:
        if self.state is State.DONE:
            return None
        if self.state is State.LEAVING:
            return min(self._retry_at, self._leave_by)
        timers = [self._home.get_timer()]
        if self._mid is not None:
            timers.append(self._mid.get_timer())
        if self._sync_at is not None:
            timers.append(self._sync_at)
        timers.append(self._asked_at)
        if self._show is not None:
            timers.append(self._show.send_at)
        for link in self._links.values():
            timers.extend(self._link_timers(link))
        return min(timers)

    def _link_timers(self, link: _Link) -> list[float]:
        timers = [out.give_up_at for out in link.outbox.values()]
        if link.phase in (Phase.ASKING, Phase.PROBING):
            timers.append(min(link.next_action, link.attempt_ends))
        if link.phase is Phase.UP and (dead_at := self._path_dead_at(link)) is not None:
            timers.append(dead_at)
        if link.phase is Phase.UP or link.relayed:
            timers.extend(out.next_tx for out in link.outbox.values() if out.sent_at is not None)
        if link.relayed and link.phase is Phase.IDLE and link.last_used + self.config.upgrade_for > link.next_direct:
            timers.append(link.next_direct)
        if (fallback := self._relay_fallback_at(link)) is not None:
            timers.append(fallback)
        if link.ping:
            timers.append(link.ping_sent + self.config.ping_timeout)
        return timers

    def _relay_fallback_at(self, link: _Link) -> float | None:
        """When messages waiting for a direct path to ``link``'s peer go through the relay instead."""
        if link.relayed or link.phase is Phase.UP or not link.outbox or not self.relay_ready:
            return None
        if self.config.path == "relay":
            return 0.0  # at once
        if link.trying_since is None:
            return None
        return link.trying_since + self.config.relay_after

    def _path_dead_at(self, link: _Link) -> float | None:
        """When an up path with unacknowledged messages counts as dead, if it has any."""
        waiting = [out.sent_at for out in link.outbox.values() if out.sent_at is not None]
        if not waiting:
            return None
        return max(min(waiting), link.last_heard) + self.config.path_dead_after

    # --- what the shell feeds -----------------------------------------------------------------------

    def start(self, now: float) -> None:
        self._home.start(now)
        if self._mid is not None:
            self._mid.start(now)

    def socket_opened(self, sock: int, local: Addr, now: float) -> None:
        self._sock_local[sock] = local
        link = self._links.get(self._sock_owner.get(sock, ""))
        if link is not None and link.sock == sock and link.phase is Phase.OPENING:
            link.phase = Phase.ASKING
            link.attempt_ends = now + self.attempt_time
            self._ask(link, now)

    def chat(self, peer: str, text: str, now: float, *, group: bool = False) -> None:
        """Queue ``text`` for ``peer``; raises :class:`UnknownPeer` or :class:`MessageTooLong`."""
        if peer not in self._peers or peer == self.id:
            raise UnknownPeer(peer)
        self._check_size(text)
        self._need(peer, now)
        link = self._link(peer)
        seq = link.next_seq
        link.next_seq += 1
        link.outbox[seq] = _Outgoing(seq, text, now + self.config.deliver_within, group)
        link.last_used = now
        if link.phase is Phase.UP or link.relayed:
            self._pump(link, now)
        elif self.config.path == "relay":
            if self.relay_ready:
                self._go_relay(link, now)
        elif link.phase is Phase.IDLE:
            self._start_attempt(link, now, fresh=False)

    def chat_all(self, text: str, now: float) -> list[str]:
        """Queue ``text`` for every other peer in the list (each delivered like ``chat``); their IDs.

        Raises :class:`NoPeers` when nobody else is online, :class:`MessageTooLong` if it cannot fit.
        """
        others = [peer for peer in self._peers if peer != self.id]
        if not others:
            raise NoPeers()
        self._check_size(text)
        for peer in others:
            self.chat(peer, text, now, group=True)
        return others

    def _check_size(self, text: str) -> None:
        size = len(text.encode())
        if size > self.max_text_bytes or len(text) > wire.MAX_TEXT_CHARS:
            raise MessageTooLong(f"{size} bytes")

    @property
    def max_text_bytes(self) -> int:
        """The longest text (in UTF-8 bytes) one message can carry: sealed, to a peer with the longest ID,
        with the largest counters, and wrapped in a ``relay`` if a relay may carry it, its datagram stays
        within :data:`~natchat.proto.wire.MAX_DATAGRAM`."""
        relayed = self.config.path != "direct" and (self._mid is not None or self._intro.relay)
        if relayed not in self._max_text:
            low, high = 0, wire.MAX_DATAGRAM  # the datagram grows with the text: search
            while low < high:
                mid = (low + high + 1) // 2
                low, high = (mid, high) if self._largest_chat(mid, relayed) <= wire.MAX_DATAGRAM else (low, mid - 1)
            self._max_text[relayed] = low
        return self._max_text[relayed]

    def _largest_chat(self, text_bytes: int, relayed: bool) -> int:
        box = bytes(text_bytes + seal.TAG_BYTES)
        longest = wire.Chat(
            src=self.id, dst="x" * 32, stream=2**53, base=2**53, seq=2**53, group=True, n=bytes(12), box=box
        )
        size = wire.encoded_size(longest)
        if relayed:
            relay = wire.Relay(id=self.id, token="0" * 32, dst="x" * 32, data=msgspec.Raw(b"0" * size))
            size = wire.encoded_size(relay)
        return size

    def show_list(self, now: float) -> None:
        """``@show_list``: look up everyone's details (the list holds IDs only); a
        :class:`~natchat.proto.events.ListShown` follows, or a ``list_unavailable`` notice. The server
        answers this at most once a second per client: within a second of the last one, the same answer
        is shown again if the list has not changed since, else the lookup waits out the second."""
        if self.state is not State.REGISTERED:
            self._events.append(Notice("list_unavailable", "not registered with the server: the list is unavailable"))
            return
        if self._show is not None:
            return  # one is on its way: its answer is shown
        shown = self._shown
        if shown is not None and now < shown[2] + SHOW_EVERY:
            if shown[0] == self._ver:
                self._events.append(ListShown(shown[1]))
                return
            self._show = _Show(q=0, send_at=shown[2] + SHOW_EVERY)
            return
        self._show = _Show(q=0, send_at=now)
        self._send_show(now)

    def _send_show(self, now: float) -> None:
        show = self._show
        assert show is not None
        if show.tries >= SHOW_TRIES or self.token is None or self.state is not State.REGISTERED:
            self._show = None
            tried = f"asked {show.tries} times" if show.tries else "not registered"
            said = f": {show.refused}" if show.refused else ""
            self._events.append(Notice("list_unavailable", f"the server did not send the list{said} ({tried})"))
            return
        show.tries += 1
        show.q, show.count, show.pages = self._rng.randrange(1, 2**53), None, {}
        show.send_at = now + SHOW_RETRY
        self._send(MAIN, wire.Lookup(id=self.id, token=self.token, q=show.q, peers=None), self.server)

    def measure_path(self, peer: str, now: float) -> None:
        """``@path``: measure the round trip to ``peer`` over its current path; a
        :class:`~natchat.proto.events.PathReport` follows (at once if there is no path)."""
        if peer not in self._peers or peer == self.id:
            raise UnknownPeer(peer)
        link = self._links.get(peer)
        kind = self.path_kind(peer)
        if link is None or kind == "none":
            self._events.append(PathReport(peer, "none", None, None))
            return
        link.ping = self._rng.randrange(1, 2**53)
        link.ping_sent = now
        probe = wire.Probe(src=self.id, dst=peer, attempt=max(1, link.attempt), ping=link.ping, n=b"", tag=b"")
        self._to_peer(link, self._seal(probe))

    def _path_report(self, link: _Link, rtt: float | None) -> None:
        kind = self.path_kind(link.peer)
        addr = self._intro.server if kind == "relay" else link.addr
        self._events.append(PathReport(link.peer, kind, addr, rtt))
        link.ping = 0

    def close(self, now: float) -> None:
        """Deregister (the shell exits on the :class:`Left` event)."""
        if self.state is State.DONE or self.state is State.LEAVING:
            return
        for link in self._links.values():
            if link.sock != MAIN:
                self._actions.append(CloseSocket(link.sock))
        if self._mid is not None and self._mid.token is not None:
            self._send(MAIN, wire.Deregister(id=self.id, token=self._mid.token), self._mid.server)  # once
        if self.token is None:
            self.state = State.DONE
            self._events.append(Left(acknowledged=False))
            return
        self.state = State.LEAVING
        self._leave_by = now + self.config.leave_within
        self._send_leave(now)

    def receive_datagram(self, data: bytes, sock: int, addr: Addr, now: float) -> None:
        if self.state is State.DONE:
            return
        try:
            msg = wire.decode(data)
        except wire.WireError:
            self.dropped += 1
            return
        if addr == self.server:
            self._from_server(msg, sock, now)
        elif self._mid is not None and addr == self._mid.server:
            self._from_midpeer(msg, sock, now)
        else:
            self._from_peer(msg, sock, addr, now)

    def handle_timer(self, now: float) -> None:
        if self.state is State.LEAVING:
            if now >= self._leave_by:
                self.state = State.DONE
                self._events.append(Left(acknowledged=False))
            elif now >= self._retry_at:
                self._send_leave(now)
            return
        self._home.list_version = self._ver or 0
        outcome = self._home.handle_timer(now)
        if outcome == "gave up":
            limit = self.config.register_within
            self.state = State.DONE
            self._events.append(Refused("no_answer", f"no answer from the server {self.server} within {limit:g} s"))
            return
        if outcome is not None:
            self._lost(outcome)
        if self._mid is not None:
            outcome = self._mid.handle_timer(now)
            if outcome == "gave up":
                text = f"no answer from the midPeer {self._mid.server}; the server introduces, no relay"
                self._events.append(Notice("midpeer_lost", text))
            elif outcome is not None:
                self._events.append(Notice("midpeer_lost", f"midPeer {self._mid.server}: {outcome}; registering again"))
        if self._sync_at is not None and now >= self._sync_at:
            self._request_sync(now)
        if now >= self._asked_at:
            self._ask_again(now)
        if self._show is not None and now >= self._show.send_at:
            self._send_show(now)
        for link in list(self._links.values()):
            self._link_timer(link, now)

    # --- the servers' side ----------------------------------------------------------------------------

    def _from_server(self, msg: wire.AnyMessage, sock: int, now: float) -> None:
        home = self._home
        home.last_heard = now
        match msg:
            case wire.Registered() if self.state is State.REGISTERING:
                again = home.ever_registered
                if home.on_registered(msg, now):
                    self.state = State.REGISTERED
                    self.pub = msg.pub
                    self._events.append(Joined(self.id, msg.pub, again=again))
                    self._ver = None  # the snapshot that follows is authoritative
                    self._sync_at = now + 1.0  # in case the snapshot is lost
            case wire.Challenge() if self.state is State.REGISTERING:
                if not home.on_challenge(msg, now):
                    self.state = State.DONE
                    text = "the server requires a secret: give it with --secret or NATCHAT_SECRET"
                    self._events.append(Refused("secret_required", text))
                elif home.unchecked_secret:
                    self._events.append(Notice("secret_unchecked", "the server does not check the secret"))
            case wire.Alive(ver=ver) if self.state is State.REGISTERED:
                if home.on_alive(msg, now):
                    self.pub = msg.pub
                    if ver != self._ver:
                        self._request_sync(now)
            case wire.Bye() if self.state is State.LEAVING:
                self.state = State.DONE
                self._events.append(Left(acknowledged=True))
            case wire.ListPage():
                self._on_page(msg, now)
            case wire.ListDelta():
                self._on_delta(msg, now)
            case wire.Details():
                self._on_details(msg, now)
            case wire.Error(code="too_often", msg=text) if self._show is not None:
                self._show.send_at = now + SHOW_RETRY
                self._show.refused = text
            case wire.Error(code=code, msg=text) if code in REFUSALS:
                if self.state is State.REGISTERING:
                    self.state = State.DONE
                    home.give_up()
                    self._events.append(Refused(code, text))
            case wire.Error(code=code) if code in ("unknown_session", "bad_token"):
                if self.state is State.REGISTERED:  # the server does not know this session (restarted?)
                    home.forget_session(now)
                    self._lost("the server does not know this client (restarted?)")
            case _ if self._intro is home:
                self._from_introducer(msg, sock, now)
            case _:
                self.dropped += 1

    def _from_midpeer(self, msg: wire.AnyMessage, sock: int, now: float) -> None:
        mid = self._mid
        assert mid is not None
        mid.last_heard = now
        match msg:
            case wire.Registered() if self.state is not State.DONE:
                mid.on_registered(msg, now)
                if not msg.relay:
                    self._events.append(Notice("no_relay", f"the midPeer {mid.server} introduces but does not relay"))
            case wire.Alive():
                mid.on_alive(msg, now)
            case wire.Challenge():
                if not mid.on_challenge(msg, now):
                    text = f"the midPeer {mid.server} requires a secret; the server introduces, no relay"
                    self._events.append(Notice("secret_required", text))
            case wire.Error(code=code, msg=text) if code in REFUSALS:
                mid.give_up()
                self._events.append(Notice(code, f"midPeer {mid.server}: {text}; the server introduces, no relay"))
            case wire.Error(code=code) if code in ("unknown_session", "bad_token"):
                if mid.registered:
                    mid.forget_session(now)
            case wire.Bye():
                pass
            case _:
                self._from_introducer(msg, sock, now)

    def _from_introducer(self, msg: wire.AnyMessage, sock: int, now: float) -> None:
        """What the introducer (the server, or the midPeer) sends about peers."""
        match msg:
            case wire.PunchGo(peer=peer, attempt=attempt, at=at) if peer.id in self._peers:
                if self._intro is self._home:
                    self._details[peer.id] = peer  # from the server: as good as a lookup
                    self._asked.pop(peer.id, None)
                else:
                    self._need(peer.id, now)  # keys come from the server only, never from a midPeer
                self._on_go(peer, attempt, sock, self._intro.local_time(at, now), now)
            case wire.PunchInvite(peer=peer, attempt=attempt) if peer in self._peers:
                self._need(peer, now)
                self._on_invite(peer, attempt, now)
            case wire.Relayed(src=src, data=data) if src in self._peers and self.config.path != "direct":
                self._from_relay(src, data, now)
            case wire.Error(code="unknown_peer", peer=peer):
                link = self._links.get(peer) if peer is not None else None
                if link is not None and (link.phase in (Phase.ASKING, Phase.OPENING) or link.relayed):
                    where = "the midPeer" if self._intro is self._mid else "the server"
                    self._fail_all(link, f"not registered with {where}", now)
            case _:
                self.dropped += 1

    @property
    def attempt_time(self) -> float:
        """How long a punching attempt lasts: long enough for a few round trips, short enough that a
        failed one (the conntrack trap) is soon retried from fresh ports."""
        cfg = self.config
        srtt = self._intro.srtt
        if srtt is None:
            return cfg.attempt_time
        return min(cfg.attempt_time, max(cfg.attempt_min, cfg.attempt_rtts * srtt))

    def _lost(self, reason: str) -> None:
        """The server is lost (its registration is already asking again)."""
        self._events.append(ServerLost(reason))
        self.state = State.REGISTERING

    def _send_leave(self, now: float) -> None:
        assert self.token is not None
        self._send(MAIN, wire.Deregister(id=self.id, token=self.token), self.server)
        self._retry_at = now + 0.1

    def _sender(self, server: Addr) -> Callable[[wire.Message], None]:
        return lambda msg: self._send(MAIN, msg, server)

    # --- the peer list ----------------------------------------------------------------------------------

    def _on_page(self, page: wire.ListPage, now: float) -> None:
        if page.index >= page.count or (self._ver is not None and page.ver < self._ver):
            self.dropped += 1  # malformed, or a page of a list older than ours (late, or repeated)
            return
        key = (page.ver, page.count)
        if self._pages_key != key:
            if self._pages_key is not None and self._pages_key[0] > page.ver and self._ver is not None:
                return  # a page of an older snapshot than the one being collected
            self._pages_key, self._pages = key, {}
        self._pages[page.index] = page.ids()
        if len(self._pages) == page.count:
            ids = [cid for i in range(page.count) for cid in self._pages[i]]
            self._pages_key, self._pages = None, {}
            self._set_list(dict.fromkeys(ids, page.ver), page.ver, now)

    def _on_delta(self, delta: wire.ListDelta, now: float) -> None:
        """Apply the changes that follow our version, in place; a gap asks for the rest."""
        if self._ver is None:
            self._request_sync(now)
            return
        ver = self._ver
        joined: list[str] = []
        left: list[str] = []
        gap = False
        for ver_of, (cid, gone) in enumerate(delta.parsed(), start=delta.ver):
            if ver_of <= ver:
                continue  # had it already
            if ver_of != ver + 1:
                gap = True
                break
            ver = ver_of
            if gone:
                if self._peers.pop(cid, None) is not None:
                    left.append(cid)
                    self._forget(cid, now)
            else:
                joined.append(cid)
                if cid in self._peers:  # moved, or restarted with a new key: look it up again if in use
                    self._details.pop(cid, None)
                    if cid in self._links:
                        self._need(cid, now)
                self._peers[cid] = ver
        self._ver = ver
        self._sync_at = None
        if joined or left:
            self._events.append(ListChanged(tuple(joined), tuple(left), len(self._peers)))
        if gap:
            self._request_sync(now)  # missed some: ask for the rest

    def _set_list(self, peers: dict[str, int], ver: int, now: float) -> None:
        """A whole list (a snapshot): it replaces ours. Details may have changed in what we missed: the
        peers we talk to are looked up again."""
        left = [cid for cid in self._peers if cid not in peers]
        joined = [cid for cid in peers if cid not in self._peers]
        if left or joined or list(peers) != list(self._peers):
            self._events.append(ListChanged(tuple(joined), tuple(left), len(peers)))
        for gone in left:
            self._forget(gone, now)
        self._peers, self._ver = peers, ver
        self._details.clear()
        for cid in self._links:
            self._need(cid, now)
        self._sync_at = None

    def _forget(self, peer: str, now: float) -> None:
        """``peer`` left the list: its key, details and path go, and what waited for it fails."""
        self._keyring.forget(peer)
        self._details.pop(peer, None)
        self._asked.pop(peer, None)
        self._wanted.pop(peer, None)
        self._held.pop(peer, None)
        if (link := self._links.pop(peer, None)) is not None:
            self._fail_all(link, f"{peer} left", now)
            if link.sock != MAIN:
                self._actions.append(CloseSocket(link.sock))

    # --- peers' details ---------------------------------------------------------------------------------

    def _need(self, peer: str, now: float) -> None:
        """This session needs ``peer``'s details: look them up (with the next :meth:`actions`)."""
        if peer in self._details or peer in self._asked or peer not in self._peers or peer == self.id:
            return
        self._wanted.setdefault(peer, now)

    def _flush_lookups(self) -> None:
        """Send the lookups wanted since the last call, up to 16 peers a datagram."""
        if not self._wanted or self.token is None or self.state is not State.REGISTERED:
            return
        wanted, self._wanted = self._wanted, {}
        self._send_lookups(list(wanted))
        for peer, since in wanted.items():
            self._asked.setdefault(peer, since)
            self._asked_at = min(self._asked_at, since + LOOKUP_RETRY)

    def _send_lookups(self, peers: list[str]) -> None:
        assert self.token is not None
        for i in range(0, len(peers), LOOKUP_BATCH):
            lookup = wire.Lookup(id=self.id, token=self.token, q=0, peers=peers[i : i + LOOKUP_BATCH])
            self._send(MAIN, lookup, self.server)

    def _ask_again(self, now: float) -> None:
        """Lookups not answered within a second are asked again, for ``LOOKUP_FOR`` seconds."""
        for peer, since in list(self._asked.items()):
            if peer not in self._peers or now >= since + LOOKUP_FOR:
                del self._asked[peer]
                self._held.pop(peer, None)
        self._asked_at = now + LOOKUP_RETRY if self._asked else float("inf")
        if self._asked and self.token is not None and self.state is State.REGISTERED:
            self._send_lookups(list(self._asked))

    def _learned(self, infos: list[PeerInfo], now: float) -> None:
        """Details from the server: keep them, and handle what waited for them."""
        for info in infos:
            self._details[info.id] = info
            self._asked.pop(info.id, None)
            self._wanted.pop(info.id, None)
        for info in infos:
            for again in self._held.pop(info.id, ()):
                again(now)  # what arrived before the key
            if (link := self._links.get(info.id)) is not None:
                self._pump(link, now)  # what waited for the key goes now

    def _hold(self, peer: str, again: Callable[[float], None], now: float) -> bool:
        """If ``peer``'s key is not looked up yet: keep ``again`` (what handles its datagram) to run when it
        is, and look it up; True if so. A few per peer at most: the peer retransmits the rest."""
        if peer in self._details:
            return False
        if peer not in self._held and len(self._held) >= HELD_PEERS:
            return True  # dropped: anyone can name any peer, and this must not become lookups without end
        self._need(peer, now)
        held = self._held.setdefault(peer, deque(maxlen=HELD_MAX))
        held.append(again)
        return True

    def _on_details(self, msg: wire.Details, now: float) -> None:
        fresh = []
        for info in msg.peers:
            changed = self._peers.get(info.id)
            if changed is None or changed > msg.ver:
                continue  # not in our list, or it changed after the server answered: ask again if needed
            fresh.append(info)
        self._learned(fresh, now)
        show = self._show
        if show is not None and msg.q == show.q and show.count in (None, msg.count) and msg.index < msg.count:
            show.count = msg.count
            show.pages[msg.index] = msg.peers
            if len(show.pages) == msg.count:
                peers = tuple(p for i in range(msg.count) for p in show.pages[i])
                self._show = None
                if self._ver is None or msg.ver > self._ver:  # newer than our list: it is the list now
                    self._set_list(dict.fromkeys((p.id for p in peers), msg.ver), msg.ver, now)
                    self._learned(list(peers), now)
                self._shown = (self._ver or 0, peers, now)
                self._events.append(ListShown(peers))

    def _request_sync(self, now: float) -> None:
        if self.token is None or self.state is not State.REGISTERED:
            return
        if self._sync_at is not None and now < self._sync_at:
            return  # one is on its way (or the snapshot is); give it a second
        self._send(MAIN, wire.Sync(id=self.id, token=self.token, since=self._ver or 0), self.server)
        self._sync_at = now + 1.0

    # --- paths to peers ---------------------------------------------------------------------------------

    def _link(self, peer: str) -> _Link:
        link = self._links.get(peer)
        if link is None:
            link = self._links[peer] = _Link(peer, stream=self._rng.randrange(1, 2**53))
        return link

    def _start_attempt(self, link: _Link, now: float, *, fresh: bool, attempt: int | None = None) -> None:
        """Begin attempt ``attempt`` (default: the next one), from MAIN or from a fresh socket."""
        link.attempt = attempt if attempt is not None else link.attempt + 1
        if link.trying_since is None:
            link.trying_since = now
        self._use_socket(link, MAIN if not fresh else None)
        if link.sock == MAIN:
            link.phase = Phase.ASKING
            link.attempt_ends = now + self.attempt_time
            self._ask(link, now)
        else:
            link.phase = Phase.OPENING

    def _use_socket(self, link: _Link, sock: int | None) -> None:
        """Move ``link`` to ``sock`` (None: a fresh one), closing the fresh socket it leaves."""
        if sock is None:
            sock = self._next_sock
            self._next_sock += 1
            self._sock_owner[sock] = link.peer
            self._actions.append(OpenSocket(sock))
        if link.sock != sock and link.sock != MAIN:
            self._actions.append(CloseSocket(link.sock))
            self._sock_owner.pop(link.sock, None)
            self._sock_local.pop(link.sock, None)
        link.sock = sock

    def _ask(self, link: _Link, now: float) -> None:
        link.next_action = now + 0.5
        intro = self._intro
        if intro.token is None:
            return  # registering again; ask once the introducer knows us
        req = wire.PunchRequest(
            id=self.id,
            token=intro.token,
            peer=link.peer,
            attempt=link.attempt,
            priv=self._sock_local[link.sock],
            rtt=intro.srtt or 0.0,
        )
        self._send(link.sock, req, intro.server)

    def _on_go(self, peer: PeerInfo, attempt: int, sock: int, start: float, now: float) -> None:
        link = self._link(peer.id)
        if attempt < link.attempt or (attempt == link.attempt and link.phase is Phase.PROBING):
            return  # stale, or a duplicate
        if self.config.path == "relay":
            return  # --relay-only: never punch
        # Behind the same NAT (the same public host): probe the private address, then the public one
        # (hairpinning); the first that answers wins (see _heard). Behind different NATs only the public
        # one: a peer's private address is not reachable from another LAN, and probing it too doubled the
        # median time to a path at 0 ms in Mininet (1.0 s against 0.4 s, 20 pairs each).
        mine = self._intro.pub
        same_nat = mine is not None and peer.pub.host == mine.host
        candidates = [peer.priv, peer.pub] if same_nat else [peer.pub]
        candidates = list(dict.fromkeys(candidates))
        if link.phase is Phase.UP and sock == link.sock and now - link.last_heard < self.config.path_dead_after:
            # The path works (the peer's probe beat the server's go here): answer toward the candidates
            # too, so that the peer hears us on whichever address it is listening, and keep the path.
            link.attempt, link.candidates = attempt, candidates
            self._probe(link, now)
            return
        if sock != link.sock:
            self._use_socket(link, sock)
        link.attempt = attempt
        link.phase = Phase.PROBING
        link.attempt_ends = max(link.attempt_ends, start + self.attempt_time)
        link.candidates = candidates
        self._probe(link, start, first=True)

    def _on_invite(self, peer: str, attempt: int, now: float) -> None:
        if self.config.path == "relay":
            return
        link = self._link(peer)
        if attempt > link.attempt:
            self._start_attempt(link, now, fresh=True, attempt=attempt)
        elif attempt == link.attempt and link.phase is Phase.ASKING:
            self._ask(link, now)  # our request may have been lost

    def _probe(self, link: _Link, at: float, *, first: bool = False) -> None:
        """Probe every candidate; the first probe of an attempt leaves at ``at`` (the agreed moment)."""
        link.next_action = at + self.config.probe_interval
        sealed = self._seal(wire.Probe(src=self.id, dst=link.peer, attempt=link.attempt, n=b"", tag=b""))
        if sealed is None:
            self._need(link.peer, at)  # (only after a midPeer's go: keys come from the server)
            return
        probe = wire.encode(sealed)
        for addr in link.candidates:
            self._actions.append(Send(link.sock, probe, addr, not_before=at if first else None))

    def _link_timer(self, link: _Link, now: float) -> None:
        for out in list(link.outbox.values()):
            if now >= out.give_up_at:
                self._fail_all(link, self._failure_reason(link), now)
                break
        if link.ping and now >= link.ping_sent + self.config.ping_timeout:
            self._path_report(link, None)
        if (fallback := self._relay_fallback_at(link)) is not None and now >= fallback:
            self._go_relay(link, now)
        if link.phase in (Phase.ASKING, Phase.PROBING):
            if now >= link.attempt_ends:
                link.phase = Phase.IDLE
                if link.relayed:  # the relay carries the messages; try direct again later, less often
                    link.next_direct = now + link.direct_gap
                    link.direct_gap = min(2 * link.direct_gap, self.config.upgrade_max)
                elif link.outbox:
                    self._start_attempt(link, now, fresh=True)
                else:
                    link.trying_since = None
            elif now >= link.next_action:
                if link.phase is Phase.ASKING:
                    self._ask(link, now)
                else:
                    self._probe(link, now)
        elif link.phase is Phase.IDLE and link.relayed and now >= link.next_direct:
            if now < link.last_used + self.config.upgrade_for:
                self._start_attempt(link, now, fresh=True)  # in the background: the relay goes on
            else:
                link.next_direct = float("inf")  # nobody chats: stop trying until somebody does
        elif link.phase is Phase.UP:
            dead_at = self._path_dead_at(link)
            if dead_at is not None and now >= dead_at:
                link.phase = Phase.IDLE  # the path stopped answering (NAT mapping gone?): punch again
                link.trying_since = None
                for out in link.outbox.values():
                    out.sent_at = None
                self._start_attempt(link, now, fresh=False)
                return
        self._pump(link, now)

    def _failure_reason(self, link: _Link) -> str:
        within = f"within {self.config.deliver_within:g} s"
        if link.phase is Phase.UP or link.relayed:
            return f"no answer {within}"
        if self.config.path == "relay":
            return f"no relay (--relay-only, and the {'midPeer' if self._mid else 'server'} offers none) {within}"
        if self.config.path == "direct":
            return f"no direct path {within} (--direct-only: not relayed)"
        return f"no direct path {within}"

    def _go_relay(self, link: _Link, now: float) -> None:
        """No direct path: send ``link``'s messages through the relay from now on."""
        link.relayed = True
        link.direct_gap = 1.0
        if link.phase is Phase.IDLE:
            link.next_direct = now + link.direct_gap
        for out in link.outbox.values():
            out.sent_at = None  # (re)send each at once, through the relay
        self._events.append(PathChanged(link.peer, "relay", self._intro.server))
        self._pump(link, now)

    def _pump(self, link: _Link, now: float) -> None:
        """(Re)transmit what is due on the current path, at most ``window`` messages in flight."""
        if link.phase is not Phase.UP and not (link.relayed and self._intro.token is not None):
            return
        if link.peer not in self._details:
            self._need(link.peer, now)
            return  # its key first (looked up: _on_details pumps again)
        base = next(iter(link.outbox), link.next_seq)  # the outbox is in seq order: its oldest unacknowledged
        for out in list(link.outbox.values())[: self.config.window]:
            if out.sent_at is None:
                out.sent_at, out.interval = now, self.config.retransmit_first
            elif now < out.next_tx:
                continue
            else:
                out.interval = min(out.interval * 2, self.config.retransmit_max)
            out.next_tx = now + out.interval
            msg = wire.Chat(
                src=self.id, dst=link.peer, stream=link.stream, base=base, seq=out.seq, group=out.group, n=b"", box=b""
            )
            self._to_peer(link, self._seal(msg, out.text.encode()))

    def _seal(self, msg: _S, plaintext: bytes = b"") -> _S | None:
        """``msg`` (made with an empty nonce, and an empty box or tag) sealed for its ``dst`` with the pair
        key: ``plaintext`` encrypted into the box (a chat), or just the tag; None if the peer has no usable
        key, or none looked up yet."""
        info = self._details.get(msg.dst)
        if info is None:
            return None
        try:
            key = self._keyring.pair(msg.dst, info.key)
        except seal.SealError:
            self.dropped += 1
            return None
        nonce, sealed = seal.seal(key, wire.sealed_header(msg), plaintext)
        if isinstance(msg, wire.Chat):
            return msgspec.structs.replace(msg, n=nonce, box=sealed)
        return msgspec.structs.replace(msg, n=nonce, tag=sealed)

    def _opened(self, msg: wire.Sealed, now: float) -> bytes | None:
        """What ``msg`` from a listed peer carries (a chat's text; nothing for the others), if it is sealed
        with that peer's key. If not, None: it is dropped and counted, with a warning once a minute per peer.
        Also None, without a word, if the peer's key is not looked up yet: it is, and the peer sends again."""
        info = self._details.get(msg.src)
        if info is None:
            self._need(msg.src, now)
            return None
        sealed = msg.box if isinstance(msg, wire.Chat) else msg.tag
        try:
            key = self._keyring.pair(msg.src, info.key)
            return seal.open(key, msg.n, wire.sealed_header(msg), sealed)
        except seal.SealError:
            self.rejected += 1
            if now >= self._warned.get(msg.src, float("-inf")) + WARN_EVERY:
                self._warned[msg.src] = now
                self._events.append(Rejected(msg.src, "bad_seal"))
            return None

    def _to_peer(self, link: _Link, msg: wire.Message | None) -> None:
        """Send ``msg`` to ``link``'s peer over the current path: direct if up, else through the relay."""
        if msg is None:
            return  # could not be sealed
        if link.phase is Phase.UP:
            assert link.addr is not None
            self._send(link.sock, msg, link.addr)
        else:
            self._send_relayed(link.peer, msg)

    def _send_relayed(self, peer: str, msg: wire.Message) -> None:
        intro = self._intro
        if intro.token is None:
            return  # registering again; retransmissions will follow
        relay = wire.Relay(id=self.id, token=intro.token, dst=peer, data=msgspec.Raw(wire.encode(msg)))
        self._send(MAIN, relay, intro.server)

    def _fail_all(self, link: _Link, reason: str, now: float) -> None:
        """Give up on everything queued for the peer (order must hold) and start a new stream."""
        for out in link.outbox.values():
            self._events.append(DeliveryFailed(link.peer, out.text, reason))
        link.outbox.clear()
        link.stream = self._rng.randrange(1, 2**53)
        link.next_seq = 1
        if link.phase is not Phase.UP:
            link.phase = Phase.IDLE
            link.trying_since = None

    def _from_peer(self, msg: wire.AnyMessage, sock: int, addr: Addr, now: float) -> None:
        src = getattr(msg, "src", None)
        if sock != MAIN and self._sock_owner.get(sock) != src:
            self.dropped += 1  # a fresh socket only ever talks to the peer it was opened for
            return
        if self.config.path == "relay" and isinstance(msg, wire.Probe | wire.Chat | wire.ChatAck):
            self.dropped += 1  # --relay-only: nothing direct, either way
            return
        plain = b""
        if isinstance(msg, wire.Probe | wire.Chat | wire.ChatAck) and msg.dst == self.id and msg.src in self._peers:
            if self._hold(msg.src, lambda later: self._from_peer(msg, sock, addr, later), now):
                return  # until its key is looked up
            if (opened := self._opened(msg, now)) is None:
                return  # not from the peer it names: it opens no path and gets no answer
            plain = opened

        def reply(answer: wire.Message | None) -> None:
            if answer is not None:
                self._send(sock, answer, addr)

        match msg:
            case wire.Probe(src=src, dst=self.id, attempt=attempt) if src in self._peers:
                self._link(src).attempt = max(self._link(src).attempt, attempt)
                link = self._heard(src, sock, addr, now)
                self._on_probe(link, msg, reply, now)
            case wire.Chat(src=src, dst=self.id) if src in self._peers:
                link = self._heard(src, sock, addr, now)
                self._receive_chat(link, msg, plain, reply, now)
            case wire.ChatAck(src=src, dst=self.id, stream=stream, seq=seq) if src in self._peers:
                link = self._heard(src, sock, addr, now)
                if stream == link.stream:
                    link.outbox.pop(seq, None)
            case _:
                self.dropped += 1
                return
        self._pump(link, now)

    def _from_relay(self, src: str, data: msgspec.Raw, now: float) -> None:
        """A datagram from ``src`` through the relay: handled as if direct, answered through the relay."""
        try:
            msg = wire.decode(bytes(data))
        except wire.WireError:
            self.dropped += 1
            return
        plain = b""
        if isinstance(msg, wire.Probe | wire.Chat | wire.ChatAck) and msg.dst == self.id and msg.src == src:
            if self._hold(src, lambda later: self._from_relay(src, data, later), now):
                return  # until src's key is looked up
            if (opened := self._opened(msg, now)) is None:
                return  # the relay, or someone, altered or forged it
            plain = opened
        link = self._link(src)

        def reply(answer: wire.Message | None) -> None:
            if answer is not None:
                self._send_relayed(src, answer)

        match msg:
            case wire.Probe(src=s, dst=self.id) if s == src:
                self._on_probe(link, msg, reply, now)
            case wire.Chat(src=s, dst=self.id) if s == src:
                if not link.relayed and link.phase is not Phase.UP:
                    self._go_relay(link, now)  # the peer found no direct path: answer the same way
                self._receive_chat(link, msg, plain, reply, now)
            case wire.ChatAck(src=s, dst=self.id, stream=stream, seq=seq) if s == src:
                if stream == link.stream:
                    link.outbox.pop(seq, None)
            case _:
                self.dropped += 1
                return
        self._pump(link, now)

    def _on_probe(self, link: _Link, msg: wire.Probe, reply: Callable[[wire.Message | None], None], now: float) -> None:
        if not msg.ack:
            answer = wire.Probe(
                src=self.id, dst=link.peer, attempt=msg.attempt, ack=True, ping=msg.ping, n=b"", tag=b""
            )
            reply(self._seal(answer))
        elif msg.ping and msg.ping == link.ping:
            self._path_report(link, now - link.ping_sent)

    def _receive_chat(
        self, link: _Link, msg: wire.Chat, plain: bytes, reply: Callable[[wire.Message | None], None], now: float
    ) -> None:
        """Show messages (``plain``: the opened text) once each and in order; acknowledge only what was shown
        or is held for showing."""
        try:
            text = plain.decode()
        except UnicodeDecodeError:
            text = ""
        if not 0 < len(text) <= wire.MAX_TEXT_CHARS:
            self.dropped += 1  # sealed by the peer, but no text: not acknowledged either
            return
        link.last_used = now
        stream, base, seq = msg.stream, msg.base, msg.seq
        if stream in link.rx_ended:
            self.dropped += 1  # a stream the sender has ended: a replay (or very late); never shown again
            return
        if link.rx_stream != stream:  # a new stream (or we lost our state): it resumes at the sender's base
            if link.rx_stream is not None:
                link.rx_ended.append(link.rx_stream)
            link.rx_stream, link.rx_next, link.rx_held = stream, base, {}
        elif base > link.rx_next:  # the sender saw everything before base acknowledged: shown already
            link.rx_held = {s: t for s, t in link.rx_held.items() if s >= base}
            link.rx_next = base
        if seq >= link.rx_next + 4 * self.config.window:
            self.dropped += 1  # too far ahead to hold: not acknowledged, so it will come again
            return
        if seq >= link.rx_next:
            link.rx_held[seq] = (text, msg.group)
        reply(self._seal(wire.ChatAck(src=self.id, dst=link.peer, stream=stream, seq=seq, n=b"", tag=b"")))
        while link.rx_next in link.rx_held:
            text, group = link.rx_held.pop(link.rx_next)
            self._events.append(ChatReceived(link.peer, text, group))
            link.rx_next += 1

    def _heard(self, peer: str, sock: int, addr: Addr, now: float) -> _Link:
        """A datagram from ``peer`` arrived directly: that socket and source address are a working path."""
        link = self._link(peer)
        link.last_heard = now
        if link.phase is not Phase.UP or link.sock != sock or link.addr != addr:
            if sock != link.sock:
                self._use_socket(link, sock)
            link.addr = addr
            if link.phase is not Phase.UP:
                link.phase = Phase.UP
                link.trying_since = None
                self._events.append(PathUp(peer, addr, link.attempt))
                if link.relayed:  # off the relay: what it has not seen acknowledged goes direct at once
                    link.relayed = False
                    link.next_direct = float("inf")
                    for out in link.outbox.values():
                        out.next_tx = now
                    self._events.append(PathChanged(peer, self.path_kind(peer), addr))
        return link

    def _send(self, sock: int, msg: wire.Message, addr: Addr) -> None:
        self._actions.append(Send(sock, wire.encode(msg), addr))
