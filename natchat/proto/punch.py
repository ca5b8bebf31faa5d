"""One peer's direct path: hole-punching attempts, and the path they find.

``IDLE`` --(start)--> ``ASKING`` (from the registered socket) or ``OPENING`` (a fresh socket is being
opened, then ``ASKING``) --(the introducer's ``punch_go``)--> ``PROBING`` --(any datagram from the
peer)--> ``UP``. An attempt that ends without a path goes back to ``IDLE`` (the link decides whether to
start the next one, from a fresh socket); an up path that stops answering is ``DEAD``: ``IDLE`` again.
The transitions are data (:data:`TRANSITIONS`); an illegal one is a bug and raises.

Why fresh sockets: a failed attempt can leave a conntrack entry on the peer's NAT that makes it give its
host another port toward us for as long as the entry lives (the conntrack trap, ``docs/PROTOCOL.md``).

Owns: the phase, the socket the path uses and the peer address it goes to, the attempt number and its
deadlines, the candidates probed, when the peer was last heard. May not: decide about the relay or the
messages (it reports "the attempt ended" and "the path came up"; the link acts), seal, or build
datagrams: it asks its :class:`PathPort` to ask the introducer and to probe.
"""

from __future__ import annotations

import enum
from typing import Protocol

from .sockets import MAIN, SocketPool
from .wire import Addr

ASK_RETRY = 0.5
"""Seconds before an unanswered ``punch_req`` is sent again."""


class Phase(enum.Enum):
    IDLE = "idle"
    OPENING = "opening"  # waiting for the shell to open a fresh socket
    ASKING = "asking"  # asked the introducer to start an attempt
    PROBING = "probing"
    UP = "up"


class Step(enum.Enum):
    START_MAIN = "start from the registered socket"
    START_FRESH = "start from a fresh socket"
    OPENED = "the fresh socket is open"
    GO = "the introducer said go"
    HEARD = "a datagram arrived from the peer"
    ENDED = "the attempt ended without a path"
    GIVE_UP = "the messages waiting for a path failed"
    DEAD = "the path stopped answering"


_ANY = tuple(Phase)
_TRYING = (Phase.ASKING, Phase.PROBING)
TRANSITIONS: dict[tuple[Phase, Step], Phase] = {
    **{(p, Step.START_MAIN): Phase.ASKING for p in _ANY if p is not Phase.UP},
    **{(p, Step.START_FRESH): Phase.OPENING for p in _ANY},
    **{(p, Step.GO): Phase.PROBING for p in _ANY},
    **{(p, Step.HEARD): Phase.UP for p in _ANY if p is not Phase.UP},
    **{(p, Step.ENDED): Phase.IDLE for p in _TRYING},
    **{(p, Step.GIVE_UP): Phase.IDLE for p in _ANY if p is not Phase.UP},
    (Phase.OPENING, Step.OPENED): Phase.ASKING,
    (Phase.UP, Step.DEAD): Phase.IDLE,
}
"""(phase, step) -> the next phase. Anything else is a bug."""


class IllegalTransition(RuntimeError):
    pass


class PathPort(Protocol):
    """What a direct path needs done, by whoever can build and seal datagrams (the link)."""

    def ask(self, sock: int, attempt: int) -> None:
        """Send the introducer a ``punch_req`` for ``attempt`` from ``sock``."""

    def probe(self, sock: int, attempt: int, candidates: list[Addr], at: float, first: bool) -> None:
        """Probe every candidate from ``sock``; the first probe of an attempt leaves at ``at``."""


class DirectPath:
    def __init__(
        self, peer: str, pool: SocketPool, port: PathPort, *, probe_interval: float, dead_after: float
    ) -> None:
        self.peer = peer
        self._pool = pool
        self._port = port
        self.probe_interval = probe_interval
        self.dead_after = dead_after
        self.phase = Phase.IDLE
        self.sock = MAIN
        self.addr: Addr | None = None
        self.attempt = 0
        self.attempt_ends = 0.0
        self.next_action = 0.0  # the next probe or punch_req retransmission
        self.candidates: list[Addr] = []
        self.last_heard = float("-inf")
        self.quiet = False
        """This attempt is the link's birthday attempt (or a relay plan): probing, but nothing sent here."""

    @property
    def up(self) -> bool:
        return self.phase is Phase.UP

    def _step(self, step: Step) -> None:
        nxt = TRANSITIONS.get((self.phase, step))
        if nxt is None:
            raise IllegalTransition(f"{self.peer}: {step.value} while {self.phase.value}")
        self.phase = nxt

    # --- what the link tells it -------------------------------------------------------------------

    def start(self, now: float, attempt_time: float, *, fresh: bool, attempt: int | None = None) -> None:
        """Begin attempt ``attempt`` (default: the next one), from the registered or a fresh socket."""
        self.attempt = attempt if attempt is not None else self.attempt + 1
        self.quiet = False
        self._use_socket(None if fresh else MAIN)
        if fresh:
            self._step(Step.START_FRESH)
            return
        self._step(Step.START_MAIN)
        self.attempt_ends = now + attempt_time
        self._ask(now)

    def opened(self, sock: int, now: float, attempt_time: float) -> None:
        if sock == self.sock and self.phase is Phase.OPENING:
            self._step(Step.OPENED)
            self.attempt_ends = now + attempt_time
            self._ask(now)

    def go(
        self,
        attempt: int,
        sock: int,
        candidates: list[Addr],
        start: float,
        now: float,
        attempt_time: float,
        *,
        life: float | None = None,
    ) -> None:
        """The introducer's ``punch_go`` for ``attempt``, arrived on ``sock``: probe from ``start`` on.
        ``life``: a go with a plan: ``PROBING`` until ``start + life``, sending nothing (the link's
        birthday attempt sends, or the relay carries the messages)."""
        if attempt < self.attempt or (attempt == self.attempt and self.phase is Phase.PROBING):
            return  # stale, or a duplicate
        if life is not None:
            if self.up:
                return  # the path works: keep it
            if sock != self.sock:
                self._use_socket(sock)
            self.attempt, self.candidates, self.quiet = attempt, [], True
            self._step(Step.GO)
            self.attempt_ends = start + life
            return
        self.quiet = False
        if self.up and sock == self.sock and now - self.last_heard < self.dead_after:
            # The path works (the peer's probe beat the introducer's go here): answer toward the
            # candidates too, so that the peer hears us on whichever address it listens, and keep the path.
            self.attempt, self.candidates = attempt, candidates
            self._probe(now)
            return
        if sock != self.sock:
            self._use_socket(sock)
        self.attempt = attempt
        self._step(Step.GO)
        self.attempt_ends = max(self.attempt_ends, start + attempt_time)
        self.candidates = candidates
        self._probe(start, first=True)

    def invited(self, attempt: int, now: float, attempt_time: float) -> None:
        """The peer started ``attempt`` from a fresh socket and wants us to join it."""
        if attempt > self.attempt:
            self.start(now, attempt_time, fresh=True, attempt=attempt)
        elif attempt == self.attempt and self.phase is Phase.ASKING:
            self._ask(now)  # our request may have been lost

    def heard(self, sock: int, addr: Addr, now: float) -> bool:
        """A datagram from the peer arrived directly on ``sock`` from ``addr``: that is a working path.
        True if the path just came up."""
        self.last_heard = now
        if self.up and sock == self.sock and addr == self.addr:
            return False
        if sock != self.sock:
            self._use_socket(sock)
        self.addr = addr
        if self.up:
            return False
        self._step(Step.HEARD)
        return True

    def give_up(self) -> None:
        """What waited for a path failed: stop trying (an up path stays up)."""
        if not self.up:
            self._step(Step.GIVE_UP)

    def dead_at(self, oldest_unacked: float | None) -> float | None:
        """When an up path with a message in flight since ``oldest_unacked`` counts as dead."""
        if oldest_unacked is None:
            return None
        return max(oldest_unacked, self.last_heard) + self.dead_after

    def handle_timer(self, now: float, oldest_unacked: float | None) -> Step | None:
        """Retransmit as due; :attr:`Step.ENDED` if the attempt ended without a path, :attr:`Step.DEAD` if
        the up path stopped answering (both leave the path ``IDLE``)."""
        if self.phase in _TRYING:
            if now >= self.attempt_ends:
                self._step(Step.ENDED)
                return Step.ENDED
            if now >= self.next_action and not (self.quiet and self.phase is Phase.PROBING):
                if self.phase is Phase.ASKING:
                    self._ask(now)
                else:
                    self._probe(now)
        elif self.up and (dead_at := self.dead_at(oldest_unacked)) is not None and now >= dead_at:
            self._step(Step.DEAD)
            return Step.DEAD
        return None

    def timers(self, oldest_unacked: float | None) -> list[float]:
        if self.phase in _TRYING:
            if self.quiet and self.phase is Phase.PROBING:
                return [self.attempt_ends]
            return [min(self.next_action, self.attempt_ends)]
        if self.up and (dead_at := self.dead_at(oldest_unacked)) is not None:
            return [dead_at]
        return []

    def close(self) -> None:
        """The session ends, or the peer left: its fresh socket goes."""
        self._pool.release(self.sock)

    # --- its own doing ------------------------------------------------------------------------------

    def _use_socket(self, sock: int | None) -> None:
        """Move to ``sock`` (None: a fresh one), closing the fresh socket left behind."""
        new = self._pool.open_for(self.peer) if sock is None else sock
        if self.sock != new:
            self._pool.release(self.sock)
        self.sock = new

    def _ask(self, now: float) -> None:
        self.next_action = now + ASK_RETRY
        self._port.ask(self.sock, self.attempt)

    def _probe(self, at: float, *, first: bool = False) -> None:
        self.next_action = at + self.probe_interval
        self._port.probe(self.sock, self.attempt, self.candidates, at, first)


def candidates(peer_pub: Addr, peer_priv: Addr, my_pub: Addr | None) -> list[Addr]:
    """Where to probe a peer. Behind the same NAT (the same public host): its private address, then its
    public one (hairpinning); the first that answers wins. Behind different NATs only the public one: a
    private address is not reachable from another LAN, and probing it too doubled the median time to a
    path at 0 ms in Mininet (1.0 s against 0.4 s, 20 pairs each)."""
    same_nat = my_pub is not None and peer_pub.host == my_pub.host
    return list(dict.fromkeys([peer_priv, peer_pub] if same_nat else [peer_pub]))
