"""The client of the mapping probes: :class:`MappingProber`, a state machine fed datagrams and ``now``.

Owns: the run's phases (``new``, ``hello``, ``run``, ``done``), its sockets (by number: the shell opens
and closes them as told), the lifetime tests (one fresh socket, hence one fresh NAT mapping, per tested
idle time and kind; all started at once, paced), and the timers of all of them. Two small units of its
own: :class:`Classification` (the mapping and filtering questions, on sockets 1 and 2) and
:class:`Heartbeat` (the pings that prove the server alive, so that a missing datagram can mean an
expired mapping); :class:`Timers` holds the deadlines by key.

May not touch: sockets, clocks or randomness (it has none); the meaning of the outcomes
(``analysis.py`` brackets and classifies); any sentence (``report.py`` words the answer and the
failures). ``docs/PROBE.md`` says why the run is built this way.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Final, Literal

from ..actions import Action, CloseSocket, OpenSocket, Send
from ..codec import WireError
from ..wire import Addr
from . import report as prose
from .analysis import Seen, bracket, classify_filtering, classify_mapping, longest_survived
from .config import ProbeConfig
from .report import Kind, Lifetime, Progress, Report
from .wire import (
    Bye,
    Cancel,
    Due,
    Echo,
    FilterQuery,
    FromAlt,
    Held,
    Hello,
    Hold,
    Mapped,
    MapQuery,
    Ping,
    Pong,
    Refusal,
    Via,
    Welcome,
    decode,
    encode,
    encode_padded,
)


class ProbeFailed(Exception):
    """The measurement could not be made; the text says why, for the user."""


# Timer keys besides test indexes (which are >= 0).
_HELLO, _PACE, _MAP, _FILTER, _PING = -1, -2, -3, -4, -5
PACE_INTERVAL: Final = 0.01

TestState = Literal["queued", "setup", "gap", "armed", "survived", "expired", "lost", "cancelled"]


class Timers:
    """One-shot deadlines by key: scheduling a key again replaces its deadline, cancelling forgets it.
    Due keys come out earliest first (equal deadlines: the smaller key first)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int]] = []
        self._gen: dict[int, int] = {}

    def schedule(self, key: int, when: float) -> None:
        gen = self._gen.get(key, 0) + 1
        self._gen[key] = gen
        heapq.heappush(self._heap, (when, key, gen))

    def cancel(self, key: int) -> None:
        self._gen[key] = self._gen.get(key, 0) + 1

    def next(self) -> float | None:
        while self._heap and self._gen.get(self._heap[0][1]) != self._heap[0][2]:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> int | None:
        """The next key whose deadline is ``now`` or earlier (it fires once), or None."""
        while self._heap and self._heap[0][0] <= now:
            _, key, gen = heapq.heappop(self._heap)
            if self._gen.get(key) != gen:
                continue  # cancelled or rescheduled since
            self._gen[key] = gen + 1
            return key
        return None

    def clear(self) -> None:
        self._heap.clear()


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


class Heartbeat:
    """Owns the control socket's pings and what their answers prove: the server was alive, and sending,
    until :attr:`alive_until` (the send time of the latest ping it answered)."""

    def __init__(self) -> None:
        self._sent: dict[int, float] = {}
        self._n = 0
        self.last_pong = 0.0
        self.alive_until = -math.inf

    def ping(self, now: float) -> int:
        """The number of a new ping sent ``now``."""
        self._n += 1
        self._sent[self._n] = now
        return self._n

    def expects(self, n: int) -> bool:
        return n in self._sent

    def pong(self, n: int, now: float) -> None:
        """Ping ``n`` (one :meth:`expects`) was answered ``now``."""
        self.alive_until = max(self.alive_until, self._sent[n])
        self.last_pong = now
        for older in [k for k in self._sent if k <= n]:
            del self._sent[older]


class Classification:
    """Owns the RFC 4787 questions: socket ``MAP`` asks both server ports which public address they see;
    socket ``FILTER`` asks the main port to answer from both. Schedules only its own timer keys; what it
    sends it returns. Begins once the server has welcomed the run (:meth:`begin`)."""

    def __init__(self, config: ProbeConfig, server: Addr, timers: Timers) -> None:
        self.config = config
        self.server = server
        self._timers = timers
        self._sid = ""
        self._alt_port = 0
        self._retry = self._grace = 0.0
        self._map_sent = 0
        self.seen: dict[Via, Addr] = {}
        """The public address each server port saw for socket ``MAP``."""
        self.map_done = False
        self._filter_n = 0
        self._filter_rounds = 0
        self._filter_answered: set[int] = set()
        self.got_in: bool | None = None
        """Whether the alt port's datagram reached socket ``FILTER`` (None: not known)."""
        self.filter_done = False

    def begin(self, sid: str, alt_port: int, retry: float, grace: float) -> None:
        self._sid, self._alt_port, self._retry, self._grace = sid, alt_port, retry, grace

    @property
    def done(self) -> bool:
        return self.map_done and self.filter_done

    def on_map_timer(self, now: float) -> list[Action]:
        if self._map_sent >= self.config.tries:
            self.map_done = True
            return []
        self._map_sent += 1
        data = encode_padded(MapQuery(sid=self._sid, n=self._map_sent))
        ports: tuple[tuple[Via, int], ...] = (("main", self.server.port), ("alt", self._alt_port))
        out: list[Action] = [
            Send(MappingProber.MAP, data, Addr(self.server.host, port)) for via, port in ports if via not in self.seen
        ]
        self._timers.schedule(_MAP, now + self._retry)
        return out

    def mapped(self, via: Via, pub: Addr) -> None:
        if self.map_done:
            return
        self.seen[via] = pub
        if len(self.seen) == 2:
            self.map_done = True
            self._timers.cancel(_MAP)

    def on_filter_timer(self, now: float) -> list[Action]:
        if self._filter_n in self._filter_answered:
            # The main port's answer came and the alt port's did not, within the grace time.
            self._filter_rounds += 1
            if self._filter_rounds >= self.config.filter_tries:
                self.got_in = False
                self.filter_done = True
                return []
        elif self._filter_n >= self.config.tries + self.config.filter_tries:
            self.filter_done = True  # the main port does not answer this socket: unknown
            return []
        self._filter_n += 1
        self._timers.schedule(_FILTER, now + self._retry)
        data = encode_padded(FilterQuery(sid=self._sid, n=self._filter_n))
        return [Send(MappingProber.FILTER, data, self.server)]

    def filter_mapped(self, n: int, now: float) -> None:
        if not self.filter_done and n == self._filter_n and n not in self._filter_answered:
            self._filter_answered.add(n)
            # Give the alt port's datagram (sent at the same time) a while to arrive too.
            self._timers.schedule(_FILTER, now + self._grace)

    def from_alt(self) -> None:
        if not self.filter_done:
            self.got_in = True
            self.filter_done = True
            self._timers.cancel(_FILTER)


class MappingProber:
    """The client of the probes. Call :meth:`start`, then feed it datagrams, socket openings and the time;
    carry out :meth:`actions`; sleep until :meth:`get_timer`. When :attr:`finished`, :meth:`report` is the
    answer (or :attr:`error` says why there is none).

    Sockets: 0 is the control socket, 1 asks both server ports for the mapping, 2 is the filtering
    test, and 3, 4, ... each carry one lifetime test.
    """

    CONTROL: Final = 0
    MAP: Final = 1
    FILTER: Final = 2

    def __init__(self, server: Addr, config: ProbeConfig | None = None) -> None:
        self.server = server
        self.config = config or ProbeConfig()
        self.grid = self.config.grid()
        self.phase: Literal["new", "hello", "run", "done"] = "new"
        self.error: str | None = None
        self.rtt = 0.0
        self._actions: list[Action] = []
        self._timers = Timers()
        self._started = self._done_at = 0.0
        self._local: dict[int, Addr] = {}
        self._open: set[int] = set()
        self._hello_sent: dict[int, float] = {}
        self._sid = ""
        self._alt_port = 0
        self._public: Addr | None = None
        self._heartbeat = Heartbeat()
        self._classes = Classification(self.config, server, self._timers)
        # lifetime tests
        self._tests: dict[int, _Test] = {}
        self._by_sock: dict[int, _Test] = {}
        self._kinds: dict[Kind, _KindState] = {}
        self._queue: deque[_Test] = deque()
        self._next_sock = 3

    # --- what the shell reads -------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.phase == "done"

    def actions(self) -> list[Action]:
        out, self._actions = self._actions, []
        return out

    def get_timer(self) -> float | None:
        when = self._timers.next()
        return when if not self.finished else None

    def sockets_needed(self) -> int:
        """How many sockets a run opens at most (the shell may have to raise its file limit)."""
        return 3 + len(self.grid) * len(self.config.kinds)

    def progress(self, now: float) -> Progress:
        setup = self.config.stream_gap if Kind.STREAM in self.config.kinds else 0.0
        horizon = self.config.max_idle + setup + self.config.grace + (1 + self.config.confirm) * self.config.resolution
        kinds = tuple(
            (kind, longest_survived(self._seen(state.tests)), state.result is not None)
            for kind, state in self._kinds.items()
        )
        return Progress(elapsed=(self._done_at if self.finished else now) - self._started, horizon=horizon, kinds=kinds)

    def report(self) -> Report:
        if self.phase != "done" or self.error is not None or self._public is None:
            raise ProbeFailed(self.error or "the measurement has not finished")
        main, alt = self._classes.seen.get("main"), self._classes.seen.get("alt")
        lifetimes = []
        for state in self._kinds.values():
            assert state.result is not None
            lifetimes.append(state.result)
        return Report(
            server=self.server,
            alt_port=self._alt_port,
            rtt=self.rtt,
            local=self._local.get(self.CONTROL),
            public=self._public,
            mapping=classify_mapping(main, alt),
            mapping_seen=(main, alt),
            filtering=classify_filtering(self._classes.got_in),
            lifetimes=tuple(lifetimes),
            max_idle=self.config.max_idle,
            resolution=self.config.resolution,
            tests_per_kind=len(self.grid),
            elapsed=self._done_at - self._started,
        )

    # --- what the shell feeds -------------------------------------------------------------------------

    def start(self, now: float) -> None:
        self._started = now
        self.phase = "hello"
        self._open_socket(self.CONTROL)

    def socket_opened(self, sock: int, local: Addr, now: float) -> None:
        """Socket ``sock`` is open at ``local`` (the address as routed toward the server, if known)."""
        self._local[sock] = local
        if self.finished:
            return
        if sock == self.CONTROL:
            self._timers.schedule(_HELLO, now)
        elif sock == self.MAP:
            self._timers.schedule(_MAP, now)
        elif sock == self.FILTER:
            self._timers.schedule(_FILTER, now)
        elif (test := self._by_sock.get(sock)) is not None and test.state == "setup":
            self._send_hold(test, now)

    def handle_timer(self, now: float) -> None:
        while not self.finished and (key := self._timers.pop_due(now)) is not None:
            if key == _HELLO:
                self._on_hello_timer(now)
            elif key == _PACE:
                self._on_pace(now)
            elif key == _MAP:
                self._actions.extend(self._classes.on_map_timer(now))
            elif key == _FILTER:
                self._actions.extend(self._classes.on_filter_timer(now))
            elif key == _PING:
                self._on_ping_timer(now)
            else:
                self._on_test_timer(self._tests[key], now)
        self._check_done(now)

    def receive_datagram(self, data: bytes, sock: int, addr: Addr, now: float) -> None:
        if self.finished or addr.host != self.server.host:
            return
        try:
            msg = decode(data)
        except WireError:
            return
        from_main = addr.port == self.server.port
        from_alt = self.phase == "run" and addr.port == self._alt_port
        match msg:
            case Welcome() if sock == self.CONTROL and from_main and self.phase == "hello":
                self._on_welcome(msg, now)
            case Refusal() if sock == self.CONTROL and from_main:
                self._fail(prose.refused(msg.msg), now)
            case _ if self.phase != "run" or getattr(msg, "sid", None) != self._sid:
                return
            case Held(idx=idx, n=n) if sock == self.CONTROL and from_main:
                test = self._tests.get(idx)
                if test is not None and test.state == "setup" and test.kind is Kind.OUTBOUND and n == test.n:
                    # The idle time starts when the acknowledged hold passed the NAT (it was sent then).
                    self._arm(test, test.sent[n] + max(test.idle, self.rtt))
            case Echo(idx=idx, n=n) if from_main and (test := self._by_sock.get(sock)) is not None:
                if test.idx == idx and test.state == "setup" and n == test.n:
                    if test.kind is Kind.STREAM and test.stage == 1:
                        test.state = "gap"
                        self._timers.schedule(test.idx, now + self.config.stream_gap)
                    else:  # the idle time starts when the echo passed the NAT, about now
                        self._arm(test, now + test.idle)
            case Due(idx=idx) if from_main and (test := self._by_sock.get(sock)) is not None:
                if test.idx == idx and test.state in ("armed", "expired") and self._kinds[test.kind].result is None:
                    test.state = "survived"
                    self._timers.cancel(test.idx)
                    self._evaluate(test.kind, now)
            case Pong(n=n) if sock == self.CONTROL and from_main and self._heartbeat.expects(n):
                self._heartbeat.pong(n, now)
                for kind in self._kinds:
                    self._evaluate(kind, now)
            case Mapped(pub=pub) if sock == self.MAP and (from_main or from_alt):
                self._classes.mapped("main" if from_main else "alt", pub)
            case Mapped(n=n) if sock == self.FILTER and from_main:
                self._classes.filter_mapped(n, now)
            case FromAlt() if sock == self.FILTER and from_alt:
                self._classes.from_alt()
            case _:
                pass
        self._check_done(now)

    # --- rules ----------------------------------------------------------------------------------------

    @property
    def _retry(self) -> float:
        return max(self.config.retry, 3 * self.rtt)

    @property
    def _grace(self) -> float:
        return max(self.config.grace, 3 * self.rtt)

    def _on_hello_timer(self, now: float) -> None:
        deadline = self._started + self.config.answer_within
        if now >= deadline:
            self._fail(prose.no_answer(self.server, self.config.answer_within), now)
            return
        n = len(self._hello_sent) + 1
        self._hello_sent[n] = now
        self._send(self.CONTROL, encode_padded(Hello(n=n)))
        self._timers.schedule(_HELLO, min(now + self._retry, deadline))

    def _on_welcome(self, msg: Welcome, now: float) -> None:
        sent = self._hello_sent.get(msg.n)
        if sent is None:
            return
        self.rtt = now - sent
        needed = len(self.grid) * len(self.config.kinds)
        if needed > msg.max_tests or self.config.max_idle > msg.max_delay:
            self._fail(prose.too_large(msg.max_tests, msg.max_delay, needed, self.config.max_idle), now)
            return
        self.phase = "run"
        self._timers.cancel(_HELLO)
        self._sid, self._alt_port, self._public = msg.sid, msg.alt_port, msg.pub
        self._classes.begin(msg.sid, msg.alt_port, self._retry, self._grace)
        self._open_socket(self.MAP)
        self._open_socket(self.FILTER)
        for k, kind in enumerate(self.config.kinds):
            tests = [_Test(idx=k * len(self.grid) + j, kind=kind, idle=idle) for j, idle in enumerate(self.grid)]
            self._kinds[kind] = _KindState(tests)
            self._tests.update((t.idx, t) for t in tests)
        # Shortest idle times first, the kinds interleaved: every test starts within the first second.
        self._queue.extend(sorted(self._tests.values(), key=lambda t: (t.idle, t.idx)))
        self._timers.schedule(_PACE, now)
        self._heartbeat.last_pong = now
        self._timers.schedule(_PING, now + self.config.ping_every)

    def _on_pace(self, now: float) -> None:
        started = 0
        while self._queue and started < self.config.pace:
            test = self._queue.popleft()
            if test.state != "queued":
                continue
            test.sock, self._next_sock = self._next_sock, self._next_sock + 1
            test.state = "setup"
            self._by_sock[test.sock] = test
            self._open_socket(test.sock)
            started += 1
        if self._queue:
            self._timers.schedule(_PACE, now + PACE_INTERVAL)

    def _send_hold(self, test: _Test, now: float) -> None:
        test.n += 1
        test.sent[test.n] = now
        armed = test.kind is not Kind.STREAM or test.stage == 2
        # Outbound: the server's clock starts when the hold arrives, half a round trip after it passed
        # the NAT, and its datagram needs another half to get back: ask for the idle time minus the RTT.
        delay = (max(0.0, test.idle - self.rtt) if test.kind is Kind.OUTBOUND else test.idle) if armed else None
        hold = Hold(sid=self._sid, idx=test.idx, n=test.n, delay=delay, echo=test.kind is not Kind.OUTBOUND)
        self._send(test.sock, encode_padded(hold))
        self._timers.schedule(test.idx, now + self._retry)

    def _arm(self, test: _Test, expected: float) -> None:
        test.state = "armed"
        test.deadline = expected + self._grace
        self._timers.schedule(test.idx, test.deadline)

    def _on_test_timer(self, test: _Test, now: float) -> None:
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
                self._timers.schedule(_PING, now)
            case _:
                pass

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
                self._close(test.sock)
        first, last = state.tests[0].idx, state.tests[-1].idx
        self._send(self.CONTROL, encode(Cancel(sid=self._sid, lo=first, hi=last)))

    def _on_ping_timer(self, now: float) -> None:
        if now - self._heartbeat.last_pong > self.config.answer_within:
            self._fail(prose.stopped_answering(self.config.answer_within), now)
            return
        n = self._heartbeat.ping(now)
        self._send(self.CONTROL, encode(Ping(sid=self._sid, n=n)))
        self._timers.schedule(_PING, now + self.config.ping_every)

    def _check_done(self, now: float) -> None:
        if self.phase != "run":
            return
        if self._classes.done and all(s.result is not None for s in self._kinds.values()):
            if all(test.state == "lost" for test in self._tests.values()):
                self._fail(prose.only_control_answered(len(self._tests)), now)
                return
            self._send(self.CONTROL, encode(Bye(sid=self._sid)))
            self._finish(now)

    def _fail(self, reason: str, now: float) -> None:
        self.error = reason
        if self._sid:
            self._send(self.CONTROL, encode(Bye(sid=self._sid)))
        self._finish(now)

    def _finish(self, now: float) -> None:
        self.phase = "done"
        self._done_at = now
        self._timers.clear()
        for sock in sorted(self._open):
            self._close(sock)
        self._by_sock.clear()

    def _send(self, sock: int, data: bytes) -> None:
        self._actions.append(Send(sock, data, self.server))

    def _open_socket(self, sock: int) -> None:
        self._open.add(sock)
        self._actions.append(OpenSocket(sock))

    def _close(self, sock: int) -> None:
        if sock in self._open:
            self._open.remove(sock)
            self._actions.append(CloseSocket(sock))
