"""The lifetime tests of a probe run: :class:`LifetimeTests`, a unit of the prober.

Owns: one test per kind of mapping and tested idle time, each on a fresh socket (3, 4, ...), hence a
fresh NAT mapping; their pacing (all started within about a second), their setup exchanges with the
server (``probe_hold``, answered by ``probe_held`` or ``probe_echo``; twice, 3 s apart, for ``stream``),
their deadlines, and each kind's answer (:class:`~.report.Lifetime`) once
:func:`~.analysis.bracket` can give it. Its timer keys are the test indexes (>= 0).

May not touch: the control socket's exchanges (the prober's; it only sends ``probe_cancel`` there),
the heartbeat (it reads :attr:`~.prober.Heartbeat.alive_until` and asks for a ping by return value),
the classification sockets, the clock.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal

from .analysis import Seen, bracket, longest_survived
from .config import ProbeConfig
from .plumbing import CONTROL, Outbox, Timers
from .report import Kind, Lifetime
from .wire import Cancel, Hold, encode, encode_padded

if TYPE_CHECKING:
    from .prober import Heartbeat

PACE_INTERVAL: Final = 0.01
"""Seconds between pacing ticks (each starts up to ``ProbeConfig.pace`` tests)."""
FIRST_SOCKET: Final = 3
"""Sockets 0 to 2 are the prober's own; tests get 3, 4, ..."""

TestState = Literal["queued", "setup", "gap", "armed", "survived", "expired", "lost", "cancelled"]


@dataclass(slots=True)
class _Test:
    idx: int
    kind: Kind
    idle: float
    sock: int = -1
    state: TestState = "queued"
    stage: int = 1
    """``stream`` tests: 1 during the first exchange, 2 during the second."""
    n: int = 0
    """Transmissions so far (of both exchanges, for ``stream``)."""
    base: int = 0
    """``n`` when the current exchange began."""
    sent: dict[int, float] = field(default_factory=dict)
    deadline: float = math.inf

    def seen(self, alive_until: float) -> Seen:
        """What this test has shown, given that the server was heard alive until ``alive_until``."""
        if self.state == "survived":
            return "survived"
        if self.state == "lost":
            return "lost"
        if self.state == "expired" and self.deadline <= alive_until:
            return "expired"
        return "pending"


@dataclass(slots=True)
class _KindState:
    tests: list[_Test]
    result: Lifetime | None = None


class LifetimeTests:
    """Begins once the server has welcomed the run (:meth:`begin`); the prober routes each test's
    timer and datagrams here and reads the answers (:meth:`results`)."""

    def __init__(self, config: ProbeConfig, grid: list[float], timers: Timers, out: Outbox, heartbeat: Heartbeat):
        self.config = config
        self.grid = grid
        self._timers = timers
        self._out = out
        self._heartbeat = heartbeat
        self._sid = ""
        self._rtt = self._started = 0.0
        self._tests: dict[int, _Test] = {}
        self._by_sock: dict[int, _Test] = {}
        self._kinds: dict[Kind, _KindState] = {}
        self._queue: deque[_Test] = deque()
        self._next_sock = FIRST_SOCKET

    # --- what the prober reads ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._tests)

    def answered(self) -> bool:
        return all(s.result is not None for s in self._kinds.values())

    def all_lost(self) -> bool:
        return all(test.state == "lost" for test in self._tests.values())

    def results(self) -> list[Lifetime]:
        out = []
        for state in self._kinds.values():
            assert state.result is not None
            out.append(state.result)
        return out

    def progress(self) -> tuple[tuple[Kind, float | None, bool], ...]:
        """(kind, longest idle time survived so far, answered) for each kind begun."""
        return tuple(
            (kind, longest_survived(self._seen(state.tests)), state.result is not None)
            for kind, state in self._kinds.items()
        )

    def has_socket(self, sock: int) -> bool:
        return sock in self._by_sock

    # --- what the prober feeds ------------------------------------------------------------------------

    def begin(self, sid: str, rtt: float, started: float) -> None:
        self._sid, self._rtt, self._started = sid, rtt, started
        for k, kind in enumerate(self.config.kinds):
            tests = [_Test(idx=k * len(self.grid) + j, kind=kind, idle=idle) for j, idle in enumerate(self.grid)]
            self._kinds[kind] = _KindState(tests)
            self._tests.update((t.idx, t) for t in tests)
        # Shortest idle times first, the kinds interleaved: every test starts within the first second.
        self._queue.extend(sorted(self._tests.values(), key=lambda t: (t.idle, t.idx)))

    def on_pace(self, now: float) -> bool:
        """Start the next tests; True while some are still queued (tick again in :data:`PACE_INTERVAL`)."""
        started = 0
        while self._queue and started < self.config.pace:
            test = self._queue.popleft()
            if test.state != "queued":
                continue
            test.sock, self._next_sock = self._next_sock, self._next_sock + 1
            test.state = "setup"
            self._by_sock[test.sock] = test
            self._out.open(test.sock)
            started += 1
        return bool(self._queue)

    def socket_opened(self, sock: int, now: float) -> None:
        if (test := self._by_sock.get(sock)) is not None and test.state == "setup":
            self._send_hold(test, now)

    def on_timer(self, idx: int, now: float) -> bool:
        """Test ``idx``'s timer fired; True: it may have expired, so ask the server if it is alive now."""
        test = self._tests[idx]
        match test.state:
            case "setup":
                if test.n - test.base >= self.config.tries:
                    test.state = "lost"
                    self._evaluate(test.kind, now)
                else:
                    self._send_hold(test, now)
            case "gap":  # numbering goes on, so a late answer of the first exchange cannot pass for the second's
                test.stage, test.state, test.base = 2, "setup", test.n
                self._send_hold(test, now)
            case "armed":
                test.state = "expired"  # final once the server proves it was alive after this (a pong)
                return True
            case _:
                pass
        return False

    def held(self, idx: int, n: int) -> None:
        """The server acknowledged transmission ``n`` of outbound test ``idx`` on the control socket."""
        test = self._tests.get(idx)
        if test is not None and test.state == "setup" and test.kind is Kind.OUTBOUND and n == test.n:
            # The idle time starts when the acknowledged hold passed the NAT (it was sent then).
            self._arm(test, test.sent[n] + max(test.idle, self._rtt))

    def echo(self, sock: int, idx: int, n: int, now: float) -> None:
        test = self._by_sock[sock]
        if test.idx == idx and test.state == "setup" and n == test.n:
            if test.kind is Kind.STREAM and test.stage == 1:
                test.state = "gap"
                self._timers.schedule(test.idx, now + self.config.stream_gap)
            else:  # the idle time starts when the echo passed the NAT, about now
                self._arm(test, now + test.idle)

    def due(self, sock: int, idx: int, now: float) -> None:
        """The server's delayed datagram for test ``idx`` got in: the mapping survived."""
        test = self._by_sock[sock]
        if test.idx == idx and test.state in ("armed", "expired") and self._kinds[test.kind].result is None:
            test.state = "survived"
            self._timers.cancel(test.idx)
            self._evaluate(test.kind, now)

    def evaluate_all(self, now: float) -> None:
        """The server proved alive until a later time: expiries before it are final."""
        for kind in self._kinds:
            self._evaluate(kind, now)

    def stop(self) -> None:
        self._by_sock.clear()

    # --- rules ----------------------------------------------------------------------------------------

    @property
    def _retry(self) -> float:
        return max(self.config.retry, 3 * self._rtt)

    @property
    def _grace(self) -> float:
        return max(self.config.grace, 3 * self._rtt)

    def _send_hold(self, test: _Test, now: float) -> None:
        test.n += 1
        test.sent[test.n] = now
        armed = test.kind is not Kind.STREAM or test.stage == 2
        # Outbound: the server's clock starts when the hold arrives, half a round trip after it passed
        # the NAT, and its datagram needs another half to get back: ask for the idle time minus the RTT.
        delay = (max(0.0, test.idle - self._rtt) if test.kind is Kind.OUTBOUND else test.idle) if armed else None
        hold = Hold(sid=self._sid, idx=test.idx, n=test.n, delay=delay, echo=test.kind is not Kind.OUTBOUND)
        self._out.send(test.sock, encode_padded(hold))
        self._timers.schedule(test.idx, now + self._retry)

    def _arm(self, test: _Test, expected: float) -> None:
        test.state = "armed"
        test.deadline = expected + self._grace
        self._timers.schedule(test.idx, test.deadline)

    def _seen(self, tests: list[_Test]) -> list[tuple[float, Seen]]:
        alive_until = self._heartbeat.alive_until
        return [(test.idle, test.seen(alive_until)) for test in tests]

    def _evaluate(self, kind: Kind, now: float) -> None:
        """Answer for ``kind`` once its bracket is known (:func:`~.analysis.bracket`), and stop its tests."""
        state = self._kinds[kind]
        if state.result is not None:
            return
        found = bracket(self._seen(state.tests), self.config.confirm)
        if found is None:
            return
        state.result = Lifetime(kind, found.survived, found.expired, found.results, now - self._started)
        for test in state.tests:  # the remaining tests cannot change the answer: stop them
            if test.state in ("queued", "setup", "gap", "armed"):
                test.state = "cancelled"
                self._timers.cancel(test.idx)
            if test.sock >= 0:
                self._by_sock.pop(test.sock, None)
                self._out.close(test.sock)
        first, last = state.tests[0].idx, state.tests[-1].idx
        self._out.send(CONTROL, encode(Cancel(sid=self._sid, lo=first, hi=last)))
