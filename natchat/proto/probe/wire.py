"""The probes' wire format: the ``probe_*`` messages and their strict encoding.

Owns: every message the prober and the responder exchange, the request padding that keeps the server
from amplifying (:data:`REQUEST_SIZE`), and :func:`is_probe_message`, which lets the server's main
socket route probe datagrams next to rendezvous traffic and STUN.

The conventions are ``natchat/proto/wire.py``'s (one UTF-8 JSON object per datagram, ``v`` and ``t``,
strict decoding, at most 1200 bytes), through the same :class:`~natchat.proto.codec.StrictCodec`; the
probe's version (:data:`PROBE_VERSION`) changes apart from the chat's.

May not touch: session or test state (``responder.py`` and ``prober.py`` own it); it holds no state.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec
from msgspec import Meta, Struct

from ..codec import StrictCodec
from ..wire import MAX_DATAGRAM, Addr, Port

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


WITHOUT_SESSION: Final = (Hello, Welcome, Refusal)
"""Message types that carry no ``sid``."""

Via = Literal["main", "alt"]
"""Which of the server's two sockets a datagram arrived on, or is to be sent from."""

_codec: StrictCodec[AnyProbeMessage] = StrictCodec(AnyProbeMessage, version=PROBE_VERSION, max_size=MAX_DATAGRAM)


def is_probe_message(data: bytes) -> bool:
    """Whether a datagram is meant for the probe responder: a JSON object whose ``t`` starts with
    ``probe_``. Decodes the header properly (no byte-prefix guessing on untrusted input); never raises."""
    kind = _codec.peek_type_untrusted(data)
    return kind is not None and kind.startswith(PREFIX)


def encode(msg: ProbeMessage) -> bytes:
    """Serialize ``msg``; raises :class:`~natchat.proto.codec.WireError` if it would exceed the datagram limit."""
    return _codec.encode(msg)


def encode_padded(msg: Hello | Hold | MapQuery | FilterQuery, size: int = REQUEST_SIZE) -> bytes:
    """``msg`` padded with spaces in its ``pad`` field to ``size`` bytes (or left as is if larger)."""
    bare = encode(msg)
    missing = size - len(bare)
    return bare if missing <= 0 else encode(msgspec.structs.replace(msg, pad=" " * missing))


def decode(data: bytes) -> AnyProbeMessage:
    """Parse one probe datagram strictly; raises :class:`~natchat.proto.codec.WireError` with the reason on
    any defect."""
    return _codec.decode_untrusted(data)
