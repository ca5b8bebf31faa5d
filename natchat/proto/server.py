"""The rendezvous server as a sans-I/O object.

Feed it datagrams with :meth:`RendezvousServer.receive_datagram` and the time with
:meth:`handle_timer`; take what it wants sent from :meth:`datagrams_to_send` and what it wants printed
from :meth:`next_event`; sleep until :meth:`get_timer`. It never reads a clock or touches a socket.

Every rule that changes the registry lives here:

* a client registers with an ID and its private address; its public address is the datagram's source;
  first it must show that it receives at that address (a cookie, ``auth.py``), and with ``secret`` set,
  that it knows the secret; until then it gets one small ``challenge`` and nothing about anybody;
* every source address is rate-limited before anything else (``ratelimit.py``); a datagram from a
  source that is not registered gets at most one reply, at most twice its size;
* a keepalive with the session token refreshes it (and moves it, if it arrives from a new address:
  the NAT rebound the mapping); a client silent for ``timeout`` seconds disappears;
* deregistration needs the token; a live ID cannot be taken by anyone else;
* every change gets the next version number and is sent to every registered client as a delta; a
  client that missed one sees the gap and asks for the rest (:class:`~natchat.proto.wire.Sync`);
* the list holds IDs only (every client learns every change: O(N^2) in all, so each costs a few
  bytes); a client looks up the addresses and key of the peers it talks to (:class:`~natchat.proto.wire.Lookup`),
  and of everyone for ``@show_list``, at most once every ``SHOW_EVERY`` seconds;
* hole punching: the server sends both peers each other's addresses at the same moment;
* with ``relay`` on (a midPeer: ``serve --midpeer``, ``natchat midpeer``), it forwards datagrams between
  registered clients that found no direct path: by client ID only (never to an address the sender
  names, so it is no open proxy), within per-sender datagram and byte rates.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from . import auth, wire
from .events import Deregistered, Disappeared, Dropped, Moved, RegisteredEvent, RelayStarted, ServerEvent
from .ratelimit import RateLimiter
from .wire import Addr, PeerInfo

DELTA_LOG = 4096
"""How many recent changes the server keeps to answer a client that missed some."""

SHOW_EVERY = 1.0
"""Seconds between two lookups of everyone's details (``@show_list``) one client may make: each is O(N)."""
SHOW_PAGES_RATE = 5000.0
"""Pages of everyone's details the server sends per second for all clients together (bursts of twice
this): at 10,000 clients one ``@show_list`` is some 900 pages, so many at once are answered a few at a
time, and the others are asked to try again (``too_often``) rather than the server drowning in them."""

PUNCH_RENDEZVOUS_TTL = 10.0
"""How long a half-joined punching attempt waits for the other peer."""

PUNCH_LEAD_MARGIN = 0.02
"""Seconds added to the slower peer's round-trip time to schedule a punch (``PunchGo.at``)."""

PUNCH_SWEEP_STEP = 40e-6
PUNCH_SWEEP_STEPS = 8
"""Successive attempts move the two peers' start times apart by 0, +-40, +-80 ... +-320 microseconds.

Between nearby NATs the two first probes must cross within tens of microseconds. The peers' estimates
of the server's clock are good to about a hundred microseconds, and the error is much the same from one
attempt to the next; sweeping the difference turns a systematic miss into a hit within a few attempts.
"""


def sweep_offset(attempt: int) -> float:
    """The start-time difference (first peer minus second, by ID order) for punching attempt ``attempt``."""
    index = (attempt - 1) % (2 * PUNCH_SWEEP_STEPS + 1)
    magnitude = (index + 1) // 2
    return (magnitude if index % 2 else -magnitude) * PUNCH_SWEEP_STEP


SOURCE_RATE = 400.0
"""Datagrams per second the server takes from one source address (bursts of twice this); more than a
client sends even while relaying at ``RELAY_RATE``."""

RELAY_RATE = 200.0
"""Datagrams per second one client may have relayed (sustained; bursts of twice this)."""
RELAY_BYTES = 200_000.0
"""Bytes per second one client may have relayed (sustained; bursts of twice this)."""


_SILENT = frozenset({"malformed", "unexpected"})
"""Refusals not answered unless the sender is registered: garbage from strangers gets no reply."""


@dataclass(slots=True)
class _Entry:
    info: PeerInfo
    token: str
    last_seen: float
    rtt: float = 0.0  # as the client last reported it
    shown_at: float = float("-inf")  # when it last looked up everyone (``@show_list``)


@dataclass(slots=True)
class _Bucket:
    """Token buckets for one client's relayed traffic: what it may still send, as of ``at``."""

    datagrams: float
    bytes: float
    at: float


@dataclass(slots=True)
class _Rendezvous:
    """A punching attempt on fresh sockets: the source address each side asked from."""

    addrs: dict[str, Addr] = field(default_factory=dict)
    privs: dict[str, Addr] = field(default_factory=dict)
    expires: float = 0.0


class RendezvousServer:
    def __init__(
        self,
        *,
        timeout: float = 30.0,
        max_clients: int | None = None,
        relay: bool = False,
        lists: bool = True,
        relay_rate: float = RELAY_RATE,
        relay_bytes: float = RELAY_BYTES,
        secret: bytes | None = None,
        source_rate: float = SOURCE_RATE,
        token_factory: Callable[[], str] = lambda: secrets.token_hex(16),
        cookie_key: bytes | None = None,
    ) -> None:
        """``relay``: also be a midPeer relay. ``lists``: send clients the peer list (a standalone
        midPeer does not: the clients' lists come from their rendezvous server)."""
        self.timeout = timeout
        self.max_clients = max_clients
        self.relay = relay
        self.lists = lists
        self.relay_rate = relay_rate
        self.relay_bytes = relay_bytes
        self.secret = secret
        """``--secret``: registrations must prove they know it (auth.py)."""
        self._cookie_key = cookie_key if cookie_key is not None else secrets.token_bytes(32)
        # a client relaying at its full rate must not hit the per-source limit first (--relay-rate above it)
        source_rate = max(source_rate, 2 * relay_rate)
        self._limiter = RateLimiter(source_rate, 2 * source_rate, max_sources=16384)
        self._in_size = 0  # the size of the datagram being handled (replies to strangers are held under 2x)
        self._buckets: dict[str, _Bucket] = {}
        self._show_pages = _Bucket(2 * SHOW_PAGES_RATE, 0.0, 0.0)  # (``bytes`` unused)
        self._relaying: dict[str, set[str]] = {}  # sender -> receivers it has had relayed to
        self.relayed = 0
        """Datagrams relayed."""
        self.relay_limited = 0
        """Datagrams not relayed because their sender was over its rate."""
        self._new_token = token_factory
        self._entries: dict[str, _Entry] = {}  # in registration order
        self._expiry: OrderedDict[str, None] = OrderedDict()  # least recently heard first
        self._by_addr: dict[Addr, str] = {}
        self._log: deque[str] = deque(maxlen=DELTA_LOG)  # the last changes (wire.change), up to ``version``
        self.version = 0
        self._rendezvous: OrderedDict[tuple[str, str, int], _Rendezvous] = OrderedDict()
        self._out: list[tuple[bytes, Addr]] = []
        self._pages: tuple[int, list[bytes], int] | None = None
        """The list at some version encoded as pages, and where in ``_out`` they were last put."""
        self._pages_reuse = 64
        """How many changes old the encoded pages may be (the rest goes as deltas after them)."""
        self._pending: list[str] = []  # changes committed but not sent to everyone yet
        self._pending_ver = 0  # the version of _pending[0]
        self._pending_size = 0  # their bytes, with a space each
        self._delta_budget = wire.MAX_DATAGRAM - wire.encoded_size(wire.ListDelta(ver=2**53, changes=""))
        self._events: deque[ServerEvent] = deque()
        self.dropped = 0
        """Datagrams dropped as malformed or not allowed."""

    # --- what the shell reads ---------------------------------------------------------------------

    def datagrams_to_send(self) -> list[tuple[bytes, Addr]]:
        """What to send now. Call it when ready to send more: changes made while the shell was still
        sending go out together now (see :meth:`_record`)."""
        if self._pending:
            self._send_pending()
        out, self._out = self._out, []
        return out

    def next_event(self) -> ServerEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """When the next client would disappear (or a punching attempt expire)."""
        timers = []
        if self._expiry:
            oldest = next(iter(self._expiry))
            timers.append(self._entries[oldest].last_seen + self.timeout)
        if self._rendezvous:
            timers.append(next(iter(self._rendezvous.values())).expires)
        return min(timers) if timers else None

    def peers(self) -> list[PeerInfo]:
        """The registry, in registration order."""
        return [e.info for e in self._entries.values()]

    # --- what the shell feeds -----------------------------------------------------------------------

    def handle_timer(self, now: float) -> None:
        while self._expiry:
            client_id = next(iter(self._expiry))
            entry = self._entries[client_id]
            if entry.last_seen + self.timeout > now:
                break
            self._remove(client_id)
            self._events.append(Disappeared(entry.info))
        while self._rendezvous:
            key, rv = next(iter(self._rendezvous.items()))
            if rv.expires > now:
                break
            del self._rendezvous[key]

    @property
    def rate_limited(self) -> int:
        """Datagrams dropped because their source sent too many."""
        return self._limiter.dropped

    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        if not self._limiter.allow(addr, now):
            return  # dropped unread: a flood costs one lookup per datagram
        self._in_size = len(data)
        try:
            msg = wire.decode(data)
        except wire.WireError as exc:
            self._drop(addr, "malformed", str(exc))
            return
        match msg:
            case wire.Register():
                self._on_register(msg, addr, now)
            case wire.KeepAlive(id=cid, token=token, rtt=rtt):
                if (entry := self._authenticate(cid, token, addr)) is not None:
                    self._touch(entry, now)
                    entry.rtt = rtt
                    # the version of the last delta queued before this answer (not the changes still
                    # waiting for the shell): a client is behind only if it missed something
                    sent = self.version - len(self._pending)
                    self._send(wire.Alive(ver=sent, pub=entry.info.pub, now=now), addr)
            case wire.Deregister(id=cid, token=token):
                if (entry := self._authenticate(cid, token, addr)) is not None:
                    self._remove(cid)
                    self._events.append(Deregistered(entry.info))
                    self._send(wire.Bye(id=cid), addr)
            case wire.Sync(id=cid, token=token, since=since):
                if (entry := self._authenticate(cid, token, addr)) is not None:
                    self._touch(entry, now)
                    self._send_changes_since(since, addr)
            case wire.Lookup():
                self._on_lookup(msg, addr, now)
            case wire.PunchRequest():
                self._on_punch_request(msg, addr, now)
            case wire.Relay():
                self._on_relay(msg, addr, len(data), now)
            case _:
                self._drop(addr, "unexpected", f"{msg.__struct_config__.tag} is not for the server")

    # --- rules --------------------------------------------------------------------------------------

    def _on_register(self, msg: wire.Register, addr: Addr, now: float) -> None:
        entry = self._entries.get(msg.id)
        resumed = entry is not None and msg.token is not None and secrets.compare_digest(msg.token, entry.token)
        if not resumed and not self._admitted(msg, addr, now):
            return
        if entry is not None:
            same_session = msg.token == entry.token
            retransmit = msg.token is None and entry.info.pub == addr and entry.info.priv == msg.priv
            if not (same_session or retransmit):
                self._drop(addr, "id_taken", f"ID {msg.id} is already registered by another client")
                return
            if same_session and msg.key != entry.info.key:  # peers trust the listed key: nobody swaps it
                self._drop(addr, "key_changed", f"session {msg.id} registered another key; a session keeps its key")
                return
            # (without the token, from the same socket: a retransmission, or the client restarted there
            # with a new key before its old entry expired; peers get the new key with the change)
            changed = entry.info.pub != addr or entry.info.priv != msg.priv or entry.info.key != msg.key
            if changed:
                self._update(entry, addr, msg.priv, msg.key)  # the NAT rebound this session's mapping
            self._touch(entry, now)
            if retransmit and not changed:
                # The list went with the first answer (a client that lost it asks, a second after this
                # one): on a busy server the first answer is often just still waiting to be sent, and
                # sending the whole list again to every impatient client would only make it busier.
                self._send(self._registered(entry, addr, now), addr)
                return
        elif self.max_clients is not None and len(self._entries) >= self.max_clients:
            self._drop(addr, "server_full", f"the server is full: {self.max_clients} clients are registered")
            return
        else:
            entry = _Entry(PeerInfo(msg.id, addr, msg.priv, msg.key), self._new_token(), now)
            self._entries[msg.id] = entry
            self._expiry[msg.id] = None
            self._by_addr[addr] = msg.id
            self._events.append(RegisteredEvent(entry.info))
            self._record(wire.change(msg.id, gone=False))
        self._send(self._registered(entry, addr, now), addr)
        if self.lists:
            self._send_snapshot(addr)

    def _registered(self, entry: _Entry, addr: Addr, now: float) -> wire.Registered:
        return wire.Registered(
            id=entry.info.id, token=entry.token, pub=addr, timeout=self.timeout, now=now, relay=self.relay
        )

    def _admitted(self, msg: wire.Register, addr: Addr, now: float) -> bool:
        """A new registration shows its cookie (and proof of the secret); if not, it is challenged."""
        if not auth.cookie_ok(self._cookie_key, addr, now, msg.cookie):
            challenge = wire.Challenge(cookie=auth.cookie(self._cookie_key, addr, now), secret=self.secret is not None)
            self._send(challenge, addr)
            return False
        assert msg.cookie is not None
        if self.secret is not None and not auth.proof_ok(self.secret, msg.cookie, msg.id, msg.priv, msg.key, msg.proof):
            if msg.proof is None:
                self._drop(addr, "secret_required", "this server requires a secret (--secret or NATCHAT_SECRET)")
            else:
                self._drop(addr, "bad_secret", "wrong secret: the server refused the registration")
            return False
        return True

    def _on_lookup(self, msg: wire.Lookup, addr: Addr, now: float) -> None:
        entry = self._authenticate(msg.id, msg.token, addr)
        if entry is None:
            return
        self._touch(entry, now)
        if msg.peers is None:  # everyone: O(N), so not too often
            if now < entry.shown_at + SHOW_EVERY:
                self._send(
                    wire.Error(code="too_often", msg=f"the whole list at most once every {SHOW_EVERY:g} s"), addr
                )
                return
            if not self._take_show_pages(len(self._entries) // 10 + 1, now):  # (about 11 peers a page)
                self._send(wire.Error(code="too_often", msg="the server is busy sending lists; ask again"), addr)
                return
            entry.shown_at = now
            found = self.peers()
        else:
            found = [e.info for cid in dict.fromkeys(msg.peers) if (e := self._entries.get(cid)) is not None]
        empty = wire.Details(q=msg.q, ver=self.version, index=100_000, count=100_000, peers=[])
        batches = list(_pack(found, wire.encoded_size(empty))) or [[]]
        for i, batch in enumerate(batches):
            page = wire.Details(q=msg.q, ver=self.version, index=i, count=len(batches), peers=batch)
            self._send(page, addr)

    def _take_show_pages(self, pages: int, now: float) -> bool:
        """Take ``pages`` from the server-wide budget of everyone's-details pages, if it holds them."""
        budget = self._show_pages
        budget.datagrams = min(2 * SHOW_PAGES_RATE, budget.datagrams + max(0.0, now - budget.at) * SHOW_PAGES_RATE)
        budget.at = now
        if budget.datagrams < pages:
            return False
        budget.datagrams -= pages
        return True

    def _on_punch_request(self, msg: wire.PunchRequest, addr: Addr, now: float) -> None:
        entry = self._authenticate(msg.id, msg.token, addr, moving=False)
        if entry is None:
            return
        self._touch(entry, now)  # any proof of life counts; the source need not be its registered socket
        entry.rtt = msg.rtt
        peer = self._entries.get(msg.peer)
        if peer is None or peer is entry:
            self._send(wire.Error(code="unknown_peer", msg=f"{msg.peer} is not registered", peer=msg.peer), addr)
            return
        me = PeerInfo(entry.info.id, addr, msg.priv, entry.info.key)
        # Both first probes must cross between the NATs: name one moment for both, late enough for
        # both go's to arrive (a round trip of the slower peer, plus a margin) and for this server to
        # be idle again, so that neither peer waits for a CPU at that moment.
        at = now + max(entry.rtt, peer.rtt) + PUNCH_LEAD_MARGIN
        half = sweep_offset(msg.attempt) / 2
        at_of = {min(entry.info.id, peer.info.id): at + half, max(entry.info.id, peer.info.id): at - half}
        if addr == entry.info.pub:
            # From the registered socket: both sides punch from the sockets they registered with, which
            # the server already knows. Tell both now, in the same breath, so their first datagrams cross.
            self._send(wire.PunchGo(peer=peer.info, attempt=msg.attempt, at=at_of[me.id]), addr)
            self._send(wire.PunchGo(peer=me, attempt=msg.attempt, at=at_of[peer.info.id]), peer.info.pub)
            return
        # Later attempts use fresh sockets on both sides; wait until both have spoken from theirs.
        low, high = sorted((entry.info.id, peer.info.id))
        key = (low, high, msg.attempt)
        rv = self._rendezvous.get(key)
        if rv is None:
            rv = self._rendezvous[key] = _Rendezvous(expires=now + PUNCH_RENDEZVOUS_TTL)
        rv.addrs[entry.info.id] = addr
        rv.privs[entry.info.id] = msg.priv
        if len(rv.addrs) < 2:  # (again, on every retransmission, in case the invitation was lost)
            self._send(wire.PunchInvite(peer=entry.info.id, attempt=msg.attempt), peer.info.pub)
            return
        del self._rendezvous[key]
        for a, b in ((entry.info.id, peer.info.id), (peer.info.id, entry.info.id)):
            public = self._entries[b].info.key
            go = wire.PunchGo(peer=PeerInfo(b, rv.addrs[b], rv.privs[b], public), attempt=msg.attempt, at=at_of[a])
            self._send(go, rv.addrs[a])

    def _on_relay(self, msg: wire.Relay, addr: Addr, size: int, now: float) -> None:
        if not self.relay:
            self._drop(addr, "no_relay", "this server runs no midPeer relay")
            return
        entry = self._authenticate(msg.id, msg.token, addr)
        if entry is None:
            return
        self._touch(entry, now)
        peer = self._entries.get(msg.dst)
        if peer is None or peer is entry:
            error = wire.Error(code="unknown_peer", msg=f"{msg.dst} is not registered with the midPeer", peer=msg.dst)
            self._send(error, addr)
            return
        if not self._within_rate(msg.id, size, now):
            self.relay_limited += 1  # dropped without a word: the sender retransmits, more slowly
            self._events.append(Dropped(addr, "relay_limit", f"{msg.id} is over its relay rate"))
            return
        receivers = self._relaying.setdefault(msg.id, set())
        if msg.dst not in receivers:
            receivers.add(msg.dst)
            self._events.append(RelayStarted(msg.id, msg.dst))
        self.relayed += 1
        self._send(wire.Relayed(src=msg.id, data=msg.data), peer.info.pub)  # smaller than what came in

    def _within_rate(self, client_id: str, size: int, now: float) -> bool:
        """Take one datagram of ``size`` bytes from ``client_id``'s buckets, if they hold enough."""
        burst_datagrams, burst_bytes = 2 * self.relay_rate, 2 * self.relay_bytes
        bucket = self._buckets.get(client_id)
        if bucket is None:
            bucket = self._buckets[client_id] = _Bucket(burst_datagrams, burst_bytes, now)
        elapsed = max(0.0, now - bucket.at)
        bucket.datagrams = min(burst_datagrams, bucket.datagrams + elapsed * self.relay_rate)
        bucket.bytes = min(burst_bytes, bucket.bytes + elapsed * self.relay_bytes)
        bucket.at = now
        if bucket.datagrams < 1 or bucket.bytes < size:
            return False
        bucket.datagrams -= 1
        bucket.bytes -= size
        return True

    def _authenticate(self, client_id: str, token: str, addr: Addr, *, moving: bool = True) -> _Entry | None:
        entry = self._entries.get(client_id)
        if entry is None:
            self._drop(addr, "unknown_session", f"{client_id} is not registered here; register again")
            return None
        if not secrets.compare_digest(entry.token, token):
            self._drop(addr, "bad_token", f"wrong session token for {client_id}")
            return None
        if moving and entry.info.pub != addr:
            self._update(entry, addr, entry.info.priv)
        return entry

    def _touch(self, entry: _Entry, now: float) -> None:
        entry.last_seen = now
        self._expiry.move_to_end(entry.info.id)

    def _update(self, entry: _Entry, pub: Addr, priv: Addr, key: bytes | None = None) -> None:
        """The entry moved (or, with ``key``, a client restarted on its socket with a new key)."""
        old = entry.info
        if self._by_addr.get(old.pub) == old.id:
            del self._by_addr[old.pub]
        entry.info = PeerInfo(old.id, pub, priv, old.key if key is None else key)
        self._by_addr[pub] = old.id
        if old.pub != pub:
            self._events.append(Moved(entry.info, old.pub))
        self._record(wire.change(old.id, gone=False))

    def _remove(self, client_id: str) -> None:
        entry = self._entries.pop(client_id)
        del self._expiry[client_id]
        if self._by_addr.get(entry.info.pub) == client_id:
            del self._by_addr[entry.info.pub]
        if self._relaying:
            self._buckets.pop(client_id, None)
            self._relaying.pop(client_id, None)
            for receivers in self._relaying.values():
                receivers.discard(client_id)
        self._record(wire.change(client_id, gone=True))

    def _record(self, change: str) -> None:
        """Commit ``change`` as the next version; it goes to every client with the next delta.

        Every client must learn every change, so in a join storm it is the number of datagrams that
        counts. Changes wait until the shell asks for more to send (:meth:`datagrams_to_send`), so all
        that are made while it is still sending the last fan-out travel together, as many as fit in one
        datagram: an idle server sends each change at once, a busy one batches them, as busy as it is
        (the shell's sending is the clock). A delta goes to every client registered when it leaves,
        newcomers included (they may so get changes their list already has) and a moved client at its
        new address; clients skip what they have by version.
        """
        self.version += 1
        self._log.append(change)
        if not self.lists:
            return
        size = len(change) + 1  # and a space (IDs are ASCII)
        if self._pending and self._pending_size + size > self._delta_budget:
            self._send_pending()  # a datagram's worth: it goes now
        if not self._pending:
            self._pending_ver = self.version
        self._pending.append(change)
        self._pending_size += size

    def _send_pending(self) -> None:
        """One delta, encoded once, to every registered client: O(N), once per datagram of changes."""
        data = wire.encode(wire.ListDelta(ver=self._pending_ver, changes=" ".join(self._pending)))
        self._out.extend([(data, entry.info.pub) for entry in self._entries.values()])
        self._pending, self._pending_size = [], 0

    def _send_changes_since(self, since: int, addr: Addr) -> None:
        if since >= self.version:
            return
        first = self.version - len(self._log) + 1  # the version of ``_log[0]``
        if since == 0 or since < first - 1:  # 0: "send me everything"; or older than the log
            self._send_snapshot(addr)
            return
        changes = [self._log[i] for i in range(since - first + 1, len(self._log))]
        ver = since + 1
        for batch in _pack(changes, wire.encoded_size(wire.ListDelta(ver=2**53, changes=""))):
            self._send(wire.ListDelta(ver=ver, changes=" ".join(batch)), addr)
            ver += len(batch)

    def _send_snapshot(self, addr: Addr) -> None:
        """Send ``addr`` the whole list as pages. In a burst of registrations (before the shell takes the
        datagrams), newcomers share the pages encoded for the first of them, at most ``_pages_reuse``
        changes old, and get the changes since as deltas: encoding the whole list once per newcomer
        would cost O(N) each."""
        cached = self._pages
        if not (
            cached is not None
            and self.version - cached[0] <= self._pages_reuse
            and cached[2] < len(self._out)
            and self._out[cached[2]][0] is cached[1][0]  # still waiting to be sent: the same burst
        ):
            peers = list(self._entries)
            overhead = wire.encoded_size(wire.ListPage(ver=self.version, index=100_000, count=100_000, peers=""))
            batches = list(_pack(peers, overhead)) or [[]]
            pages = [
                wire.encode(wire.ListPage(ver=self.version, index=i, count=len(batches), peers=" ".join(batch)))
                for i, batch in enumerate(batches)
            ]
            cached = (self.version, pages, len(self._out))
        self._pages = (cached[0], cached[1], len(self._out))
        self._out.extend([(data, addr) for data in cached[1]])
        self._send_changes_since(cached[0], addr)

    def _send(self, msg: wire.Message, addr: Addr) -> None:
        self._out.append((wire.encode(msg), addr))

    def _drop(self, addr: Addr, code: str, reason: str) -> None:
        """Count a refused datagram and say why to the sender, unless it is an unknown source sending
        garbage (one short reply at most, never anything about other clients)."""
        self.dropped += 1
        self._events.append(Dropped(addr, code, reason))
        known = addr in self._by_addr
        if not known and code in _SILENT:
            return  # garbage from a stranger: not a word (and no work)
        # The reason may quote the datagram: printable ASCII only, and short, so the reply always fits.
        said = "".join(c if c.isascii() and c.isprintable() else "?" for c in reason[:200])
        error = wire.encode(wire.Error(code=code, msg=said))
        if known or len(error) <= 2 * self._in_size:  # a stranger: one short reply at most
            self._out.append((error, addr))


_T = TypeVar("_T")


def _pack(items: list[_T], overhead: int) -> Iterator[list[_T]]:
    """Split ``items`` into runs whose JSON, plus ``overhead`` bytes, fits in one datagram."""
    budget = wire.MAX_DATAGRAM - overhead
    batch: list[_T] = []
    size = 0
    for item in items:
        # an ID (or change), and the space between (IdList, ChangeList); anything else: its JSON and a comma
        item_size = len(item) + 1 if isinstance(item, str) else wire.encoded_size(item) + 1
        if batch and size + item_size > budget:
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += item_size
    if batch:
        yield batch
