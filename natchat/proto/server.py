"""The rendezvous server as a sans-I/O object.

Feed it datagrams with :meth:`RendezvousServer.receive_datagram` and the time with
:meth:`handle_timer`; take what it wants sent from :meth:`datagrams_to_send` and what it wants printed
from :meth:`next_event`; sleep until :meth:`get_timer`. It never reads a clock or touches a socket.

:class:`RendezvousServer` is the facade: one dispatch per datagram, and the rules of who may do what.
The state lives in units, each with its own tests, which it calls and which answer by return values:

* ``registry.py``: the entries, their expiry, tokens, versions and the log of changes;
* ``fanout.py``: the outgoing queue, the changes batched for everyone, list pages and ``sync``;
* ``broker.py``: punching (when each side starts, the rendezvous on fresh sockets);
* ``relaygate.py``: the relay's per-sender rates and who relays to whom;
* ``ratelimit.py``: the token bucket behind every limit, and the per-source limiter.

The rules:

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
from collections import deque
from collections.abc import Callable

from . import auth, wire
from .broker import (
    PUNCH_LEAD_MARGIN,
    PUNCH_RENDEZVOUS_TTL,
    PUNCH_SWEEP_STEP,
    PUNCH_SWEEP_STEPS,
    PunchBroker,
    Side,
    sweep_offset,
)
from .events import Deregistered, Disappeared, Dropped, Moved, RegisteredEvent, RelayStarted, ServerEvent
from .fanout import ListFanout, pack
from .ratelimit import RateLimiter, TokenBucket
from .registry import DELTA_LOG, Entry, Registry
from .relaygate import RelayGate, Verdict
from .wire import Addr, PeerInfo

__all__ = [
    "DELTA_LOG",
    "PUNCH_LEAD_MARGIN",
    "PUNCH_RENDEZVOUS_TTL",
    "PUNCH_SWEEP_STEP",
    "PUNCH_SWEEP_STEPS",
    "RELAY_BYTES",
    "RELAY_RATE",
    "SHOW_EVERY",
    "SHOW_PAGES_RATE",
    "SOURCE_RATE",
    "RendezvousServer",
    "sweep_offset",
]

SHOW_EVERY = 1.0
"""Seconds between two lookups of everyone's details (``@show_list``) one client may make: each is O(N)."""
SHOW_PAGES_RATE = 5000.0
"""Pages of everyone's details the server sends per second for all clients together (bursts of twice
this): at 10,000 clients one ``@show_list`` is some 900 pages, so many at once are answered a few at a
time, and the others are asked to try again (``too_often``) rather than the server drowning in them.
Read when a server is made."""

SOURCE_RATE = 400.0
"""Datagrams per second the server takes from one source address (bursts of twice this); more than a
client sends even while relaying at ``RELAY_RATE``."""

RELAY_RATE = 200.0
"""Datagrams per second one client may have relayed (sustained; bursts of twice this)."""
RELAY_BYTES = 200_000.0
"""Bytes per second one client may have relayed (sustained; bursts of twice this)."""


_SILENT = frozenset({"malformed", "unexpected"})
"""Refusals not answered unless the sender is registered: garbage from strangers gets no reply."""


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
        alt_port: int | None = None,
    ) -> None:
        """``relay``: also be a midPeer relay. ``lists``: send clients the peer list (a standalone
        midPeer does not: the clients' lists come from their rendezvous server). ``alt_port``: the second
        port that answers STUN Binding (named in the challenge; None: none)."""
        self.alt_port = alt_port
        self.max_clients = max_clients
        self.relay = relay
        self.lists = lists
        self.secret = secret
        """``--secret``: registrations must prove they know it (auth.py)."""
        self._cookie_key = cookie_key if cookie_key is not None else secrets.token_bytes(32)
        # a client relaying at its full rate must not hit the per-source limit first (--relay-rate above it)
        source_rate = max(source_rate, 2 * relay_rate)
        self._limiter = RateLimiter(source_rate, 2 * source_rate, max_sources=16384)
        self._in_size = 0  # the size of the datagram being handled (replies to strangers are held under 2x)
        self.registry = Registry(timeout=timeout, token_factory=token_factory)
        """Who is registered (read it; the server's rules change it)."""
        self.broker = PunchBroker()
        """The punching rendezvous (read it; the server's rules change it)."""
        self.relay_gate = RelayGate(relay_rate, relay_bytes)
        """The relay's rates and who relays to whom (read it; the server's rules change it)."""
        self._fanout = ListFanout()
        self._show_pages = TokenBucket(SHOW_PAGES_RATE, 2 * SHOW_PAGES_RATE)
        self._events: deque[ServerEvent] = deque()
        self.dropped = 0
        """Datagrams dropped as malformed or not allowed."""

    # --- what the shell reads ---------------------------------------------------------------------

    @property
    def timeout(self) -> float:
        return self.registry.timeout

    @property
    def version(self) -> int:
        return self.registry.version

    @property
    def relay_rate(self) -> float:
        return self.relay_gate.rate

    @property
    def relay_bytes(self) -> float:
        return self.relay_gate.byte_rate

    @property
    def source_rate(self) -> float:
        """Datagrams per second taken from one source (``source_rate``, raised to twice ``relay_rate``)."""
        return self._limiter.rate

    @property
    def relayed(self) -> int:
        """Datagrams relayed."""
        return self.relay_gate.relayed

    @property
    def relay_limited(self) -> int:
        """Datagrams not relayed because their sender was over its rate."""
        return self.relay_gate.limited

    @property
    def rate_limited(self) -> int:
        """Datagrams dropped because their source sent too many."""
        return self._limiter.dropped

    def datagrams_to_send(self) -> list[tuple[bytes, Addr]]:
        """What to send now. Call it when ready to send more: changes made while the shell was still
        sending go out together now (see ``fanout.py``)."""
        if self._fanout.unsent:
            self._fanout.broadcast(self.registry.addressed(self._fanout.flush()))
        return self._fanout.take()

    def next_event(self) -> ServerEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """When the next client would disappear (or a punching attempt expire)."""
        timers = [t for t in (self.registry.next_deadline(), self.broker.get_timer()) if t is not None]
        return min(timers) if timers else None

    def peers(self) -> list[PeerInfo]:
        """The registry, in registration order."""
        return self.registry.peers()

    # --- what the shell feeds -----------------------------------------------------------------------

    def handle_timer(self, now: float) -> None:
        for entry, change in self.registry.expire(now):
            self._forget(entry, change)
            self._events.append(Disappeared(entry.info))
        self.broker.handle_timer(now)

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
                    self.registry.touch(entry, now)
                    entry.rtt = rtt
                    # the version of the last delta queued before this answer (not the changes still
                    # waiting for the shell): a client is behind only if it missed something
                    sent = self.registry.version - self._fanout.unsent
                    self._fanout.send(wire.Alive(ver=sent, pub=entry.info.pub, now=now), addr)
            case wire.Deregister(id=cid, token=token):
                if (entry := self._authenticate(cid, token, addr)) is not None:
                    self._forget(*self.registry.remove(cid))
                    self._events.append(Deregistered(entry.info))
                    self._fanout.send(wire.Bye(id=cid), addr)
            case wire.Sync(id=cid, token=token, since=since):
                if (entry := self._authenticate(cid, token, addr)) is not None:
                    self.registry.touch(entry, now)
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
        entry = self.registry.get(msg.id)
        resumed = entry is not None and msg.token is not None and secrets.compare_digest(msg.token, entry.token)
        if not resumed and not self._admitted(msg, addr, now):
            return
        if entry is not None:
            same_session = msg.token == entry.token
            retransmit = msg.token is None and entry.info.pub == addr and entry.info.priv == msg.priv
            if not (same_session or retransmit):
                self._drop(addr, "id_taken", f"ID {msg.id} is already registered by another client")
                return
            info = entry.info
            signed = (msg.key, msg.signed) != (info.key, info.signed)
            if same_session and signed:  # peers trust the listed key and identity: nobody swaps them
                self._drop(addr, "key_changed", f"session {msg.id} registered another key; a session keeps its key")
                return
            # (without the token, from the same socket: a retransmission, or the client restarted there
            # with a new key before its old entry expired; peers get the new key with the change)
            changed = info.pub != addr or info.priv != msg.priv or signed
            if changed:
                self._update(entry, addr, msg.priv, msg.key, _info(msg, addr))  # the NAT rebound this mapping
            self.registry.touch(entry, now)
            entry.mapping, entry.spray = msg.mapping, msg.spray
            if retransmit and not changed:
                # The list went with the first answer (a client that lost it asks, a second after this
                # one): on a busy server the first answer is often just still waiting to be sent, and
                # sending the whole list again to every impatient client would only make it busier.
                self._fanout.send(self._registered(entry, addr, now), addr)
                return
        elif self.max_clients is not None and len(self.registry) >= self.max_clients:
            self._drop(addr, "server_full", f"the server is full: {self.max_clients} clients are registered")
            return
        else:
            entry, change = self.registry.add(_info(msg, addr), now)
            entry.mapping, entry.spray = msg.mapping, msg.spray
            self._events.append(RegisteredEvent(entry.info))
            self._record(change)
        self._fanout.send(self._registered(entry, addr, now), addr)
        if self.lists:
            self._send_snapshot(addr)

    def _registered(self, entry: Entry, addr: Addr, now: float) -> wire.Registered:
        return wire.Registered(
            id=entry.info.id, token=entry.token, pub=addr, timeout=self.timeout, now=now, relay=self.relay
        )

    def _admitted(self, msg: wire.Register, addr: Addr, now: float) -> bool:
        """A new registration shows its cookie (and proof of the secret); if not, it is challenged."""
        if not auth.cookie_ok(self._cookie_key, addr, now, msg.cookie):
            cookie = auth.cookie(self._cookie_key, addr, now)
            challenge = wire.Challenge(cookie=cookie, secret=self.secret is not None, alt=self.alt_port)
            self._fanout.send(challenge, addr)
            return False
        assert msg.cookie is not None
        if self.secret is not None and not auth.proof_ok(
            self.secret, msg.cookie, msg.id, msg.priv, msg.key, msg.proof, msg.ident
        ):
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
        self.registry.touch(entry, now)
        if msg.peers is None:  # everyone: O(N), so not too often
            if now < entry.shown_at + SHOW_EVERY:
                error = wire.Error(code="too_often", msg=f"the whole list at most once every {SHOW_EVERY:g} s")
                self._fanout.send(error, addr)
                return
            if not self._show_pages.take(now, len(self.registry) // 10 + 1):  # (about 11 peers a page)
                self._fanout.send(wire.Error(code="too_often", msg="the server is busy sending lists; ask again"), addr)
                return
            entry.shown_at = now
            found = [info.unsigned() for info in self.registry.peers()]  # (identities: looked up when used)
        else:
            found = [e.info for cid in dict.fromkeys(msg.peers) if (e := self.registry.get(cid)) is not None]
        version = self.registry.version
        empty = wire.Details(q=msg.q, ver=version, index=100_000, count=100_000, peers=[])
        batches = list(pack(found, wire.encoded_size(empty))) or [[]]
        for i, batch in enumerate(batches):
            page = wire.Details(q=msg.q, ver=version, index=i, count=len(batches), peers=batch)
            self._fanout.send(page, addr)

    def _on_punch_request(self, msg: wire.PunchRequest, addr: Addr, now: float) -> None:
        entry = self._authenticate(msg.id, msg.token, addr, moving=False)
        if entry is None:
            return
        self.registry.touch(entry, now)  # any proof of life counts; the source need not be its registered socket
        entry.rtt = msg.rtt
        peer = self.registry.get(msg.peer)
        if peer is None or peer is entry:
            self._fanout.send(wire.Error(code="unknown_peer", msg=f"{msg.peer} is not registered", peer=msg.peer), addr)
            return
        me = Side(entry.info, entry.rtt, addr, msg.priv, entry.mapping, entry.spray)
        them = Side(peer.info, peer.rtt, peer.info.pub, peer.info.priv, peer.mapping, peer.spray)
        for go, dst in self.broker.request(me, them, msg.attempt, now, relay=self.relay):
            self._fanout.send(go, dst)

    def _on_relay(self, msg: wire.Relay, addr: Addr, size: int, now: float) -> None:
        if not self.relay:
            self._drop(addr, "no_relay", "this server runs no midPeer relay")
            return
        entry = self._authenticate(msg.id, msg.token, addr)
        if entry is None:
            return
        self.registry.touch(entry, now)
        peer = self.registry.get(msg.dst)
        if peer is None or peer is entry:
            error = wire.Error(code="unknown_peer", msg=f"{msg.dst} is not registered with the midPeer", peer=msg.dst)
            self._fanout.send(error, addr)
            return
        verdict = self.relay_gate.admit(msg.id, msg.dst, size, now)
        if verdict is Verdict.LIMITED:  # dropped without a word: the sender retransmits, more slowly
            self._events.append(Dropped(addr, "relay_limit", f"{msg.id} is over its relay rate"))
            return
        if verdict is Verdict.FIRST:
            self._events.append(RelayStarted(msg.id, msg.dst))
        self._fanout.send(wire.Relayed(src=msg.id, data=msg.data), peer.info.pub)  # smaller than what came in

    def _authenticate(self, client_id: str, token: str, addr: Addr, *, moving: bool = True) -> Entry | None:
        entry = self.registry.get(client_id)
        if entry is None:
            self._drop(addr, "unknown_session", f"{client_id} is not registered here; register again")
            return None
        if not secrets.compare_digest(entry.token, token):
            self._drop(addr, "bad_token", f"wrong session token for {client_id}")
            return None
        if moving and entry.info.pub != addr:
            self._update(entry, addr, entry.info.priv)
        return entry

    def _update(
        self, entry: Entry, pub: Addr, priv: Addr, key: bytes | None = None, signed: PeerInfo | None = None
    ) -> None:
        """The entry moved (or, with ``key``, a client restarted on its socket with a new key)."""
        old_pub, change = self.registry.update(entry, pub, priv, key, signed)
        if old_pub != pub:
            self._events.append(Moved(entry.info, old_pub))
        self._record(change)

    def _forget(self, entry: Entry, change: str) -> None:
        """``entry`` was removed from the registry (with ``change``): the relay forgets it too."""
        if self.relay:  # (only a relay has relay state)
            self.relay_gate.forget(entry.info.id)
        self._record(change)

    def _record(self, change: str) -> None:
        """``change`` was committed as the registry's version: it goes to every client with the next delta."""
        if self.lists and (full := self._fanout.record(self.registry.version, change)) is not None:
            self._fanout.broadcast(self.registry.addressed(full))  # a datagram's worth: it goes now

    def _send_changes_since(self, since: int, addr: Addr) -> None:
        changes = self.registry.changes_since(since)
        if changes is None:  # "send me everything", or older than the log
            self._send_snapshot(addr)
        elif changes:
            self._fanout.send_changes(since, changes, addr)

    def _send_snapshot(self, addr: Addr) -> None:
        """Send ``addr`` the whole list as pages (shared within a burst), then the changes since them."""
        version = self.registry.version
        shared = self._fanout.pages_version(version) is not None
        sent = self._fanout.send_snapshot(version, None if shared else self.registry.ids(), addr)
        self._send_changes_since(sent, addr)

    def _drop(self, addr: Addr, code: str, reason: str) -> None:
        """Count a refused datagram and say why to the sender, unless it is an unknown source sending
        garbage (one short reply at most, never anything about other clients)."""
        self.dropped += 1
        self._events.append(Dropped(addr, code, reason))
        known = self.registry.knows_addr(addr)
        if not known and code in _SILENT:
            return  # garbage from a stranger: not a word (and no work)
        # The reason may quote the datagram: printable ASCII only, and short, so the reply always fits.
        said = "".join(c if c.isascii() and c.isprintable() else "?" for c in reason[:200])
        error = wire.encode(wire.Error(code=code, msg=said))
        if known or len(error) <= 2 * self._in_size:  # a stranger: one short reply at most
            self._fanout.send_data(error, addr)


def _info(msg: wire.Register, pub: Addr) -> PeerInfo:
    """The details a registration lists, its identity included (stored and passed on, never verified
    here: clients verify them, and the server records nothing they must trust)."""
    return PeerInfo(msg.id, pub, msg.priv, msg.key, msg.signed)
