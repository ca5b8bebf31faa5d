"""The chat client as a sans-I/O object: registration, keepalive, the peer list, punching and delivery.

The shell owns the sockets. Socket ``MAIN`` (0) is the one registered with the server; the session may
ask for more (:class:`OpenSocket`): a hole-punching attempt that failed is retried from a fresh local
port, because the failed attempt can leave a conntrack entry on the peer's NAT that makes it give its
host a different port toward us for as long as the entry lives (the "conntrack trap", see
``docs/PROTOCOL.md``). The shell reports the new socket's local address with :meth:`socket_opened`.

Paths to peers, per peer (:class:`_Link`):

``IDLE`` --(a message to send, or the server says "go")--> ``ASKING`` --(``PunchGo``)--> ``PROBING``
--(a probe or any datagram from the peer)--> ``UP``. An attempt that ends without a path is followed by
the next one from a fresh socket while there is something to deliver; a path that stops acknowledging
goes back to punching. Messages are numbered per stream, retransmitted with backoff, acknowledged,
deduplicated and shown in order; one that is not acknowledged within ``deliver_within`` fails (with
everything queued behind it, so order holds) and the stream starts afresh.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from dataclasses import dataclass, field

from . import wire
from .actions import Action, CloseSocket, OpenSocket, Send
from .events import (
    ChatReceived,
    ClientEvent,
    DeliveryFailed,
    Joined,
    Left,
    ListChanged,
    PathUp,
    Refused,
    ServerLost,
)
from .wire import Addr, PeerInfo

MAIN = 0
"""Socket number of the socket registered with the server."""


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
    next_seq: int = 1
    outbox: dict[int, _Outgoing] = field(default_factory=dict)
    rx_stream: int | None = None
    rx_next: int = 1
    rx_held: dict[int, tuple[str, bool]] = field(default_factory=dict)  # seq -> (text, sent to all)


class ClientSession:
    def __init__(
        self,
        client_id: str,
        server: Addr,
        priv: Addr,
        *,
        config: ClientConfig | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.id = client_id
        self.server = server
        self.priv = priv
        self.config = config or ClientConfig()
        self._rng = rng or random.Random()
        self.state = State.REGISTERING
        self.token: str | None = None
        self.pub: Addr | None = None
        self.keepalive = self.config.keepalive
        self._ever_registered = False
        self._started_at = 0.0
        self._retry_at = 0.0
        self._retry_gap = 0.5
        self._last_from_server = 0.0
        self._keepalive_at = 0.0
        self._keepalive_gap = 1.0
        self._keepalive_unanswered = False
        self._warmup = 0.25
        self._probe_sent_at: float | None = None  # a registration or keepalive not retransmitted yet
        self.srtt: float | None = None
        """Smoothed round-trip time to the server (from first transmissions only, as Karn says)."""
        self.clock_offset: float | None = None
        """The server's clock minus ours, from the exchange with the shortest round trip (as NTP does)."""
        self._offset_rtt = float("inf")
        self._leave_by = 0.0
        # the peer list: a mirror of the server's registry at version ``_ver`` (None: not yet known)
        self._peers: dict[str, PeerInfo] = {}
        self._ver: int | None = None
        self._pages: dict[int, list[PeerInfo]] = {}
        self._pages_key: tuple[int, int] | None = None  # (version, page count)
        self._sync_at: float | None = None
        self._links: dict[str, _Link] = {}
        self._sock_owner: dict[int, str] = {}
        self._sock_local: dict[int, Addr] = {MAIN: priv}
        self._next_sock = MAIN + 1
        self._actions: list[Action] = []
        self._events: deque[ClientEvent] = deque()
        self.dropped = 0

    # --- what the shell reads ---------------------------------------------------------------------

    def actions(self) -> list[Action]:
        out, self._actions = self._actions, []
        return out

    def next_event(self) -> ClientEvent | None:
        return self._events.popleft() if self._events else None

    def peers(self) -> list[PeerInfo]:
        """The peer list, in registration order, this client included."""
        return list(self._peers.values())

    def path(self, peer: str) -> tuple[str, Addr | None]:
        """The phase of the path to ``peer`` and the address it goes to."""
        link = self._links.get(peer)
        return (link.phase.value, link.addr) if link else (Phase.IDLE.value, None)

    def get_timer(self) -> float | None:
        if self.state is State.DONE:
            return None
        if self.state is State.LEAVING:
            return min(self._retry_at, self._leave_by)
        if self.state is State.REGISTERING:
            timers = [self._retry_at]
        else:
            timers = [self._keepalive_at, self._last_from_server + self._lost_after]
        if not self._ever_registered and self.config.register_within is not None:
            timers.append(self._started_at + self.config.register_within)
        if self._sync_at is not None:
            timers.append(self._sync_at)
        for link in self._links.values():
            if link.phase in (Phase.ASKING, Phase.PROBING):
                timers.append(min(link.next_action, link.attempt_ends))
            timers.extend(out.give_up_at for out in link.outbox.values())
            if link.phase is Phase.UP and (dead_at := self._path_dead_at(link)) is not None:
                timers.append(dead_at)
                timers.extend(out.next_tx for out in link.outbox.values() if out.sent_at is not None)
        return min(timers)

    def _path_dead_at(self, link: _Link) -> float | None:
        """When an up path with unacknowledged messages counts as dead, if it has any."""
        waiting = [out.sent_at for out in link.outbox.values() if out.sent_at is not None]
        if not waiting:
            return None
        return max(min(waiting), link.last_heard) + self.config.path_dead_after

    # --- what the shell feeds -----------------------------------------------------------------------

    def start(self, now: float) -> None:
        self._started_at = self._last_from_server = now
        self._register(now)

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
        link = self._link(peer)
        seq = link.next_seq
        link.next_seq += 1
        link.outbox[seq] = _Outgoing(seq, text, now + self.config.deliver_within, group)
        if link.phase is Phase.UP:
            self._pump(link, now)
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
        longest = wire.Chat(src=self.id, dst="x" * 32, stream=2**53, base=2**53, seq=2**53, text=text, group=True)
        if wire.encoded_size(longest) > wire.MAX_DATAGRAM:
            raise MessageTooLong(f"{len(text.encode())} bytes")

    def close(self, now: float) -> None:
        """Deregister (the shell exits on the :class:`Left` event)."""
        if self.state is State.DONE or self.state is State.LEAVING:
            return
        for link in self._links.values():
            if link.sock != MAIN:
                self._actions.append(CloseSocket(link.sock))
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
        limit = self.config.register_within
        never_answered = self.state is State.REGISTERING and not self._ever_registered
        if never_answered and limit is not None and now >= self._started_at + limit:
            self.state = State.DONE
            self._events.append(Refused("no_answer", f"no answer from the server {self.server} within {limit:g} s"))
            return
        if self.state is State.REGISTERING and now >= self._retry_at:
            self._register(now)
        elif self.state is State.REGISTERED:
            silent = now - self._last_from_server
            if silent >= self._lost_after:
                self._lost(f"no answer from the server for {silent:.0f} s", now)
            elif now >= self._keepalive_at:
                self._send_keepalive(now)
        if self._sync_at is not None and now >= self._sync_at:
            self._request_sync(now)
        for link in list(self._links.values()):
            self._link_timer(link, now)

    # --- the server side ------------------------------------------------------------------------------

    def _from_server(self, msg: wire.AnyMessage, sock: int, now: float) -> None:
        self._last_from_server = now
        match msg:
            case wire.Registered(token=token, pub=pub, timeout=timeout) if self.state is State.REGISTERING:
                self.clock_offset, self._offset_rtt = None, float("inf")  # perhaps a new server, a new clock
                self._rtt_sample(now, msg.now)
                self.token, self.pub, self.state = token, pub, State.REGISTERED
                self.keepalive = min(self.config.keepalive, timeout / 3)
                self._events.append(Joined(self.id, pub, again=self._ever_registered))
                self._ever_registered = True
                self._ver = None  # the snapshot that follows is authoritative
                self._warmup = 0.25  # the first keepalives come sooner: more samples of the clock offset
                self._keepalive_at = now + min(self._warmup, self.keepalive)
                self._sync_at = now + 1.0  # in case the snapshot is lost
            case wire.Alive(ver=ver, pub=pub) if self.state is State.REGISTERED:
                self._rtt_sample(now, msg.now)
                self.pub = pub
                self._keepalive_unanswered = False
                self._keepalive_gap = 1.0
                if ver != self._ver:
                    self._request_sync(now)
            case wire.Bye() if self.state is State.LEAVING:
                self.state = State.DONE
                self._events.append(Left(acknowledged=True))
            case wire.ListPage():
                self._on_page(msg, now)
            case wire.ListDelta(changes=changes):
                self._on_delta(changes, now)
            case wire.PunchGo(peer=peer, attempt=attempt, at=at) if peer.id in self._peers:
                self._on_go(peer, attempt, sock, self._local_time(at, now), now)
            case wire.PunchInvite(peer=peer, attempt=attempt) if peer in self._peers:
                self._on_invite(peer, attempt, now)
            case wire.Error(code=code, msg=text):
                self._on_error(code, text, now)
            case _:
                self.dropped += 1

    def _on_error(self, code: str, text: str, now: float) -> None:
        if code in ("id_taken", "server_full") and self.state is State.REGISTERING:
            self.state = State.DONE
            self._events.append(Refused(code, text))
        elif code in ("unknown_session", "bad_token") and self.state is State.REGISTERED:
            self.token = None  # the server does not know this session (restarted, or timed us out)
            self._lost("the server does not know this client (restarted?)", now)
        elif code == "unknown_peer":
            for link in self._links.values():
                if link.phase in (Phase.ASKING, Phase.OPENING) and link.peer in text.split():
                    self._fail_all(link, "not registered with the server", now)
        else:
            self.dropped += 1

    def _register(self, now: float) -> None:
        self._send(MAIN, wire.Register(id=self.id, priv=self.priv, token=self.token), self.server)
        self._probe_sent_at = now if self._retry_gap == 0.5 else None
        self._retry_at = now + self._retry_gap
        self._retry_gap = min(self._retry_gap * 2, max(self.keepalive, 1.0))

    def _rtt_sample(self, now: float, server_now: float) -> None:
        """A reply to our last (not retransmitted) request: learn the round trip and the clock offset."""
        if self._probe_sent_at is None:
            return
        sample = now - self._probe_sent_at
        self.srtt = sample if self.srtt is None else 0.875 * self.srtt + 0.125 * sample
        if sample <= self._offset_rtt:  # the server read its clock about half way through the round trip
            self.clock_offset = server_now - (self._probe_sent_at + now) / 2
            self._offset_rtt = sample
        self._probe_sent_at = None

    @property
    def _lost_after(self) -> float:
        """Silence from the server after which it counts as lost (two keepalives and a second)."""
        return 2 * self.keepalive + 1

    @property
    def attempt_time(self) -> float:
        """How long a punching attempt lasts: long enough for a few round trips, short enough that a
        failed one (the conntrack trap) is soon retried from fresh ports."""
        cfg = self.config
        if self.srtt is None:
            return cfg.attempt_time
        return min(cfg.attempt_time, max(cfg.attempt_min, cfg.attempt_rtts * self.srtt))

    def _lost(self, reason: str, now: float) -> None:
        self._events.append(ServerLost(reason))
        self.state = State.REGISTERING
        self._retry_gap = 0.5
        self._register(now)

    def _send_keepalive(self, now: float) -> None:
        assert self.token is not None
        ka = wire.KeepAlive(id=self.id, token=self.token, ver=self._ver or 0, rtt=self.srtt or 0.0)
        self._send(MAIN, ka, self.server)
        if self._keepalive_unanswered:  # the last one went unanswered: try again sooner
            self._keepalive_at = now + min(self._keepalive_gap, self.keepalive)
            self._keepalive_gap *= 2
            self._probe_sent_at = None
        else:
            self._warmup *= 2
            self._keepalive_at = now + min(self._warmup, self.keepalive)
            self._probe_sent_at = now
        self._keepalive_unanswered = True

    def _send_leave(self, now: float) -> None:
        assert self.token is not None
        self._send(MAIN, wire.Deregister(id=self.id, token=self.token), self.server)
        self._retry_at = now + 0.1

    # --- the peer list ----------------------------------------------------------------------------------

    def _on_page(self, page: wire.ListPage, now: float) -> None:
        key = (page.ver, page.count)
        if self._pages_key != key:
            if self._pages_key is not None and self._pages_key[0] > page.ver and self._ver is not None:
                return  # a page of an older snapshot than the one being collected
            self._pages_key, self._pages = key, {}
        self._pages[page.index] = page.peers
        if len(self._pages) == page.count:
            peers = [p for i in range(page.count) for p in self._pages[i]]
            self._pages_key, self._pages = None, {}
            self._set_list({p.id: p for p in peers}, page.ver, now)

    def _on_delta(self, changes: list[wire.Change], now: float) -> None:
        if self._ver is None:
            self._request_sync(now)
            return
        peers = dict(self._peers)
        ver = self._ver
        gap = False
        for change in changes:
            if change.ver <= ver:
                continue
            if change.ver != ver + 1:
                gap = True
                break
            ver = change.ver
            if change.gone:
                peers.pop(change.peer.id, None)
            else:
                peers[change.peer.id] = change.peer
        self._set_list(peers, ver, now)
        if gap:
            self._request_sync(now)  # missed some: ask for the rest

    def _set_list(self, peers: dict[str, PeerInfo], ver: int, now: float) -> None:
        left = [cid for cid in self._peers if cid not in peers]
        joined = [cid for cid, info in peers.items() if self._peers.get(cid) != info]
        if left or joined or list(peers) != list(self._peers):
            self._events.append(ListChanged(tuple(peers.values()), tuple(joined), tuple(left)))
        for gone in left:
            if (link := self._links.pop(gone, None)) is not None:
                self._fail_all(link, f"{gone} left", now)
                if link.sock != MAIN:
                    self._actions.append(CloseSocket(link.sock))
        self._peers, self._ver = peers, ver
        if (me := peers.get(self.id)) is not None:
            self.pub = me.pub
        self._sync_at = None

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
        if self.token is None:
            return  # registering again; ask once the server knows us
        req = wire.PunchRequest(
            id=self.id,
            token=self.token,
            peer=link.peer,
            attempt=link.attempt,
            priv=self._sock_local[link.sock],
            rtt=self.srtt or 0.0,
        )
        self._send(link.sock, req, self.server)

    def _local_time(self, server_time: float, now: float) -> float:
        """``server_time`` on our clock; now, if the offset is unknown or the time is not in (now, now+2s)."""
        if self.clock_offset is None:
            return now
        local = server_time - self.clock_offset
        return local if now < local < now + 2.0 else now

    def _on_go(self, peer: PeerInfo, attempt: int, sock: int, start: float, now: float) -> None:
        link = self._link(peer.id)
        if attempt < link.attempt or (attempt == link.attempt and link.phase is Phase.PROBING):
            return  # stale, or a duplicate
        same_nat = self.pub is not None and peer.pub.host == self.pub.host
        candidates = [peer.priv] if same_nat else [peer.pub]
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
        link = self._link(peer)
        if attempt > link.attempt:
            self._start_attempt(link, now, fresh=True, attempt=attempt)
        elif attempt == link.attempt and link.phase is Phase.ASKING:
            self._ask(link, now)  # our request may have been lost

    def _probe(self, link: _Link, at: float, *, first: bool = False) -> None:
        """Probe every candidate; the first probe of an attempt leaves at ``at`` (the agreed moment)."""
        probe = wire.encode(wire.Probe(src=self.id, dst=link.peer, attempt=link.attempt))
        for addr in link.candidates:
            self._actions.append(Send(link.sock, probe, addr, not_before=at if first else None))
        link.next_action = at + self.config.probe_interval

    def _link_timer(self, link: _Link, now: float) -> None:
        for out in list(link.outbox.values()):
            if now >= out.give_up_at:
                reason = "no answer" if link.phase is Phase.UP else "no direct path"
                self._fail_all(link, f"{reason} within {self.config.deliver_within:g} s", now)
                break
        if link.phase in (Phase.ASKING, Phase.PROBING):
            if now >= link.attempt_ends:
                link.phase = Phase.IDLE
                if link.outbox:
                    self._start_attempt(link, now, fresh=True)
            elif now >= link.next_action:
                if link.phase is Phase.ASKING:
                    self._ask(link, now)
                else:
                    self._probe(link, now)
        elif link.phase is Phase.UP:
            dead_at = self._path_dead_at(link)
            if dead_at is not None and now >= dead_at:
                link.phase = Phase.IDLE  # the path stopped answering (NAT mapping gone?): punch again
                for out in link.outbox.values():
                    out.sent_at = None
                self._start_attempt(link, now, fresh=False)
            else:
                self._pump(link, now)

    def _pump(self, link: _Link, now: float) -> None:
        """(Re)transmit what is due on an up path, at most ``window`` messages in flight."""
        assert link.addr is not None
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
                src=self.id, dst=link.peer, stream=link.stream, base=base, seq=out.seq, text=out.text, group=out.group
            )
            self._send(link.sock, msg, link.addr)

    def _fail_all(self, link: _Link, reason: str, now: float) -> None:
        """Give up on everything queued for the peer (order must hold) and start a new stream."""
        for out in link.outbox.values():
            self._events.append(DeliveryFailed(link.peer, out.text, reason))
        link.outbox.clear()
        link.stream = self._rng.randrange(1, 2**53)
        link.next_seq = 1
        if link.phase is not Phase.UP:
            link.phase = Phase.IDLE

    def _from_peer(self, msg: wire.AnyMessage, sock: int, addr: Addr, now: float) -> None:
        src = getattr(msg, "src", None)
        if sock != MAIN and self._sock_owner.get(sock) != src:
            self.dropped += 1  # a fresh socket only ever talks to the peer it was opened for
            return
        match msg:
            case wire.Probe(src=src, dst=self.id, attempt=attempt, ack=ack) if src in self._peers:
                self._link(src).attempt = max(self._link(src).attempt, attempt)
                link = self._heard(src, sock, addr, now)
                if not ack:
                    self._send(sock, wire.Probe(src=self.id, dst=src, attempt=attempt, ack=True), addr)
            case wire.Chat(src=src, dst=self.id) if src in self._peers:
                link = self._heard(src, sock, addr, now)
                self._receive_chat(link, sock, addr, msg)
            case wire.ChatAck(src=src, dst=self.id, stream=stream, seq=seq) if src in self._peers:
                link = self._heard(src, sock, addr, now)
                if stream == link.stream:
                    link.outbox.pop(seq, None)
            case _:
                self.dropped += 1
                return
        self._pump(link, now)

    def _receive_chat(self, link: _Link, sock: int, addr: Addr, msg: wire.Chat) -> None:
        """Show messages once each and in order; acknowledge only what was shown or is held for showing."""
        stream, base, seq = msg.stream, msg.base, msg.seq
        if link.rx_stream != stream:  # a new stream (or we lost our state): it resumes at the sender's base
            link.rx_stream, link.rx_next, link.rx_held = stream, base, {}
        elif base > link.rx_next:  # the sender saw everything before base acknowledged: shown already
            link.rx_held = {s: t for s, t in link.rx_held.items() if s >= base}
            link.rx_next = base
        if seq >= link.rx_next + 4 * self.config.window:
            self.dropped += 1  # too far ahead to hold: not acknowledged, so it will come again
            return
        if seq >= link.rx_next:
            link.rx_held[seq] = (msg.text, msg.group)
        self._send(sock, wire.ChatAck(src=self.id, dst=link.peer, stream=stream, seq=seq), addr)
        while link.rx_next in link.rx_held:
            text, group = link.rx_held.pop(link.rx_next)
            self._events.append(ChatReceived(link.peer, text, group))
            link.rx_next += 1

    def _heard(self, peer: str, sock: int, addr: Addr, now: float) -> _Link:
        """A datagram from ``peer`` arrived: that socket and source address are a working path."""
        link = self._link(peer)
        link.last_heard = now
        if link.phase is not Phase.UP or link.sock != sock or link.addr != addr:
            if sock != link.sock:
                self._use_socket(link, sock)
            link.addr = addr
            if link.phase is not Phase.UP:
                link.phase = Phase.UP
                self._events.append(PathUp(peer, addr, link.attempt))
        return link

    def _send(self, sock: int, msg: wire.Message, addr: Addr) -> None:
        self._actions.append(Send(sock, wire.encode(msg), addr))
