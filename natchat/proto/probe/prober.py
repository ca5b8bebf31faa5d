"""The client of the mapping probes: :class:`MappingProber`, a state machine fed datagrams and ``now``.

Owns: the run's phases (``new``, ``hello``, ``run``, ``done``), the control socket's exchanges (hello,
heartbeat, bye), the routing of every timer and datagram to one unit, and the answer. Its units:
:class:`~.lifetimes.LifetimeTests` (one fresh socket, hence one fresh NAT mapping, per tested idle time
and kind), :class:`Classification` (the mapping and filtering questions, on sockets 1 and 2) and
:class:`Heartbeat` (the pings that prove the server alive, so that a missing datagram can mean an
expired mapping); they share the deadlines and the outbox of ``plumbing.py``.

May not touch: sockets, clocks or randomness (it has none); the meaning of the outcomes
(``analysis.py`` brackets and classifies); any sentence (``report.py`` words the answer and the
failures). ``docs/PROBE.md`` says why the run is built this way.
"""

from __future__ import annotations

import math
from typing import Final, Literal

from ..actions import Action
from ..codec import WireError
from ..wire import Addr
from . import report as prose
from .analysis import classify_filtering, classify_mapping
from .config import ProbeConfig
from .lifetimes import PACE_INTERVAL, LifetimeTests
from .plumbing import CONTROL, FILTER, MAP, Outbox, Timers
from .report import Kind, Progress, Report
from .wire import (
    Bye,
    Due,
    Echo,
    FilterQuery,
    FromAlt,
    Held,
    Hello,
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
    sends goes in the outbox. Begins once the server has welcomed the run (:meth:`begin`)."""

    def __init__(self, config: ProbeConfig, server: Addr, timers: Timers, out: Outbox) -> None:
        self.config = config
        self.server = server
        self._timers = timers
        self._out = out
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

    def on_map_timer(self, now: float) -> None:
        if self._map_sent >= self.config.tries:
            self.map_done = True
            return
        self._map_sent += 1
        data = encode_padded(MapQuery(sid=self._sid, n=self._map_sent))
        ports: tuple[tuple[Via, int], ...] = (("main", self.server.port), ("alt", self._alt_port))
        for via, port in ports:
            if via not in self.seen:
                self._out.send(MAP, data, Addr(self.server.host, port))
        self._timers.schedule(_MAP, now + self._retry)

    def mapped(self, via: Via, pub: Addr) -> None:
        if self.map_done:
            return
        self.seen[via] = pub
        if len(self.seen) == 2:
            self.map_done = True
            self._timers.cancel(_MAP)

    def on_filter_timer(self, now: float) -> None:
        if self._filter_n in self._filter_answered:
            # The main port's answer came and the alt port's did not, within the grace time.
            self._filter_rounds += 1
            if self._filter_rounds >= self.config.filter_tries:
                self.got_in = False
                self.filter_done = True
                return
        elif self._filter_n >= self.config.tries + self.config.filter_tries:
            self.filter_done = True  # the main port does not answer this socket: unknown
            return
        self._filter_n += 1
        self._out.send(FILTER, encode_padded(FilterQuery(sid=self._sid, n=self._filter_n)))
        self._timers.schedule(_FILTER, now + self._retry)

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

    CONTROL: Final = CONTROL
    MAP: Final = MAP
    FILTER: Final = FILTER

    def __init__(self, server: Addr, config: ProbeConfig | None = None) -> None:
        self.server = server
        self.config = config or ProbeConfig()
        self.grid = self.config.grid()
        self.phase: Literal["new", "hello", "run", "done"] = "new"
        self.error: str | None = None
        self.rtt = 0.0
        self._out = Outbox(server)
        self._timers = Timers()
        self._started = self._done_at = 0.0
        self._local: dict[int, Addr] = {}
        self._hello_sent: dict[int, float] = {}
        self._sid = ""
        self._alt_port = 0
        self._public: Addr | None = None
        self._heartbeat = Heartbeat()
        self._classes = Classification(self.config, server, self._timers, self._out)
        self._lifetimes = LifetimeTests(self.config, self.grid, self._timers, self._out, self._heartbeat)

    # --- what the shell reads -------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.phase == "done"

    def actions(self) -> list[Action]:
        return self._out.take()

    def get_timer(self) -> float | None:
        when = self._timers.next()
        return when if not self.finished else None

    def sockets_needed(self) -> int:
        """How many sockets a run opens at most (the shell may have to raise its file limit)."""
        return 3 + len(self.grid) * len(self.config.kinds)

    def progress(self, now: float) -> Progress:
        setup = self.config.stream_gap if Kind.STREAM in self.config.kinds else 0.0
        horizon = self.config.max_idle + setup + self.config.grace + (1 + self.config.confirm) * self.config.resolution
        elapsed = (self._done_at if self.finished else now) - self._started
        return Progress(elapsed=elapsed, horizon=horizon, kinds=self._lifetimes.progress())

    def report(self) -> Report:
        if self.phase != "done" or self.error is not None or self._public is None:
            raise ProbeFailed(self.error or "the measurement has not finished")
        main, alt = self._classes.seen.get("main"), self._classes.seen.get("alt")
        return Report(
            server=self.server,
            alt_port=self._alt_port,
            rtt=self.rtt,
            local=self._local.get(self.CONTROL),
            public=self._public,
            mapping=classify_mapping(main, alt),
            mapping_seen=(main, alt),
            filtering=classify_filtering(self._classes.got_in),
            lifetimes=tuple(self._lifetimes.results()),
            max_idle=self.config.max_idle,
            resolution=self.config.resolution,
            tests_per_kind=len(self.grid),
            elapsed=self._done_at - self._started,
        )

    # --- what the shell feeds -------------------------------------------------------------------------

    def start(self, now: float) -> None:
        self._started = now
        self.phase = "hello"
        self._out.open(self.CONTROL)

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
        else:
            self._lifetimes.socket_opened(sock, now)

    def handle_timer(self, now: float) -> None:
        while not self.finished and (key := self._timers.pop_due(now)) is not None:
            if key == _HELLO:
                self._on_hello_timer(now)
            elif key == _PACE:
                if self._lifetimes.on_pace(now):
                    self._timers.schedule(_PACE, now + PACE_INTERVAL)
            elif key == _MAP:
                self._classes.on_map_timer(now)
            elif key == _FILTER:
                self._classes.on_filter_timer(now)
            elif key == _PING:
                self._on_ping_timer(now)
            elif self._lifetimes.on_timer(key, now):
                self._timers.schedule(_PING, now)
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
                self._lifetimes.held(idx, n)
            case Echo(idx=idx, n=n) if from_main and self._lifetimes.has_socket(sock):
                self._lifetimes.echo(sock, idx, n, now)
            case Due(idx=idx) if from_main and self._lifetimes.has_socket(sock):
                self._lifetimes.due(sock, idx, now)
            case Pong(n=n) if sock == self.CONTROL and from_main and self._heartbeat.expects(n):
                self._heartbeat.pong(n, now)
                self._lifetimes.evaluate_all(now)
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
        self._out.send(self.CONTROL, encode_padded(Hello(n=n)))
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
        self._out.open(self.MAP)
        self._out.open(self.FILTER)
        self._lifetimes.begin(msg.sid, self.rtt, self._started)
        self._timers.schedule(_PACE, now)
        self._heartbeat.last_pong = now
        self._timers.schedule(_PING, now + self.config.ping_every)

    def _on_ping_timer(self, now: float) -> None:
        if now - self._heartbeat.last_pong > self.config.answer_within:
            self._fail(prose.stopped_answering(self.config.answer_within), now)
            return
        n = self._heartbeat.ping(now)
        self._out.send(self.CONTROL, encode(Ping(sid=self._sid, n=n)))
        self._timers.schedule(_PING, now + self.config.ping_every)

    def _check_done(self, now: float) -> None:
        if self.phase != "run":
            return
        if self._classes.done and self._lifetimes.answered():
            if self._lifetimes.all_lost():
                self._fail(prose.only_control_answered(len(self._lifetimes)), now)
                return
            self._out.send(self.CONTROL, encode(Bye(sid=self._sid)))
            self._finish(now)

    def _fail(self, reason: str, now: float) -> None:
        self.error = reason
        if self._sid:
            self._out.send(self.CONTROL, encode(Bye(sid=self._sid)))
        self._finish(now)

    def _finish(self, now: float) -> None:
        self.phase = "done"
        self._done_at = now
        self._timers.clear()
        self._out.close_all()
        self._lifetimes.stop()
