"""One client's registration with one server, as a sans-I/O object.

A chat client keeps one with the rendezvous server (for the peer list) and, when it uses a standalone
midPeer (``join --midpeer``), a second one with the midPeer (for introductions and the relay). Each
registers, keeps alive with warm-up (the first keepalives come sooner, for more clock samples), measures
the round-trip time (from first transmissions only, as Karn says) and the offset of the server's clock
(from the exchange with the shortest round trip, as NTP does), and notices when the server is lost.

It sends through the callback it is given and reports what happened by return values (typed:
:class:`Control`, :class:`GaveUp`, :class:`Lost`); the :class:`~natchat.proto.client.ClientSession`
turns those into events, differently for the server and for a midPeer.

Owns: the registration state, the token, the public address seen, keepalive and retry timing, the
round-trip and clock-offset estimates. May not: know about the list, peers or paths.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from . import auth, wire
from .wire import Addr

REGISTER_RETRY_MAX = 2.0
"""The longest gap between registration retransmissions: a registration takes two round trips (the
cookie, then the registration), and on a lossy path retrying often is what gets it through."""


REFUSALS = frozenset({"id_taken", "server_full", "secret_required", "bad_secret", "key_changed"})
"""Errors that end a registration attempt for good."""
SESSION_UNKNOWN = frozenset({"unknown_session", "bad_token"})
"""Errors that say the server does not know this session (it restarted, or timed us out)."""


_CONTROL = (wire.Registered, wire.Challenge, wire.Alive, wire.Bye)

SYNC_SAMPLES = 8
"""Keepalives a clock sync sends, one after another's answer (:meth:`Registration.sync`)."""
SYNC_GAP = 0.005
"""Seconds between an answer and the sync's next keepalive."""
SYNC_AGAIN = 30.0
"""A sync within this many seconds of the last one's start is not repeated (clocks drift slowly)."""


class Control(enum.Enum):
    """What a control message from the server did to the registration (:meth:`Registration.on_control`)."""

    JOINED = "registered"
    CHALLENGED = "challenged"  # answered with a cookie: registering again with it
    NEEDS_SECRET = "needs a secret"  # the server requires a secret we do not have: gave up
    ALIVE = "alive"
    BYE = "bye"
    REFUSED = "refused"  # gave up for good; the error says why
    FORGOTTEN = "forgotten"  # the server does not know our session: registering afresh
    STALE = "stale"  # a control message we were not waiting for


@dataclass(frozen=True, slots=True)
class GaveUp:
    """The server never answered the first registration within ``register_within``."""


@dataclass(frozen=True, slots=True)
class Lost:
    """The server fell silent (registering again)."""

    silent: float

    @property
    def reason(self) -> str:
        return f"no answer from the server for {self.silent:.0f} s"


@dataclass(frozen=True, slots=True)
class LeaveUnanswered:
    """The server did not acknowledge the deregistration within the time given."""


LEAVE_RETRY = 0.1
"""Seconds between deregistration retransmissions while leaving."""


class RegState(enum.Enum):
    REGISTERING = "registering"
    REGISTERED = "registered"
    GAVE_UP = "gave up"  # never answered within ``register_within``, or refused
    LEAVING = "leaving"  # deregistering
    LEFT = "left"


@dataclass(frozen=True, slots=True)
class RegConfig:
    keepalive: float = 10.0
    register_within: float | None = 10.0
    secret: bytes | None = None
    """``--secret``: prove it (never send it) when the server asks (auth.py)."""
    learn_mapping: bool = False
    """On a challenge that names the server's ``alt`` port, wait for the session to learn the mapping
    kind (:meth:`Registration.mapping_known`) before registering with the cookie."""
    spray: bool = True
    """Registered as ``spray`` (false with ``--no-spray``)."""


class Registration:
    def __init__(
        self,
        client_id: str,
        server: Addr,
        priv: Addr,
        config: RegConfig,
        send: Callable[[wire.Message], None],
        *,
        key: bytes,
        signed: bytes | None = None,
    ) -> None:
        """``key``: the session's public key, registered with the ID (the same for every registration);
        ``signed``: the identity key, its signature of (ID, key, issued), and issued, as the wire carries
        them (:data:`~natchat.proto.wire.Signed`; ``identity.py``)."""
        self.id = client_id
        self.key = key
        self.signed = signed
        self.server = server
        self.priv = priv
        self.config = config
        self._send = send
        self.state = RegState.REGISTERING
        self.token: str | None = None
        self.pub: Addr | None = None
        self.relay = False
        """The server offers the midPeer relay (it said so when it registered us)."""
        self.keepalive = config.keepalive
        self.list_version = 0
        """Sent with keepalives: the registry version the client has (the session keeps it current)."""
        self.ever_registered = False
        self.again = False
        """The last registration was not the first (the server had been lost)."""
        self.answered = False
        """The server has answered at all (a challenge counts): it is there, so keep trying."""
        self._started_at = 0.0
        self._retry_at = 0.0
        self._retry_gap = 0.5
        self._leave_by = 0.0
        self.last_heard = 0.0
        self._keepalive_at = 0.0
        self._keepalive_gap = 1.0
        self._keepalive_unanswered = False
        self._warmup = 0.25
        self._probe_sent_at: float | None = None  # a registration or keepalive not retransmitted yet
        self.srtt: float | None = None
        """Smoothed round-trip time to the server."""
        self.clock_offset: float | None = None
        """The server's clock minus ours."""
        self._offset_rtt = float("inf")
        self._sync_left = 0
        self._synced_at: float | None = None
        self._cookie: str | None = None  # the server's last challenge: proves we receive at our address
        self.unchecked_secret = False
        """We have a secret, and the server said it does not check one."""
        self.mapping: wire.Mapping | None = None
        """The mapping kind registered (learned once per session; None: unknown)."""
        self.mapping_learned = False
        self.learning = False
        """Waiting for the mapping kind before registering with the cookie."""

    @property
    def registered(self) -> bool:
        return self.state is RegState.REGISTERED

    @property
    def lost_after(self) -> float:
        """Silence from the server after which it counts as lost (two keepalives and a second)."""
        return 2 * self.keepalive + 1

    def start(self, now: float) -> None:
        self._started_at = self.last_heard = now
        self._register(now)

    def get_timer(self) -> float:
        if self.state is RegState.GAVE_UP or self.state is RegState.LEFT:
            return float("inf")
        if self.state is RegState.LEAVING:
            return min(self._retry_at, self._leave_by)
        if self.state is RegState.REGISTERING:
            timer = self._retry_at
            if not self.answered and self.config.register_within is not None:
                timer = min(timer, self._started_at + self.config.register_within)
            return timer
        return min(self._keepalive_at, self.last_heard + self.lost_after)

    def handle_timer(self, now: float) -> GaveUp | Lost | LeaveUnanswered | None:
        """Retransmit or keep alive as due; says if the server never answered, fell silent, or did not
        acknowledge the deregistration in time."""
        limit = self.config.register_within
        if self.state is RegState.LEAVING:
            if now >= self._leave_by:
                self.state = RegState.LEFT
                return LeaveUnanswered()
            if now >= self._retry_at:
                self._send_leave(now)
        elif self.state is RegState.REGISTERING:
            if not self.answered and limit is not None and now >= self._started_at + limit:
                self.state = RegState.GAVE_UP
                return GaveUp()
            if now >= self._retry_at:
                self._register(now)
        elif self.state is RegState.REGISTERED:
            silent = now - self.last_heard
            if silent >= self.lost_after:
                self.lost(now)
                return Lost(silent)
            if now >= self._keepalive_at:
                self._send_keepalive(now)
        return None

    def on_control(self, msg: wire.AnyMessage, now: float) -> Control | None:
        """A datagram from this server: what it did, if it is about the registration (None: it is not)."""
        self.last_heard = now
        if self.state is RegState.LEAVING or self.state is RegState.LEFT:
            if isinstance(msg, wire.Bye) and self.state is RegState.LEAVING:
                self.state = RegState.LEFT
                return Control.BYE
            ours = isinstance(msg, _CONTROL) or (isinstance(msg, wire.Error) and msg.code in REFUSALS | SESSION_UNKNOWN)
            return Control.STALE if ours else None
        match msg:
            case wire.Registered():
                return Control.JOINED if self.on_registered(msg, now) else Control.STALE
            case wire.Challenge():
                if self.state is not RegState.REGISTERING:
                    return Control.STALE
                return Control.CHALLENGED if self.on_challenge(msg, now) else Control.NEEDS_SECRET
            case wire.Alive():
                return Control.ALIVE if self.on_alive(msg, now) else Control.STALE
            case wire.Bye():
                return Control.STALE  # (only a leaving registration waits for one)
            case wire.Error(code=code) if code in REFUSALS:
                if self.state is not RegState.REGISTERING:
                    return Control.STALE
                self.give_up()
                return Control.REFUSED
            case wire.Error(code=code) if code in SESSION_UNKNOWN:
                if not self.registered:
                    return Control.STALE
                self.forget_session(now)
                return Control.FORGOTTEN
            case _:
                return None

    def on_registered(self, msg: wire.Registered, now: float) -> bool:
        """The server registered us; False if we were not asking (a stale duplicate)."""
        self.last_heard = now
        if self.state is not RegState.REGISTERING:
            return False
        self.clock_offset, self._offset_rtt = None, float("inf")  # perhaps a new server, with a new clock
        self._sync_left, self._synced_at = 0, None
        self._rtt_sample(now, msg.now)
        self.token, self.pub, self.state, self.relay = msg.token, msg.pub, RegState.REGISTERED, msg.relay
        self.keepalive = min(self.config.keepalive, msg.timeout / 3)
        self.again = self.ever_registered
        self.ever_registered = self.answered = True
        self._warmup = 0.25
        self._keepalive_at = now + min(self._warmup, self.keepalive)
        return True

    def on_alive(self, msg: wire.Alive, now: float) -> bool:
        """A keepalive was acknowledged; False if we are not registered (ignore it)."""
        self.last_heard = now
        if self.state is not RegState.REGISTERED:
            return False
        self._rtt_sample(now, msg.now)
        self.pub = msg.pub
        self._keepalive_unanswered = False
        self._keepalive_gap = 1.0
        if self._sync_left > 0:  # the next of the sync's keepalives, now that this one is answered
            self._sync_left -= 1
            self._keepalive_at = min(self._keepalive_at, now + SYNC_GAP)
        return True

    def sync(self, now: float) -> None:
        """Measure the clock offset again, well: :data:`SYNC_SAMPLES` keepalives, each sent once the
        last is answered (an answer can never be taken for another's), keeping the shortest round trip.

        Called when punching starts. The estimate from registration rests on a few samples, and the two
        peers' errors differ by up to a few hundred microseconds; between nearby trap NATs the first
        probes must cross within tens (``docs/PROTOCOL.md``, *the lottery, traced*). Not repeated within
        :data:`SYNC_AGAIN`; the samples before it are dropped (the clocks may have drifted since)."""
        if self.state is not RegState.REGISTERED or self._sync_left > 0:
            return
        if self._synced_at is not None and now - self._synced_at < SYNC_AGAIN:
            return
        self._synced_at = now
        self._sync_left = SYNC_SAMPLES - 1  # (the answers still to be followed by another keepalive)
        self._offset_rtt = float("inf")
        if not self._keepalive_unanswered:
            self._keepalive_at = min(self._keepalive_at, now)  # (else: at its answer, or its retry)

    def on_challenge(self, msg: wire.Challenge, now: float) -> bool:
        """The server wants a cookie (and perhaps a proof) first: register again at once with them.
        False if it requires a secret we do not have (we give up)."""
        self.last_heard = now
        if self.state is not RegState.REGISTERING:
            return True  # a stale challenge
        if msg.secret and self.config.secret is None:
            self.state = RegState.GAVE_UP
            return False
        self.answered = True
        self.unchecked_secret = self.config.secret is not None and not msg.secret
        self._cookie = msg.cookie
        self._rtt_sample(now, None)
        if self.config.learn_mapping and msg.alt is not None and not self.mapping_learned:
            self.learning = True  # the session asks the two ports, then calls mapping_known
            self._retry_at = now + REGISTER_RETRY_MAX
            return True
        self._send_register(now)
        return True

    def mapping_known(self, mapping: wire.Mapping | None, now: float) -> None:
        """The session learned the mapping kind (None: it could not): register with the cookie now."""
        self.mapping, self.mapping_learned = mapping, True
        if self.learning and self.state is RegState.REGISTERING:
            self.learning = False
            self._send_register(now)

    def forget_session(self, now: float) -> None:
        """The server does not know our token (it restarted, or timed us out): register afresh."""
        self.token = None
        self.lost(now)

    def lost(self, now: float) -> None:
        self.state = RegState.REGISTERING
        self._retry_gap = 0.5
        self._register(now)

    def give_up(self) -> None:
        self.state = RegState.GAVE_UP

    def leave(self, now: float, within: float) -> bool:
        """Deregister, retrying until acknowledged or ``within`` seconds have passed; False if there is no
        session to end (nothing is sent)."""
        if self.token is None:
            return False
        self.state = RegState.LEAVING
        self._leave_by = now + within
        self._send_leave(now)
        return True

    def say_goodbye(self) -> None:
        """Deregister once, without waiting for an answer (a midPeer, when the client leaves)."""
        if self.token is not None:
            self._send(wire.Deregister(id=self.id, token=self.token))

    def _send_leave(self, now: float) -> None:
        assert self.token is not None
        self._send(wire.Deregister(id=self.id, token=self.token))
        self._retry_at = now + LEAVE_RETRY

    def local_time(self, server_time: float, now: float) -> float:
        """``server_time`` on our clock; now, if the offset is unknown or the time is not in (now, now+2s)."""
        if self.clock_offset is None:
            return now
        local = server_time - self.clock_offset
        return local if now < local < now + 2.0 else now

    def _register(self, now: float) -> None:
        self._send_register(now, first=self._retry_gap == 0.5)
        self._retry_gap = min(self._retry_gap * 2, REGISTER_RETRY_MAX)

    def _send_register(self, now: float, *, first: bool = True) -> None:
        proof = None
        if self.config.secret is not None and self._cookie is not None:
            proof = auth.proof(self.config.secret, self._cookie, self.id, self.priv, self.key, self._ident)
        register = wire.Register(
            id=self.id,
            priv=self.priv,
            key=self.key,
            token=self.token,
            cookie=self._cookie,
            proof=proof,
            mapping=self.mapping,
            spray=self.config.spray,
            signed=self.signed,
        )
        self._send(register)
        self._probe_sent_at = now if first else None
        self._retry_at = now + self._retry_gap

    @property
    def _ident(self) -> bytes | None:
        return wire.ident_of(self.signed)

    def _send_keepalive(self, now: float) -> None:
        assert self.token is not None
        rtt = self.srtt or 0.0
        self._send(wire.KeepAlive(id=self.id, token=self.token, ver=self.list_version, rtt=rtt))
        if self._keepalive_unanswered:  # the last one went unanswered: try again sooner
            self._keepalive_at = now + min(self._keepalive_gap, self.keepalive)
            self._keepalive_gap *= 2
            self._probe_sent_at = None
        else:
            if self._sync_left == 0:  # (a clock sync's keepalives do not count toward the warm-up)
                self._warmup *= 2
            self._keepalive_at = now + min(self._warmup, self.keepalive)
            self._probe_sent_at = now
        self._keepalive_unanswered = True

    def _rtt_sample(self, now: float, server_now: float | None) -> None:
        """A reply to our last (not retransmitted) request: learn the round trip and the clock offset
        (``server_now``: the server's clock when it answered, if it said)."""
        if self._probe_sent_at is None:
            return
        sample = now - self._probe_sent_at
        self.srtt = sample if self.srtt is None else 0.875 * self.srtt + 0.125 * sample
        # the server read its clock about half way through the round trip
        if server_now is not None and sample <= self._offset_rtt:
            self.clock_offset = server_now - (self._probe_sent_at + now) / 2
            self._offset_rtt = sample
        self._probe_sent_at = None
