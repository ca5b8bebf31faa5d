"""The server side of the mapping probes: :class:`ProbeResponder`, fed datagrams and ``now``.

Owns: probe sessions (one per prober's control socket), the mappings each test asked to be held, and
the schedule of the delayed datagrams (:class:`~.wire.Due`), sent from the port the mapping was
created toward, :data:`~.wire.DUE_COPIES` times. Also the limits: sessions, tests, delays, and never
more bytes to an unverified address than its request carried.

May not touch: sockets, clocks or the chat registry (``natchat serve`` routes what
:func:`~.wire.is_probe_message` accepts here and sends what :meth:`ProbeResponder.datagrams_to_send`
returns); it never decides anything about a NAT, which is the prober's job.
"""

from __future__ import annotations

import heapq
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from ..codec import WireError
from ..wire import Addr
from .wire import (
    DUE_COPIES,
    WITHOUT_SESSION,
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
)

SESSION_IDLE: Final = 30.0
"""A session is forgotten this long after its last control message, once it has nothing scheduled."""


@dataclass(slots=True)
class _Held:
    addr: Addr
    n: int
    due: float | None


@dataclass(slots=True)
class _Session:
    ctl: Addr
    expires: float
    tests: dict[int, _Held] = field(default_factory=dict)


class ProbeResponder:
    """The server side of the probes. Feed it what arrives on the main port (only what
    :func:`is_probe_message` accepts) and on the alt port; send what :meth:`datagrams_to_send` returns
    from the socket it names; call :meth:`handle_timer` at :meth:`get_timer`.

    Bounded: at most ``max_sessions`` sessions of ``max_tests`` tests, delays up to ``max_delay``; a
    session ends with :class:`Bye` or :data:`SESSION_IDLE` after its last activity. It only ever sends
    to the source of a datagram it received, never more bytes than that datagram had (except the
    acknowledgements to a session's own control socket, one per request).
    """

    def __init__(
        self,
        *,
        alt_port: int,
        max_sessions: int = 64,
        max_tests: int = 4096,
        max_delay: float = 3600.0,
        sid_factory: Callable[[], str] = lambda: secrets.token_hex(16),
    ) -> None:
        self.alt_port = alt_port
        self.max_sessions = max_sessions
        self.max_tests = max_tests
        self.max_delay = max_delay
        self._new_sid = sid_factory
        self._sessions: dict[str, _Session] = {}
        self._by_ctl: dict[Addr, str] = {}
        self._dues: list[tuple[float, str, int, int]] = []  # (when, sid, idx, n); stale entries skipped
        self._out: list[tuple[bytes, Addr, Via]] = []
        self.dropped = 0
        """Datagrams ignored: malformed, for no session, over a limit, or too small to answer."""

    def datagrams_to_send(self) -> list[tuple[bytes, Addr, Via]]:
        out, self._out = self._out, []
        return out

    def sessions(self) -> int:
        return len(self._sessions)

    def get_timer(self) -> float | None:
        timers = [self._dues[0][0]] if self._dues else []
        timers.extend(s.expires for s in self._sessions.values())
        return min(timers) if timers else None

    def handle_timer(self, now: float) -> None:
        while self._dues and self._dues[0][0] <= now:
            when, sid, idx, n = heapq.heappop(self._dues)
            session = self._sessions.get(sid)
            held = session.tests.get(idx) if session else None
            if held is None or held.n != n or held.due != when:
                continue  # cancelled or re-armed since
            data = encode(Due(sid=sid, idx=idx))
            self._out.extend([(data, held.addr, "main")] * DUE_COPIES)
            held.due = None
        for sid in [sid for sid, s in self._sessions.items() if s.expires <= now]:
            self._end(sid)

    def receive_datagram(self, data: bytes, addr: Addr, via: Via, now: float) -> None:
        try:
            msg = decode(data)
        except WireError:
            self.dropped += 1
            return
        session = self._sessions.get(msg.sid) if not isinstance(msg, WITHOUT_SESSION) else None
        match msg:
            case Hello() if via == "main":
                self._on_hello(msg, data, addr, now)
            case MapQuery() if session is not None:
                self._answer(data, [(encode(Mapped(sid=msg.sid, n=msg.n, pub=addr)), addr, via)])
            case FilterQuery() if session is not None and via == "main":
                mapped = encode(Mapped(sid=msg.sid, n=msg.n, pub=addr))
                self._answer(data, [(mapped, addr, "main"), (encode(FromAlt(sid=msg.sid, n=msg.n)), addr, "alt")])
            case Hold() if session is not None and via == "main":
                self._on_hold(msg, session, data, addr, now)
            case Cancel() if session is not None:
                for idx in [idx for idx in session.tests if msg.lo <= idx <= msg.hi]:
                    del session.tests[idx]
                session.expires = max(session.expires, now + SESSION_IDLE)
            case Ping() if session is not None and addr == session.ctl and via == "main":
                session.expires = max(session.expires, now + SESSION_IDLE)
                self._out.append((encode(Pong(sid=msg.sid, n=msg.n)), addr, "main"))
            case Bye() if session is not None:
                self._end(msg.sid)
            case _:
                self.dropped += 1

    def _on_hello(self, msg: Hello, data: bytes, addr: Addr, now: float) -> None:
        sid = self._by_ctl.get(addr)  # a retransmitted hello gets the same session
        if sid is None:
            if len(self._sessions) >= self.max_sessions:
                refusal = Refusal(code="busy", msg=f"{self.max_sessions} probe sessions running; try again later")
                self._answer(data, [(encode(refusal), addr, "main")])
                return
            sid = self._new_sid()
            self._sessions[sid] = _Session(ctl=addr, expires=now + SESSION_IDLE)
            self._by_ctl[addr] = sid
        session = self._sessions[sid]
        session.expires = max(session.expires, now + SESSION_IDLE)
        welcome = Welcome(
            sid=sid, n=msg.n, pub=addr, alt_port=self.alt_port, max_tests=self.max_tests, max_delay=self.max_delay
        )
        self._answer(data, [(encode(welcome), addr, "main")])

    def _on_hold(self, msg: Hold, session: _Session, data: bytes, addr: Addr, now: float) -> None:
        if msg.idx not in session.tests and len(session.tests) >= self.max_tests:
            self.dropped += 1
            return
        if msg.delay is not None and msg.delay > self.max_delay:
            self.dropped += 1
            return
        # Bytes this request makes the server send to its (unverified) source: the echo and the dues.
        due_size = len(encode(Due(sid=msg.sid, idx=msg.idx))) * DUE_COPIES if msg.delay is not None else 0
        echo = encode(Echo(sid=msg.sid, idx=msg.idx, n=msg.n))
        if due_size + (len(echo) if msg.echo else 0) > len(data):
            self.dropped += 1
            return
        due = None if msg.delay is None else now + msg.delay
        session.tests[msg.idx] = _Held(addr, msg.n, due)
        if due is not None:
            heapq.heappush(self._dues, (due, msg.sid, msg.idx, msg.n))
            session.expires = max(session.expires, due + SESSION_IDLE)
            if len(self._dues) > 2 * self.max_tests * max(1, len(self._sessions)):
                self._compact()
        session.expires = max(session.expires, now + SESSION_IDLE)
        if msg.echo:
            self._out.append((echo, addr, "main"))
        else:  # the measured mapping stays idle: acknowledge on the control socket
            self._out.append((encode(Held(sid=msg.sid, idx=msg.idx, n=msg.n, pub=addr)), session.ctl, "main"))

    def _compact(self) -> None:
        """Drop the heap's stale entries (re-armed or cancelled tests), so retransmissions cannot grow it."""
        self._dues = [
            (held.due, sid, idx, held.n)
            for sid, session in self._sessions.items()
            for idx, held in session.tests.items()
            if held.due is not None
        ]
        heapq.heapify(self._dues)

    def _answer(self, request: bytes, replies: list[tuple[bytes, Addr, Via]]) -> None:
        """Send ``replies`` to the request's source only if they are no larger than the request."""
        if sum(len(data) for data, _, _ in replies) > len(request):
            self.dropped += 1
            return
        self._out.extend(replies)

    def _end(self, sid: str) -> None:
        session = self._sessions.pop(sid)
        if self._by_ctl.get(session.ctl) == sid:
            del self._by_ctl[session.ctl]
