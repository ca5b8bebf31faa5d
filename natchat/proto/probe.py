"""Mapping probes without I/O: how long a NAT keeps an idle UDP mapping, and what kind of NAT it is.

Two objects, fed datagrams and ``now`` like the rest of ``natchat.proto``:

* :class:`ProbeResponder` is the server side (``natchat serve`` runs one in its nursery). It sends a
  datagram to a mapping a requested time after the mapping last carried traffic, from the address and
  port the mapping was created toward, and answers the classification questions from the server's
  main port and from its second ("alt") port.
* :class:`MappingProber` is the client (``natchat probe-mapping``). It decides which idle times to
  test, opens one fresh socket -- hence one fresh NAT mapping -- per tested idle time, starts them all
  at once, and turns what arrives (or does not arrive by a deadline) into a lifetime bracket per kind
  of mapping plus the RFC 4787 classification. :class:`Report` is the result.

Why it is built this way (``docs/PROBE.md`` has the long version):

* **A measured mapping stays idle.** Control traffic (hello, acknowledgements, heartbeat) uses a
  separate control socket. A test's socket sends its request, and from then on nothing but the server's one delayed
  datagram touches that mapping: any packet would refresh the NAT's timer.
* **Same address and port.** The delayed datagram comes from the port the mapping was created toward
  (the server's main port). From any other port it would measure the NAT's filtering, not the
  mapping's lifetime.
* **One fresh mapping per idle time.** A datagram that gets through refreshes the mapping, so a
  mapping answers exactly one question: "still there after d seconds idle?".
* **All idle times at once.** Tests for d = r, 2r, ... max start together, so the first expired test
  ends the measurement at about lifetime + resolution, not after the sum of all waits.
* **Kinds.** Linux conntrack keeps an entry that has only seen outbound traffic for
  ``nf_conntrack_udp_timeout`` (30 s); after a reply it still uses that value (the reply refreshes the
  entry *before* it is marked as replied) until a packet arrives when the entry has seen a reply and
  is older than 2 s: from then on ``nf_conntrack_udp_timeout_stream`` (120 s) applies. So the prober
  measures three kinds: ``outbound`` (one datagram out, no answer), ``reply`` (one request and its
  answer), ``stream`` (request/answer, and again 3 s later). Other NATs may treat the first two
  differently; Linux does not.
* **Classification with one server address.** Mapping: the same socket asks the main and the alt port
  which public address they see (same port: endpoint-independent, or address-dependent, which needs a
  second server *address* to tell apart; different: address-and-port-dependent). Filtering: a socket
  that has sent only to the main port is sent a datagram from the alt port (arrives: endpoint-
  independent or address-dependent; does not: address-and-port-dependent).
* **A missing datagram means "expired" only when it cannot mean anything else.** The server sends each
  delayed datagram three times; an expiry counts once the next longer idle time has expired too (an
  isolated one below a survivor was loss); and only once the server has answered a heartbeat sent
  after it (a server that died would otherwise pass for a NAT that forgets everything).
* **No amplification.** The server never sends more bytes to an address it has not verified than the
  request from that address carried (clients pad their requests); see :data:`REQUEST_SIZE`.

The wire format follows ``natchat/proto/wire.py``'s conventions (one UTF-8 JSON object per datagram,
``v`` and ``t``, strict decoding, at most 1200 bytes) with message types prefixed ``probe_``, so the
server's main socket can route them (:func:`is_probe_message`) next to rendezvous traffic and STUN.
"""

from __future__ import annotations

import enum
import heapq
import math
import secrets
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta, Struct

from .actions import Action, CloseSocket, OpenSocket, Send
from .wire import MAX_DATAGRAM, Addr, Port, WireError

# --- wire ---------------------------------------------------------------------------------------------

PREFIX: Final = "probe_"
"""Every probe message type starts with this; rendezvous types never do."""

REQUEST_SIZE: Final = 320
"""Clients pad every request to this many bytes, so that every answer fits in the request's size."""

DUE_COPIES: Final = 3
"""The delayed datagram is sent three times back to back: a lost one would read as an expired mapping."""

Sid = Annotated[str, Meta(pattern=r"^[0-9a-f]{32}$")]
Index = Annotated[int, Meta(ge=0, le=65535)]
Seq = Annotated[int, Meta(ge=1, le=1000)]
Delay = Annotated[float, Meta(ge=0, le=86400)]
Pad = Annotated[str, Meta(max_length=MAX_DATAGRAM, pattern=r"^ *$")]
Limit = Annotated[int, Meta(ge=0, le=1_000_000)]
Counter = Annotated[int, Meta(ge=1, le=2**31)]


PROBE_VERSION: Final = 1
"""The prober's own protocol version (the chat's is ``wire.PROTOCOL_VERSION``; they change apart)."""


class ProbeMessage(Struct, tag_field="t", forbid_unknown_fields=True, kw_only=True, frozen=True):
    v: int = PROBE_VERSION


# client -> server


class Hello(ProbeMessage, tag="probe_hello", frozen=True):
    """From the control socket: open a probe session (answered by :class:`Welcome`)."""

    n: Seq
    pad: Pad = ""


class Hold(ProbeMessage, tag="probe_hold", frozen=True):
    """From a measured socket: remember this mapping as test ``idx`` (transmission ``n``).

    ``delay``: send :class:`Due` to it that many seconds after this datagram (None: not yet; replaces
    any earlier schedule of ``idx``). ``echo``: answer with :class:`Echo` on the same mapping right
    away; otherwise acknowledge with :class:`Held` on the control socket, leaving the mapping idle.
    """

    sid: Sid
    idx: Index
    n: Seq
    delay: Delay | None
    echo: bool
    pad: Pad = ""


class MapQuery(ProbeMessage, tag="probe_map", frozen=True):
    """Sent to the main port *and* the alt port: which public address do you see? (:class:`Mapped`)."""

    sid: Sid
    n: Seq
    pad: Pad = ""


class FilterQuery(ProbeMessage, tag="probe_filter", frozen=True):
    """Sent to the main port only: answer with :class:`Mapped` from it and :class:`FromAlt` from the alt
    port, to the same mapping."""

    sid: Sid
    n: Seq
    pad: Pad = ""


class Cancel(ProbeMessage, tag="probe_cancel", frozen=True):
    """Forget tests ``lo`` to ``hi`` (inclusive): their answer is no longer needed."""

    sid: Sid
    lo: Index
    hi: Index


class Ping(ProbeMessage, tag="probe_ping", frozen=True):
    """From the control socket, twice a second during a run: are you still there? (:class:`Pong`).

    A server that stops answering would make every later test look expired; the prober takes an expiry
    as the NAT's only once the server has answered a ping sent after it."""

    sid: Sid
    n: Counter


class Bye(ProbeMessage, tag="probe_bye", frozen=True):
    """The session is over; forget it."""

    sid: Sid


# server -> client


class Welcome(ProbeMessage, tag="probe_welcome", frozen=True):
    """Session ``sid`` opened; ``pub`` is the control socket's public address; probes come from the main
    port and ``alt_port`` of the same address. ``max_tests`` and ``max_delay`` are the server's limits."""

    sid: Sid
    n: Seq
    pub: Addr
    alt_port: Port
    max_tests: Limit
    max_delay: Delay


class Held(ProbeMessage, tag="probe_held", frozen=True):
    """On the control socket: transmission ``n`` of test ``idx`` arrived from ``pub``."""

    sid: Sid
    idx: Index
    n: Seq
    pub: Addr


class Echo(ProbeMessage, tag="probe_echo", frozen=True):
    """On the measured mapping: transmission ``n`` of test ``idx`` arrived."""

    sid: Sid
    idx: Index
    n: Seq


class Due(ProbeMessage, tag="probe_due", frozen=True):
    """On the measured mapping, ``delay`` after the :class:`Hold`: if this arrives, the mapping survived."""

    sid: Sid
    idx: Index


class Mapped(ProbeMessage, tag="probe_mapped", frozen=True):
    """Answer to :class:`MapQuery` / :class:`FilterQuery` ``n``, from the port it was sent to."""

    sid: Sid
    n: Seq
    pub: Addr


class FromAlt(ProbeMessage, tag="probe_from_alt", frozen=True):
    """From the alt port, to a mapping made toward the main port only: does it get through?"""

    sid: Sid
    n: Seq


class Pong(ProbeMessage, tag="probe_pong", frozen=True):
    """Answer to :class:`Ping` ``n``, to the session's control socket only."""

    sid: Sid
    n: Counter


class Refusal(ProbeMessage, tag="probe_error", frozen=True):
    """The server cannot serve this session (``code``: ``busy``, ``unknown_session``, ``limit``)."""

    code: Annotated[str, Meta(max_length=32)]
    msg: Annotated[str, Meta(max_length=300)]


AnyProbeMessage = (
    Hello
    | Hold
    | MapQuery
    | FilterQuery
    | Cancel
    | Ping
    | Bye
    | Welcome
    | Held
    | Echo
    | Due
    | Mapped
    | FromAlt
    | Pong
    | Refusal
)


_WITHOUT_SESSION: Final = (Hello, Welcome, Refusal)
"""Message types that carry no ``sid``."""


class _Header(Struct):
    v: int
    t: str


_encoder = msgspec.json.Encoder()
_header_decoder = msgspec.json.Decoder(_Header)
_decoder = msgspec.json.Decoder(AnyProbeMessage)


def is_probe_message(data: bytes) -> bool:
    """Whether a datagram is meant for the probe responder: a JSON object whose ``t`` starts with
    ``probe_``. Decodes the header properly (no byte-prefix guessing on untrusted input); never raises."""
    if len(data) > MAX_DATAGRAM:
        return False
    try:
        return _header_decoder.decode(data).t.startswith(PREFIX)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return False


def encode(msg: ProbeMessage) -> bytes:
    data = _encoder.encode(msg)
    if len(data) > MAX_DATAGRAM:
        raise WireError(f"{type(msg).__name__} is {len(data)} bytes, over {MAX_DATAGRAM}")
    return data


def encode_padded(msg: Hello | Hold | MapQuery | FilterQuery, size: int = REQUEST_SIZE) -> bytes:
    """``msg`` padded with spaces in its ``pad`` field to ``size`` bytes (or left as is if larger)."""
    bare = encode(msg)
    missing = size - len(bare)
    return bare if missing <= 0 else encode(msgspec.structs.replace(msg, pad=" " * missing))


def decode(data: bytes) -> AnyProbeMessage:
    """Parse one probe datagram strictly; raises :class:`WireError` with the reason on any defect."""
    if len(data) > MAX_DATAGRAM:
        raise WireError(f"datagram of {len(data)} bytes is over {MAX_DATAGRAM}")
    try:
        header = _header_decoder.decode(data)
        if header.v != PROBE_VERSION:
            raise WireError(f"unsupported protocol version {header.v}")
        msg: AnyProbeMessage = _decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise WireError(str(exc)) from None
    return msg


# --- the server side ----------------------------------------------------------------------------------

Via = Literal["main", "alt"]
"""Which of the server's two sockets a datagram arrived on, or is to be sent from."""

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
        session = self._sessions.get(msg.sid) if not isinstance(msg, _WITHOUT_SESSION) else None
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


# --- the client side ----------------------------------------------------------------------------------


class Kind(enum.StrEnum):
    """What a measured mapping has carried before it is left idle."""

    OUTBOUND = "outbound"
    REPLY = "reply"
    STREAM = "stream"

    @property
    def meaning(self) -> str:
        return _MEANING[self]


_MEANING: Final = {
    Kind.OUTBOUND: "after one outbound datagram",
    Kind.REPLY: "after one request and its answer",
    Kind.STREAM: "after an exchange lasting over 2 s",
}

MAPPING_BEHAVIOURS: Final = ("endpoint-independent", "address-dependent", "address-and-port-dependent")
FILTERING_BEHAVIOURS: Final = MAPPING_BEHAVIOURS
"""RFC 4787's three classes for each; a classification is the subset consistent with what was seen."""


@dataclass(frozen=True, slots=True)
class ProbeConfig:
    kinds: tuple[Kind, ...] = (Kind.OUTBOUND, Kind.REPLY, Kind.STREAM)
    max_idle: float = 300.0
    """Longest idle time tested; a mapping that survives it is reported as "longer than" it."""
    resolution: float = 1.0
    """Spacing of the tested idle times: the bracket is this wide."""
    answer_within: float = 4.0
    """Give up if the server does not answer the control socket's hello within this many seconds."""
    retry: float = 0.5
    """Retransmit an unanswered request after this long (or three round trips, if longer)."""
    tries: int = 6
    """Transmissions of one request before it is given up as lost."""
    grace: float = 0.5
    """How much later than expected the server's delayed datagram may arrive (or three round trips)."""
    stream_gap: float = 3.0
    """For the ``stream`` kind: seconds between the two exchanges (Linux needs more than 2)."""
    pace: int = 10
    """Tests started per pacing tick (every 10 ms): 1000 new mappings per second at most."""
    ping_every: float = 0.5
    """Heartbeat on the control socket while measuring (see :class:`Ping`)."""
    confirm: int = 1
    """An expiry counts once this many next longer idle times (that got an answer) expired too: one lost
    datagram must not pass for the NAT forgetting the mapping. Costs that many resolution steps."""
    filter_tries: int = 3
    """Filtering is called port-dependent only after this many rounds in which the alt port's datagram
    did not arrive although the main port's did."""

    def __post_init__(self) -> None:
        if not self.kinds:
            raise ValueError("no kind of mapping to measure")
        if not 0 < self.resolution <= self.max_idle:
            raise ValueError("the resolution must be positive and no more than the longest idle time")
        if self.confirm < 0 or self.tries < 1 or self.filter_tries < 1 or self.pace < 1:
            raise ValueError("confirm must be >= 0, tries, filter_tries and pace >= 1")
        if self.max_idle / self.resolution > 20_000:
            raise ValueError(f"{self.max_idle:g} s at {self.resolution:g} s resolution is too many tests")

    def grid(self) -> list[float]:
        """The idle times tested for each kind: every ``resolution`` up to ``max_idle`` (included)."""
        times: list[float] = []
        k = 1
        while (d := round(k * self.resolution, 6)) < self.max_idle - 1e-6:
            times.append(d)
            k += 1
        times.append(round(self.max_idle, 6))
        return times


Outcome = Literal["survived", "expired", "lost"]
_OUTCOMES: Final[dict[str, Outcome]] = {"survived": "survived", "expired": "expired", "lost": "lost"}


@dataclass(frozen=True, slots=True)
class Lifetime:
    """What was found for one kind of mapping: it survived ``survived`` s idle and not ``expired`` s."""

    kind: Kind
    survived: float | None
    """Longest idle time that survived (with every shorter one); None: not even the shortest did."""
    expired: float | None
    """Shortest idle time that expired; None: none did (the lifetime is longer than the longest test)."""
    results: tuple[tuple[float, Outcome], ...]
    """Every idle time whose outcome was known when the answer was, in order."""
    answered_after: float
    """Seconds from the start of the run until this answer."""

    @property
    def known(self) -> bool:
        return self.survived is not None or self.expired is not None

    @property
    def keepalive(self) -> float | None:
        """The longest interval between datagrams that keeps such a mapping (None: none found)."""
        return self.survived

    def describe(self, max_idle: float, resolution: float) -> str:
        if not self.known:
            return "unknown: no test got an answer from the server"
        if self.expired is None:
            return f"longer than {_s(max_idle)} (every idle time up to {_s(max_idle)} survived)"
        if self.survived is None:
            return f"shorter than {_s(self.expired)} (the server's datagram did not get in after {_s(self.expired)})"
        low, high = _s(self.survived), _s(self.expired)
        return f"between {low} and {high} (survived {low} idle, not {high})"


def _s(seconds: float) -> str:
    return f"{seconds:g} s"


@dataclass(frozen=True, slots=True)
class Report:
    """Everything ``natchat probe-mapping`` found; :meth:`lines` for people, :meth:`to_json` for machines."""

    server: Addr
    alt_port: int
    rtt: float
    local: Addr | None
    public: Addr
    mapping: tuple[str, ...]
    """The RFC 4787 mapping behaviours consistent with what was seen (one: conclusive; all: unknown)."""
    mapping_seen: tuple[Addr | None, Addr | None]
    """The public address the main port and the alt port saw for the same socket."""
    filtering: tuple[str, ...]
    """The RFC 4787 filtering behaviours consistent with what was seen."""
    lifetimes: tuple[Lifetime, ...]
    max_idle: float
    resolution: float
    tests_per_kind: int
    elapsed: float

    @property
    def nat(self) -> bool | None:
        """Whether the server saw another address than the control socket's own (None: unknown)."""
        return None if self.local is None else self.local != self.public

    @property
    def keepalive(self) -> float | None:
        """The longest keepalive interval that keeps every measured kind of mapping."""
        known = [lt.survived for lt in self.lifetimes if lt.survived is not None]
        return min(known) if known else None

    @property
    def drops_everything(self) -> bool:
        """No kind survived even the shortest idle time although the server answered."""
        return all(lt.known and lt.survived is None for lt in self.lifetimes)

    def to_json(self) -> dict[str, Any]:
        return {
            "server": str(self.server),
            "alt_port": self.alt_port,
            "rtt_ms": round(self.rtt * 1000, 3),
            "local": str(self.local) if self.local else None,
            "public": str(self.public),
            "nat": self.nat,
            "mapping": list(self.mapping),
            "mapping_seen": {"main": _opt(self.mapping_seen[0]), "alt": _opt(self.mapping_seen[1])},
            "filtering": list(self.filtering),
            "lifetimes": [
                {
                    "kind": str(lt.kind),
                    "meaning": lt.kind.meaning,
                    "survived": lt.survived,
                    "expired": lt.expired,
                    "longer_than_max": lt.known and lt.expired is None,
                    "keepalive": lt.keepalive,
                    "answered_after": round(lt.answered_after, 3),
                    "results": [[idle, outcome] for idle, outcome in lt.results],
                }
                for lt in self.lifetimes
            ],
            "keepalive": self.keepalive,
            "drops_everything": self.drops_everything,
            "tested": {
                "from": self.resolution,
                "to": self.max_idle,
                "step": self.resolution,
                "per_kind": self.tests_per_kind,
            },
            "elapsed": round(self.elapsed, 3),
        }

    def lines(self) -> list[str]:
        out = [f"server {self.server} (second port {self.alt_port}), round trip {self.rtt * 1000:.1f} ms"]
        if self.nat is False:
            out.append(f"public address {self.public}: the same as the local one, no NAT on the way")
        elif self.nat:
            out.append(f"public address {self.public} (local {self.local}): behind a NAT")
        else:
            out.append(f"public address {self.public}")
        out.append(f"mapping:   {_describe_mapping(self.mapping, self.mapping_seen, self.alt_port)}")
        out.append(f"filtering: {_describe_filtering(self.filtering, self.alt_port)}")
        out.append("mapping lifetime (how long the NAT keeps a UDP mapping that carries no traffic):")
        width = max(len(lt.kind.meaning) for lt in self.lifetimes) + 1
        for lt in self.lifetimes:
            out.append(f"  {(lt.kind.meaning + ':').ljust(width)} {lt.describe(self.max_idle, self.resolution)}")
        if self.drops_everything:
            out.append(
                f"the NAT dropped every datagram from the server after {_s(self.resolution)} of idleness"
                " (or drops everything inbound): no keepalive interval can be recommended"
            )
        elif (keepalive := self.keepalive) is not None:
            if all(lt.expired is None for lt in self.lifetimes if lt.known):
                out.append(f"keepalive: every {_s(keepalive)} is enough (nothing expired; longer was not tested)")
            else:
                out.append(
                    f"keepalive: send at least every {_s(keepalive)} to keep a mapping"
                    f" (every {_s(keepalive / 2)} to survive one lost datagram)"
                )
        out.append(
            f"tested: idle times {_s(self.resolution)} to {_s(self.max_idle)} every {_s(self.resolution)},"
            f" {self.tests_per_kind} fresh mappings per kind, all at once; took {self.elapsed:.1f} s"
        )
        return out


def _opt(addr: Addr | None) -> str | None:
    return None if addr is None else str(addr)


def _describe_mapping(behaviours: tuple[str, ...], seen: tuple[Addr | None, Addr | None], alt: int) -> str:
    main, other = seen
    if behaviours == ("address-and-port-dependent",):
        return (
            f'address-and-port-dependent ("symmetric"): a new public port per destination'
            f" ({main} toward the main port, {other} toward port {alt})"
        )
    if behaviours == ("endpoint-independent", "address-dependent"):
        return (
            f"endpoint-independent, or address-dependent: the same public address {main} toward both ports"
            " (telling these two apart needs a second server address)"
        )
    return f"unknown: the server's port {alt} did not answer (a firewall in front of the server?)"


def _describe_filtering(behaviours: tuple[str, ...], alt: int) -> str:
    if behaviours == ("address-and-port-dependent",):
        return (
            f"address-and-port-dependent: a datagram from the server's port {alt}, to which nothing had been"
            " sent, did not get in"
        )
    if behaviours == ("endpoint-independent", "address-dependent"):
        return (
            f"endpoint-independent, or address-dependent: a datagram from the server's port {alt}, to which"
            " nothing had been sent, got in (telling these two apart needs a second server address)"
        )
    return "unknown: the server did not answer the filtering test"


@dataclass(frozen=True, slots=True)
class Progress:
    """For a progress bar: time so far, the latest the run can take, and what each kind knows yet."""

    elapsed: float
    horizon: float
    kinds: tuple[tuple[Kind, float | None, bool], ...]
    """(kind, longest idle time survived so far, answered)."""


class ProbeFailed(Exception):
    """The measurement could not be made; the text says why, for the user."""


# Timer keys besides test indexes (which are >= 0).
_HELLO, _PACE, _MAP, _FILTER, _PING = -1, -2, -3, -4, -5
PACE_INTERVAL: Final = 0.01

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


@dataclass(slots=True)
class _KindState:
    tests: list[_Test]
    result: Lifetime | None = None


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
        self._actions: list[Action] = []
        self._timers: list[tuple[float, int, int]] = []
        self._gen: dict[int, int] = {}
        self._started = 0.0
        self._done_at = 0.0
        self._local: dict[int, Addr] = {}
        self._open: set[int] = set()
        # hello
        self._hello_sent: dict[int, float] = {}
        self._sid = ""
        self._alt_port = 0
        self._public: Addr | None = None
        self.rtt = 0.0
        # heartbeat
        self._ping_sent: dict[int, float] = {}
        self._ping_n = 0
        self._last_pong = 0.0
        self._alive_until = -math.inf
        """Send time of the latest ping the server answered: it was alive and sending until then."""
        # lifetime tests
        self._tests: dict[int, _Test] = {}
        self._by_sock: dict[int, _Test] = {}
        self._kinds: dict[Kind, _KindState] = {}
        self._queue: deque[_Test] = deque()
        self._next_sock = 3
        # classification
        self._map_sent = 0
        self._map_seen: dict[Via, Addr] = {}
        self._map_done = False
        self._filter_n = 0
        self._filter_rounds = 0
        self._filter_answered: set[int] = set()
        self._filter_result: bool | None = None  # True: the alt port's datagram got in
        self._filter_done = False

    # --- what the shell reads -------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.phase == "done"

    def actions(self) -> list[Action]:
        out, self._actions = self._actions, []
        return out

    def get_timer(self) -> float | None:
        while self._timers and self._gen.get(self._timers[0][1]) != self._timers[0][2]:
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers and not self.finished else None

    def sockets_needed(self) -> int:
        """How many sockets a run opens at most (the shell may have to raise its file limit)."""
        return 3 + len(self.grid) * len(self.config.kinds)

    def progress(self, now: float) -> Progress:
        setup = self.config.stream_gap if Kind.STREAM in self.config.kinds else 0.0
        horizon = self.config.max_idle + setup + self.config.grace + (1 + self.config.confirm) * self.config.resolution
        kinds = tuple(
            (kind, self._longest_survived(state.tests), state.result is not None) for kind, state in self._kinds.items()
        )
        return Progress(elapsed=(self._done_at if self.finished else now) - self._started, horizon=horizon, kinds=kinds)

    def report(self) -> Report:
        if self.phase != "done" or self.error is not None or self._public is None:
            raise ProbeFailed(self.error or "the measurement has not finished")
        behaviours_m: tuple[str, ...]
        main, alt = self._map_seen.get("main"), self._map_seen.get("alt")
        if main is None or alt is None:
            behaviours_m = MAPPING_BEHAVIOURS
        elif main == alt:
            behaviours_m = ("endpoint-independent", "address-dependent")
        else:
            behaviours_m = ("address-and-port-dependent",)
        if self._filter_result is None:
            behaviours_f: tuple[str, ...] = FILTERING_BEHAVIOURS
        elif self._filter_result:
            behaviours_f = ("endpoint-independent", "address-dependent")
        else:
            behaviours_f = ("address-and-port-dependent",)
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
            mapping=behaviours_m,
            mapping_seen=(main, alt),
            filtering=behaviours_f,
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
            self._schedule(_HELLO, now)
        elif sock == self.MAP:
            self._schedule(_MAP, now)
        elif sock == self.FILTER:
            self._schedule(_FILTER, now)
        elif (test := self._by_sock.get(sock)) is not None and test.state == "setup":
            self._send_hold(test, now)

    def handle_timer(self, now: float) -> None:
        while self._timers and self._timers[0][0] <= now and not self.finished:
            _, key, gen = heapq.heappop(self._timers)
            if self._gen.get(key) != gen:
                continue
            self._gen[key] = gen + 1
            if key == _HELLO:
                self._on_hello_timer(now)
            elif key == _PACE:
                self._on_pace(now)
            elif key == _MAP:
                self._on_map_timer(now)
            elif key == _FILTER:
                self._on_filter_timer(now)
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
                self._fail(f"the server refused the probe: {msg.msg}", now)
            case _ if self.phase != "run" or getattr(msg, "sid", None) != self._sid:
                return
            case Held(idx=idx, n=n) if sock == self.CONTROL and from_main:
                test = self._tests.get(idx)
                if test is not None and test.state == "setup" and test.kind is Kind.OUTBOUND and n == test.n:
                    # The idle time starts when the acknowledged hold passed the NAT (it was sent then).
                    self._arm(test, test.sent[n] + max(test.idle, self.rtt), now)
            case Echo(idx=idx, n=n) if from_main and (test := self._by_sock.get(sock)) is not None:
                if test.idx == idx and test.state == "setup" and n == test.n:
                    if test.kind is Kind.STREAM and test.stage == 1:
                        test.state = "gap"
                        self._schedule(test.idx, now + self.config.stream_gap)
                    else:  # the idle time starts when the echo passed the NAT, about now
                        self._arm(test, now + test.idle, now)
            case Due(idx=idx) if from_main and (test := self._by_sock.get(sock)) is not None:
                if test.idx == idx and test.state in ("armed", "expired"):
                    state = self._kinds[test.kind]
                    if state.result is None:
                        test.state = "survived"
                        self._unschedule(test.idx)
                        self._evaluate(test.kind, now)
            case Pong(n=n) if sock == self.CONTROL and from_main and n in self._ping_sent:
                self._alive_until = max(self._alive_until, self._ping_sent[n])
                self._last_pong = now
                for older in [k for k in self._ping_sent if k <= n]:
                    del self._ping_sent[older]
                for kind in self._kinds:
                    self._evaluate(kind, now)
            case Mapped(n=n, pub=pub) if sock == self.MAP and (from_main or from_alt) and not self._map_done:
                self._map_seen["main" if from_main else "alt"] = pub
                if len(self._map_seen) == 2:
                    self._map_done = True
                    self._unschedule(_MAP)
            case Mapped(n=n) if sock == self.FILTER and from_main and not self._filter_done:
                if n == self._filter_n and n not in self._filter_answered:
                    self._filter_answered.add(n)
                    # Give the alt port's datagram (sent at the same time) a while to arrive too.
                    self._schedule(_FILTER, now + self._grace)
            case FromAlt() if sock == self.FILTER and from_alt and not self._filter_done:
                self._filter_result = True
                self._filter_done = True
                self._unschedule(_FILTER)
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
            self._fail(
                f"no answer from {self.server} within {_s(self.config.answer_within)}: the server is down, does"
                " not answer probes (natchat serve --no-probe, or not natchat), or UDP is blocked on the way",
                now,
            )
            return
        n = len(self._hello_sent) + 1
        self._hello_sent[n] = now
        self._send(self.CONTROL, encode_padded(Hello(n=n)))
        self._schedule(_HELLO, min(now + self._retry, deadline))

    def _on_welcome(self, msg: Welcome, now: float) -> None:
        sent = self._hello_sent.get(msg.n)
        if sent is None:
            return
        self.rtt = now - sent
        needed = len(self.grid) * len(self.config.kinds)
        if needed > msg.max_tests or self.config.max_idle > msg.max_delay:
            self._fail(
                f"the server allows {msg.max_tests} tests of at most {_s(msg.max_delay)}; this run needs {needed}"
                f" of up to {_s(self.config.max_idle)} (use a larger --resolution or a smaller --max)",
                now,
            )
            return
        self.phase = "run"
        self._unschedule(_HELLO)
        self._sid, self._alt_port, self._public = msg.sid, msg.alt_port, msg.pub
        self._open_socket(self.MAP)
        self._open_socket(self.FILTER)
        for k, kind in enumerate(self.config.kinds):
            tests = [_Test(idx=k * len(self.grid) + j, kind=kind, idle=idle) for j, idle in enumerate(self.grid)]
            self._kinds[kind] = _KindState(tests)
            self._tests.update((t.idx, t) for t in tests)
        # Shortest idle times first, the kinds interleaved: every test starts within the first second.
        self._queue.extend(sorted(self._tests.values(), key=lambda t: (t.idle, t.idx)))
        self._schedule(_PACE, now)
        self._last_pong = now
        self._schedule(_PING, now + self.config.ping_every)

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
            self._schedule(_PACE, now + PACE_INTERVAL)

    def _send_hold(self, test: _Test, now: float) -> None:
        test.n += 1
        test.sent[test.n] = now
        armed = test.kind is not Kind.STREAM or test.stage == 2
        # Outbound: the server's clock starts when the hold arrives, half a round trip after it passed
        # the NAT, and its datagram needs another half to get back: ask for the idle time minus the RTT.
        delay = (max(0.0, test.idle - self.rtt) if test.kind is Kind.OUTBOUND else test.idle) if armed else None
        hold = Hold(sid=self._sid, idx=test.idx, n=test.n, delay=delay, echo=test.kind is not Kind.OUTBOUND)
        self._send(test.sock, encode_padded(hold))
        self._schedule(test.idx, now + self._retry)

    def _arm(self, test: _Test, expected: float, now: float) -> None:
        test.state = "armed"
        test.deadline = expected + self._grace
        self._schedule(test.idx, test.deadline)

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
                self._schedule(_PING, now)
            case _:
                pass

    def _evaluate(self, kind: Kind, now: float) -> None:
        """Answer for ``kind`` once it is known where the mapping stopped surviving: the shortest idle time
        that expired, confirmed by the ``confirm`` next longer ones (those that got an answer) expiring
        too. An expired test followed by a survivor was a lost datagram, not the NAT: the mapping
        evidently lived longer; it is reported as ``lost``, like a test whose setup got no answer."""
        state = self._kinds[kind]
        if state.result is not None:
            return
        answered: list[_Test] = []
        complete = True
        for test in state.tests:
            if test.state == "survived" or (test.state == "expired" and test.deadline <= self._alive_until):
                answered.append(test)
            elif test.state != "lost":
                complete = False
                break
        expired: float | None = None
        contradicted: set[int] = set()
        for i, test in enumerate(answered):
            if test.state != "expired":
                continue
            following = answered[i + 1 : i + 1 + self.config.confirm]
            if any(t.state == "survived" for t in following):
                contradicted.add(test.idx)
                continue
            if len(following) < self.config.confirm and not complete:
                return  # wait for the next longer idle times
            expired = test.idle
            break
        else:
            if not complete:
                return
        survived = max(
            (t.idle for t in answered if t.state == "survived" and (expired is None or t.idle < expired)), default=None
        )
        results = tuple(
            (t.idle, "lost" if t.idx in contradicted else _OUTCOMES[t.state])
            for t in state.tests
            if t.state in _OUTCOMES and (expired is None or t.idle <= expired)
        )
        state.result = Lifetime(kind, survived, expired, results, now - self._started)
        for test in state.tests:  # the remaining tests cannot change the answer: stop them
            if test.state in ("queued", "setup", "gap", "armed"):
                test.state = "cancelled"
                self._unschedule(test.idx)
            if test.sock >= 0:
                self._by_sock.pop(test.sock, None)
                self._close(test.sock)
        first, last = state.tests[0].idx, state.tests[-1].idx
        self._send(self.CONTROL, encode(Cancel(sid=self._sid, lo=first, hi=last)))

    def _on_ping_timer(self, now: float) -> None:
        if now - self._last_pong > self.config.answer_within:
            self._fail(
                f"the server stopped answering for {_s(self.config.answer_within)} during the measurement, so"
                " missing probes cannot be told from expired mappings; try again",
                now,
            )
            return
        self._ping_n += 1
        self._ping_sent[self._ping_n] = now
        self._send(self.CONTROL, encode(Ping(sid=self._sid, n=self._ping_n)))
        self._schedule(_PING, now + self.config.ping_every)

    def _on_map_timer(self, now: float) -> None:
        if self._map_sent >= self.config.tries:
            self._map_done = True
            return
        self._map_sent += 1
        data = encode_padded(MapQuery(sid=self._sid, n=self._map_sent))
        for via, port in (("main", self.server.port), ("alt", self._alt_port)):
            if via not in self._map_seen:
                self._actions.append(Send(self.MAP, data, Addr(self.server.host, port)))
        self._schedule(_MAP, now + self._retry)

    def _on_filter_timer(self, now: float) -> None:
        if self._filter_n in self._filter_answered:
            # The main port's answer came and the alt port's did not, within the grace time.
            self._filter_rounds += 1
            if self._filter_rounds >= self.config.filter_tries:
                self._filter_result = False
                self._filter_done = True
                return
        elif self._filter_n >= self.config.tries + self.config.filter_tries:
            self._filter_done = True  # the main port does not answer this socket: unknown
            return
        self._filter_n += 1
        self._send(self.FILTER, encode_padded(FilterQuery(sid=self._sid, n=self._filter_n)))
        self._schedule(_FILTER, now + self._retry)

    def _check_done(self, now: float) -> None:
        if self.phase != "run":
            return
        if self._map_done and self._filter_done and all(s.result is not None for s in self._kinds.values()):
            if all(test.state == "lost" for test in self._tests.values()):
                self._fail(
                    f"the server answered the control socket but no datagram from the {len(self._tests)}"
                    " measurement sockets: a firewall or the NAT lets only one flow through?",
                    now,
                )
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

    def _longest_survived(self, tests: Iterable[_Test]) -> float | None:
        longest = None
        for test in tests:
            if test.state == "survived":
                longest = test.idle
            elif test.state != "lost":
                break
        return longest

    def _send(self, sock: int, data: bytes) -> None:
        self._actions.append(Send(sock, data, self.server))

    def _open_socket(self, sock: int) -> None:
        self._open.add(sock)
        self._actions.append(OpenSocket(sock))

    def _close(self, sock: int) -> None:
        if sock in self._open:
            self._open.remove(sock)
            self._actions.append(CloseSocket(sock))

    def _schedule(self, key: int, when: float) -> None:
        gen = self._gen.get(key, 0) + 1
        self._gen[key] = gen
        heapq.heappush(self._timers, (when, key, gen))

    def _unschedule(self, key: int) -> None:
        self._gen[key] = self._gen.get(key, 0) + 1
