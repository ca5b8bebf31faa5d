"""Birthday punching without I/O: the planner units for a pair with one endpoint-dependent NAT.

A NAT that maps endpoint-dependently (Linux ``MASQUERADE --random-fully``: a fresh random public port
for every new destination) cannot be punched by today's scheduled punch: the port its client gets toward
the peer is not the one the server saw. But it can be *found*: if the hard side opens ``s`` fresh
sockets toward the easy side's public address (``s`` random public ports) and the easy side sends ``k``
probes to distinct random ports of the hard side's public IP, some probe hits a mapped port with
probability ``1 - exp(-s*k/ports)`` (the birthday paradox; :func:`success_probability`). The first
sealed probe that arrives wins; everything else stops at once.

The pieces, each small and owning only its own state (none reads a clock, touches a socket, or draws
randomness it was not given; ``tests/test_layering.py`` checks):

* :func:`classify` -- the client's own mapping kind, from the public addresses one socket got toward the
  server's two ports.
* :func:`choose` -- the introducer's strategy for a pair (:class:`Plan`: scheduled punch, birthday with
  one hard side, or relay at once), and :meth:`Plan.role` -- what it tells each side.
* :class:`Params` -- the counts and pacing of one birthday attempt, and the start time of each side.
* :class:`Spray` -- the easy side: which ports of the hard side's IP to probe, and when.
* :class:`FanOut` -- the hard side: which fresh sockets to open and when, when each re-sends, and which
  to close when one wins.
* :class:`WindowBudget` -- a bound per peer and in total over any minute, so that a misbehaving
  introducer cannot turn a client into a port scanner or a socket sink.

The units decide *what* and *when*; the client session builds and seals the probes, owns the socket
numbers' meaning and the link's state, and sends (see ``docs/BIRTHDAY_DRAFT.md`` for the wire messages).
"""

from __future__ import annotations

import enum
import ipaddress
import math
import random
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Final

from .wire import Addr

PORT_MIN: Final = 1024
PORT_MAX: Final = 65535
PORTS: Final = PORT_MAX - PORT_MIN + 1
"""64,512: the ports a NAT picks from (Linux: 1024-65535 for a source port above 1023) and a spray aims at."""

SOCKETS: Final = 256
"""Default fan-out: sockets the hard side opens per attempt."""
PROBES: Final = 1024
"""Default spray: probes the easy side sends per attempt (256 x 1024 over 64,512 ports: about 98 %)."""
SPRAY_RATE: Final = 2000.0
"""Default spray pace, probes a second (the whole spray takes about half a second)."""
OPEN_RATE: Final = 1000.0
"""Default fan-out pace, sockets opened a second (256 in about a quarter of a second)."""
RESEND: Final = 0.1
"""Each fan-out socket sends its probe again this often, for the attempt's life."""

MAX_PROBES: Final = PROBES
"""A spray never sends more than this per attempt, whatever the introducer asks."""
MAX_SPRAY_RATE: Final = 4000.0
"""A spray never goes faster than this, whatever the introducer asks."""
MAX_SOCKETS: Final = SOCKETS
"""A fan-out never opens more than this per attempt."""
MAX_OPEN_RATE: Final = 2000.0
"""A fan-out never opens sockets faster than this."""
MIN_RESEND: Final = 0.05
"""A fan-out socket never re-sends more often than this."""
MAX_LIFE: Final = 5.0
"""No attempt lasts longer than this (seconds), whatever the introducer asks."""

PROBES_PER_PEER_MINUTE: Final = 3 * PROBES
"""Spray budget: probes toward one peer in any 60 s (three full attempts)."""
PROBES_PER_MINUTE: Final = 8 * PROBES
"""Spray budget: probes toward all peers together in any 60 s."""
SOCKETS_PER_PEER_MINUTE: Final = 3 * SOCKETS
"""Fan-out budget: sockets opened for one peer in any 60 s."""
SOCKETS_PER_MINUTE: Final = 8 * SOCKETS
"""Fan-out budget: sockets opened for all peers together in any 60 s."""


# --- the mapping kind and the strategy ------------------------------------------------------------------


class MappingKind(enum.Enum):
    """How the client's NAT maps one socket toward different destinations (RFC 4787, as far as one server
    address with two ports can tell)."""

    ENDPOINT_INDEPENDENT = "independent"
    """The same public address toward both server ports (or no NAT): an "easy" side. (An address-
    dependent NAT looks the same from one server address; Linux NATs are never address-dependent.)"""
    ENDPOINT_DEPENDENT = "dependent"
    """Different public addresses toward the two ports: a "hard" side (``--random-fully``)."""
    UNKNOWN = "unknown"
    """Nothing learned (no second port, an answer lost, an old client): treated as today."""


def classify(toward_main: Addr | None, toward_alt: Addr | None) -> MappingKind:
    """The client's own mapping kind from the public addresses its one socket was seen at by the server's
    main port and by its second port (None: that answer never came)."""
    if toward_main is None or toward_alt is None:
        return MappingKind.UNKNOWN
    if toward_main == toward_alt:
        return MappingKind.ENDPOINT_INDEPENDENT
    return MappingKind.ENDPOINT_DEPENDENT  # another port, or even another public IP (a NAT pool)


class Strategy(enum.Enum):
    """How the introducer has a pair find a path."""

    SCHEDULED = "scheduled"
    """Today's punch: both sides probe each other's public address from the agreed moment."""
    BIRTHDAY = "birthday"
    """One side is hard: it fans out, the other sprays (:class:`FanOut`, :class:`Spray`)."""
    RELAY = "relay"
    """Both sides are hard: no punch can be scheduled (a spray would need 65,536 probes a side); relay at once."""


class Side(enum.Enum):
    """One side of a pair, as :func:`choose` was given them."""

    A = "a"
    B = "b"

    @property
    def other(self) -> Side:
        return Side.B if self is Side.A else Side.A


class Role(enum.Enum):
    """What the introducer tells one side to do (the ``punch_go`` variant it gets)."""

    SCHEDULED = "scheduled"
    SPRAY = "spray"
    """The easy side of a birthday attempt: spray the peer's public IP from the registered socket."""
    FAN_OUT = "fan_out"
    """The hard side of a birthday attempt: open fresh sockets, each probing the peer's public address."""
    RELAY = "relay"


@dataclass(frozen=True, slots=True)
class Plan:
    """The introducer's choice for a pair; ``hard`` is the hard side of a :attr:`Strategy.BIRTHDAY` plan."""

    strategy: Strategy
    hard: Side | None = None

    def __post_init__(self) -> None:
        if (self.strategy is Strategy.BIRTHDAY) != (self.hard is not None):
            raise ValueError("a birthday plan names its hard side, and only a birthday plan does")

    def role(self, side: Side) -> Role:
        """What ``side`` is told to do."""
        match self.strategy:
            case Strategy.SCHEDULED:
                return Role.SCHEDULED
            case Strategy.RELAY:
                return Role.RELAY
            case Strategy.BIRTHDAY:
                return Role.FAN_OUT if side is self.hard else Role.SPRAY


def choose(
    a: MappingKind,
    b: MappingKind,
    *,
    a_willing: bool = True,
    b_willing: bool = True,
    relay: bool = True,
    same_host: bool = False,
) -> Plan:
    """The strategy for a pair whose sides reported mapping kinds ``a`` and ``b``.

    ``*_willing``: that side takes part in birthday attempts (false with ``--no-spray``: it neither sprays
    nor fans out). ``relay``: the introducer relays (else a pair of hard sides is scheduled as today,
    which fails as today; a port-preserving "hard" NAT may still let it through). ``same_host``: both
    were seen at the same public IP (the same NAT, or a carrier-grade NAT they share): today's punch,
    which probes the private addresses first, whatever the kinds (the LAN needs no NAT to be punched).

    Both easy, or either unknown: today's punch (an unknown side may be an old client or one that
    learned nothing; it is never asked to spray). One hard and one easy, both willing: birthday, with the
    hard side named. One hard and the easy side unwilling: today's punch (it can work when the easy side
    filters endpoint-independently; else the relay takes over after ``--relay-after`` as today). Both
    hard: relay at once, nothing sprayed.
    """
    dependent = MappingKind.ENDPOINT_DEPENDENT
    independent = MappingKind.ENDPOINT_INDEPENDENT
    if same_host or MappingKind.UNKNOWN in (a, b):
        return Plan(Strategy.SCHEDULED)
    if a is dependent and b is dependent:
        return Plan(Strategy.RELAY) if relay else Plan(Strategy.SCHEDULED)
    if a is independent and b is independent:
        return Plan(Strategy.SCHEDULED)
    if not (a_willing and b_willing):
        return Plan(Strategy.SCHEDULED)
    return Plan(Strategy.BIRTHDAY, hard=Side.A if a is dependent else Side.B)


# --- the math -------------------------------------------------------------------------------------------


def success_probability(sockets: int, probes: int, ports: int = PORTS) -> float:
    """P(some probe hits a mapped port) ~ 1 - exp(-sockets * probes / ports), the birthday formula."""
    if sockets < 0 or probes < 0 or ports <= 0:
        raise ValueError("sockets and probes must be at least 0, ports at least 1")
    return 1.0 - math.exp(-sockets * probes / ports)


def exact_success_probability(sockets: int, probes: int, ports: int = PORTS) -> float:
    """The same without the approximation: ``sockets`` distinct mapped ports, ``probes`` distinct probed
    ports, both uniform over ``ports``; P(no hit) = C(ports - sockets, probes) / C(ports, probes)."""
    if not 0 <= sockets <= ports or not 0 <= probes <= ports:
        raise ValueError("sockets and probes must be between 0 and the number of ports")
    if sockets + probes > ports:
        return 1.0
    miss = 1.0
    for i in range(probes):
        miss *= (ports - sockets - i) / (ports - i)
    return 1.0 - miss


def probes_needed(p: float, sockets: int, ports: int = PORTS) -> int:
    """The fewest probes for success probability ``p`` (by the formula) against ``sockets`` mapped ports."""
    if not 0.0 <= p < 1.0 or sockets <= 0:
        raise ValueError("p must be in [0, 1) and sockets at least 1")
    return math.ceil(-math.log1p(-p) * ports / sockets)


# --- one attempt's parameters -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Params:
    """The counts and pacing of one birthday attempt, as the introducer sends them to both sides.

    The hard side starts its fan-out at the attempt's moment ``at``; the easy side starts spraying once
    every fan-out socket has sent its first probe (:meth:`spray_at`): a spray probe is only worth
    anything at a port that is already mapped. Both sides stop at ``at + life``.
    """

    sockets: int = SOCKETS
    open_rate: float = OPEN_RATE
    probes: int = PROBES
    spray_rate: float = SPRAY_RATE
    resend: float = RESEND
    margin: float = 0.02
    """Seconds between the last socket opened and the first probe sprayed (the hard side's lateness)."""
    linger: float = 1.0
    """Seconds the attempt lasts after the last probe sprayed (for the winning answer to come back)."""

    def __post_init__(self) -> None:
        if self.sockets < 1 or self.probes < 1:
            raise ValueError("a birthday attempt needs at least one socket and one probe")
        if not all(math.isfinite(x) and x > 0 for x in (self.open_rate, self.spray_rate, self.resend)):
            raise ValueError("rates and the resend interval must be positive")
        if not all(math.isfinite(x) and x >= 0 for x in (self.margin, self.linger)):
            raise ValueError("margin and linger must be at least 0")

    def spray_at(self, at: float) -> float:
        """When the easy side sprays its first probe, for an attempt whose fan-out starts at ``at``."""
        return at + self.sockets / self.open_rate + self.margin

    @property
    def life(self) -> float:
        """How long the attempt lasts from ``at``, on both sides (at most :data:`MAX_LIFE`)."""
        return min(MAX_LIFE, self.spray_at(0.0) + self.probes / self.spray_rate + self.linger)

    @property
    def success(self) -> float:
        """The attempt's chance by the formula (:func:`success_probability`)."""
        return success_probability(min(self.sockets, PORTS), min(self.probes, PORTS))


# --- budgets ----------------------------------------------------------------------------------------------


class WindowBudget:
    """At most ``per_key`` units for one key, and ``total`` for all keys together, in any ``window``
    seconds (a sliding window: exact, not a bucket that lets twice through at its edges).

    Owns only its ledger of grants. Keys are peer IDs; at most ``max_keys`` are remembered (the least
    recently used is forgotten first; the total still bounds what forgetting lets through).
    """

    def __init__(self, per_key: int, total: int, *, window: float = 60.0, max_keys: int = 1024) -> None:
        if per_key < 0 or total < 0 or window <= 0 or max_keys < 1:
            raise ValueError("budgets must be at least 0, the window positive, and max_keys at least 1")
        self.per_key = per_key
        self.total = total
        self.window = window
        self.max_keys = max_keys
        self._keys: OrderedDict[str, deque[tuple[float, int]]] = OrderedDict()
        self._all: deque[tuple[float, int]] = deque()
        self._used: dict[str, int] = {}
        self._used_all = 0
        self.refused = 0
        """Units asked for and not granted."""

    def _expire(self, now: float) -> None:
        cutoff = now - self.window
        while self._all and self._all[0][0] <= cutoff:
            self._used_all -= self._all.popleft()[1]
        for key in [k for k, grants in self._keys.items() if grants and grants[0][0] <= cutoff]:
            grants = self._keys[key]
            while grants and grants[0][0] <= cutoff:
                self._used[key] -= grants.popleft()[1]
            if not grants:
                del self._keys[key], self._used[key]

    def left(self, key: str, now: float) -> int:
        """Units ``key`` could still take at ``now``."""
        self._expire(now)
        return max(0, min(self.per_key - self._used.get(key, 0), self.total - self._used_all))

    def take(self, key: str, n: int, now: float) -> int:
        """Take up to ``n`` units for ``key`` at ``now``; returns how many were granted (0 to ``n``)."""
        granted = min(n, self.left(key, now))
        self.refused += n - granted
        if key in self._keys:
            self._keys.move_to_end(key)  # a key that keeps asking is the last to be forgotten
        if granted <= 0:
            return 0
        grants = self._keys.pop(key, None) or deque()
        grants.append((now, granted))
        self._keys[key] = grants  # now the most recently used
        self._used[key] = self._used.get(key, 0) + granted
        self._all.append((now, granted))
        self._used_all += granted
        while len(self._keys) > self.max_keys:
            old, _ = self._keys.popitem(last=False)
            del self._used[old]
        return granted


def spray_budget() -> WindowBudget:
    """The client's one spray budget (probes per peer and in total per minute)."""
    return WindowBudget(PROBES_PER_PEER_MINUTE, PROBES_PER_MINUTE)


def fan_out_budget() -> WindowBudget:
    """The client's one fan-out budget (sockets per peer and in total per minute)."""
    return WindowBudget(SOCKETS_PER_PEER_MINUTE, SOCKETS_PER_MINUTE)


# --- pacing -----------------------------------------------------------------------------------------------


class _Pacer:
    """A token bucket from ``start``: ``first`` tokens at ``start``, ``rate`` a second after, at most
    ``burst`` held. Over any interval of ``w`` seconds it grants at most ``burst + rate * w``."""

    def __init__(self, start: float, rate: float, burst: int, first: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(min(first, burst))
        self._at = start
        self.start = start

    def take(self, now: float, most: int) -> int:
        if now < self.start:
            return 0
        if now > self._at:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
        n = max(0, min(most, int(self._tokens + 1e-9)))
        self._tokens -= n
        return n

    def ready_at(self, want: int) -> float:
        """When ``want`` tokens (at most the burst) will be held."""
        need = min(float(want), self.burst) - self._tokens
        return max(self.start, self._at + max(0.0, need) / self.rate)


class Outcome(enum.Enum):
    """Where a spray or a fan-out stands."""

    RUNNING = "running"
    WON = "won"
    """A sealed probe of this attempt arrived: the path is found, nothing more is sent."""
    SENT_ALL = "sent_all"
    """A spray sent every probe it had (it can still be won by a late answer)."""
    BUDGET = "budget"
    """The per-minute budget ran out: nothing more is sent this attempt."""
    EXPIRED = "expired"
    """A fan-out's life ended without a win: every socket is closed."""
    STOPPED = "stopped"
    """The owner stopped it (the attempt ended, the peer left, ``--no-spray``)."""


def _positive(name: str, value: float) -> float:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, not {value!r}")
    return value


# --- the easy side ----------------------------------------------------------------------------------------


class Spray:
    """The easy side's spray at the hard side's public IP: which ports, and when.

    Owns the attempt's port plan (``probes`` distinct ports in 1024-65535, drawn from ``rng`` at once),
    its pacing (at most ``rate`` a second after a burst of ``burst``; timers every ``batch`` probes), and
    its outcome. It sends nothing itself: :meth:`due` says which ports to probe now, and the owner sends
    one sealed probe to ``(target_ip, port)`` for each, from its registered socket. Every port it hands
    out is first taken from ``budget`` under ``peer``; when the budget refuses, the spray ends
    (:attr:`Outcome.BUDGET`) rather than trickle on. ``probes`` and ``rate`` are capped at
    :data:`MAX_PROBES` and :data:`MAX_SPRAY_RATE`, whatever the introducer asked.
    """

    def __init__(
        self,
        target_ip: str,
        rng: random.Random,
        *,
        start: float,
        peer: str,
        budget: WindowBudget,
        probes: int = PROBES,
        rate: float = SPRAY_RATE,
        batch: int = 8,
        burst: int = 16,
    ) -> None:
        try:
            self.target_ip = str(ipaddress.ip_address(target_ip))
        except ValueError:
            raise ValueError(f"spray target {target_ip!r} is not an IP address") from None
        if probes < 1 or batch < 1 or burst < batch:
            raise ValueError("a spray needs at least one probe, and a burst of at least one batch")
        self.peer = peer
        self.probes = min(probes, MAX_PROBES)
        self.rate = min(_positive("the spray rate", rate), MAX_SPRAY_RATE)
        self.batch = batch
        self._budget = budget
        self._ports = rng.sample(range(PORT_MIN, PORT_MAX + 1), self.probes)
        self._pacer = _Pacer(start, self.rate, burst, batch)
        self.sent = 0
        self.outcome = Outcome.RUNNING

    @property
    def done(self) -> bool:
        """Nothing more will be sprayed."""
        return self.outcome is not Outcome.RUNNING

    def due(self, now: float) -> list[int]:
        """The ports to probe at ``now`` (possibly none)."""
        if self.done:
            return []
        n = self._pacer.take(now, self.probes - self.sent)
        if n == 0:
            return []
        granted = self._budget.take(self.peer, n, now)
        ports = self._ports[self.sent : self.sent + granted]
        self.sent += granted
        if granted < n:
            self.outcome = Outcome.BUDGET
        elif self.sent == self.probes:
            self.outcome = Outcome.SENT_ALL
        return ports

    def get_timer(self) -> float | None:
        """When :meth:`due` next has ports to give (None: never again)."""
        if self.done:
            return None
        return self._pacer.ready_at(min(self.batch, self.probes - self.sent))

    def won(self) -> None:
        """A sealed probe of this attempt arrived from the peer: stop at once."""
        self.outcome = Outcome.WON

    def stop(self) -> None:
        """The attempt is over (or called off): send nothing more."""
        if self.outcome is Outcome.RUNNING:
            self.outcome = Outcome.STOPPED


# --- the hard side ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FanOutStep:
    """What a fan-out asks for at one moment. Sockets are the fan-out's numbers (``first_sock + i``)."""

    open: tuple[int, ...] = ()
    """Open these fresh sockets and send the probe from each."""
    send: tuple[int, ...] = ()
    """Send the probe again from each of these (already open)."""
    close: tuple[int, ...] = ()
    """Close these at once."""

    def __bool__(self) -> bool:
        return bool(self.open or self.send or self.close)


class FanOut:
    """The hard side's fan-out toward the easy side's public address: which fresh sockets, and when.

    Owns its sockets' numbers (``first_sock`` to ``first_sock + count - 1``; the owner maps them to real
    sockets and makes sure they are free), the pace of opening them (at most ``rate`` a second after a
    burst of ``burst``), each socket's re-send schedule (every ``resend`` seconds from its opening, until
    the attempt's end at ``start + life``), and the outcome. It sends nothing itself: the owner sends one
    sealed probe toward the peer's public address from every socket in a step's ``open`` and ``send``.
    Every socket is first taken from ``budget`` under ``peer``; when the budget refuses, no more are
    opened (those open keep re-sending). :meth:`won` hands the winning socket to the owner (it becomes the
    path) and returns all the others to close; at the end of its life, a step closes them all.
    """

    def __init__(
        self,
        *,
        start: float,
        peer: str,
        budget: WindowBudget,
        count: int = SOCKETS,
        rate: float = OPEN_RATE,
        resend: float = RESEND,
        life: float = 2.0,
        first_sock: int = 0,
        batch: int = 8,
        burst: int = 16,
    ) -> None:
        if count < 1 or batch < 1 or burst < batch:
            raise ValueError("a fan-out needs at least one socket, and a burst of at least one batch")
        self.peer = peer
        self.count = min(count, MAX_SOCKETS)
        self.rate = min(_positive("the fan-out rate", rate), MAX_OPEN_RATE)
        self.resend = max(_positive("the resend interval", resend), MIN_RESEND)
        self.ends = start + min(_positive("the attempt's life", life), MAX_LIFE)
        self.first_sock = first_sock
        self.batch = batch
        self._budget = budget
        self._pacer = _Pacer(start, self.rate, burst, batch)
        self._opened: list[int] = []
        self._resends: deque[tuple[float, int]] = deque()  # (when, sock), in time order
        self._open_more = True
        self.sent = 0
        """Probes sent in all (first ones and re-sends)."""
        self.outcome = Outcome.RUNNING

    @property
    def done(self) -> bool:
        return self.outcome is not Outcome.RUNNING

    @property
    def opened(self) -> tuple[int, ...]:
        """The sockets opened so far (and not handed over or closed)."""
        return tuple(self._opened)

    def due(self, now: float) -> FanOutStep:
        """What to do at ``now``."""
        if self.done:
            return FanOutStep()
        if now >= self.ends:
            self.outcome = Outcome.EXPIRED
            return FanOutStep(close=self._close_all())
        send: list[int] = []
        while self._resends and self._resends[0][0] <= now:
            send.append(self._resends.popleft()[1])
        opened: list[int] = []
        if self._open_more:
            want = self._pacer.take(now, self.count - len(self._opened))
            granted = self._budget.take(self.peer, want, now) if want else 0
            if granted < want or len(self._opened) + granted == self.count:
                self._open_more = False
            if granted == 0 and want > 0 and not self._opened:
                self.outcome = Outcome.BUDGET  # not one socket: nothing to wait for
                return FanOutStep()
            base = self.first_sock + len(self._opened)
            opened = list(range(base, base + granted))
            self._opened.extend(opened)
        for sock in (*send, *opened):
            self._resends.append((now + self.resend, sock))
        self.sent += len(send) + len(opened)
        return FanOutStep(open=tuple(opened), send=tuple(send))

    def get_timer(self) -> float | None:
        if self.done:
            return None
        timers = [self.ends]
        if self._resends:
            timers.append(self._resends[0][0])
        if self._open_more:
            timers.append(self._pacer.ready_at(min(self.batch, self.count - len(self._opened))))
        return min(timers)

    def won(self, sock: int) -> tuple[int, ...]:
        """A sealed probe of this attempt arrived on ``sock``: it is the path now (the owner's to keep);
        returns every other socket, to close at once. Nothing more is opened or sent."""
        if sock not in self._opened:
            raise ValueError(f"socket {sock} is not one of this fan-out's open sockets")
        self._opened.remove(sock)
        self.outcome = Outcome.WON
        return self._close_all()

    def stop(self) -> tuple[int, ...]:
        """Call the attempt off: returns every open socket, to close at once."""
        if self.done:
            return ()
        self.outcome = Outcome.STOPPED
        return self._close_all()

    def _close_all(self) -> tuple[int, ...]:
        closing = tuple(self._opened)
        self._opened.clear()
        self._resends.clear()
        self._open_more = False
        return closing
