"""The natchat wire format: one UTF-8 JSON object per UDP datagram.

Every message carries the protocol version ``v`` and its type ``t``. Decoding is strict: anything that
is not exactly one of the messages below, with every field present and of the right type, raises
:class:`WireError` and is dropped by the caller. See ``docs/PROTOCOL.md`` for the prose version.

No ``pickle``, no ``eval``: msgspec decodes straight into typed, validated structs.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Annotated, Final, Literal

import msgspec
from msgspec import Meta, Struct

from .codec import StrictCodec, to_json
from .codec import WireError as WireError  # re-exported: what decode raises

PROTOCOL_VERSION: Final = 3
"""2: the list carries IDs only; addresses and keys are looked up (``lookup``, ``details``). 3: an
``error`` about a peer names it in ``peer`` (clients never read IDs out of the text); and birthday
punching (every new field's default means "as before"): ``challenge.alt``, ``register.mapping`` and
``register.spray``, ``punch_go.plan``; and identities: ``register`` and a peer's details carry
``ident``, ``sig``, ``issued`` (``proto/identity.py``)."""
MAX_DATAGRAM: Final = 1200
"""No datagram natchat sends is larger than this (bytes); larger incoming ones are rejected unread."""

ID_PATTERN: Final = r"^[A-Za-z0-9._-]{1,32}$"
ClientId = Annotated[str, Meta(pattern=ID_PATTERN)]
Token = Annotated[str, Meta(pattern=r"^[0-9a-f]{32}$")]
Host = Annotated[str, Meta(min_length=2, max_length=45)]
Port = Annotated[int, Meta(ge=0, le=65535)]
Counter = Annotated[int, Meta(ge=0, le=2**53)]
Attempt = Annotated[int, Meta(ge=1, le=1000)]
PublicKey = Annotated[bytes, Meta(min_length=32, max_length=32)]
"""A client's X25519 public key (``seal.py``); base64 in JSON, like every ``bytes`` field."""
Nonce = Annotated[bytes, Meta(min_length=12, max_length=12)]
Tag = Annotated[bytes, Meta(min_length=16, max_length=16)]
Box = Annotated[bytes, Meta(min_length=17, max_length=MAX_DATAGRAM)]
"""A sealed chat text: the ciphertext of its UTF-8 (1 byte or more) and the 16-byte tag."""
MAX_TEXT_CHARS: Final = 1000
"""The longest text a receiver shows (checked once opened); the datagram limit is usually reached first."""
Seconds = Annotated[float, Meta(ge=0, le=3600)]
SIGNED_LEN: Final = 104
Signed = Annotated[bytes, Meta(min_length=SIGNED_LEN, max_length=SIGNED_LEN)]
"""A client's identity, as it signs its session key (``proto/identity.py``), in one field: its long-term
Ed25519 identity key (32 bytes), the signature of the statement (ID, session key, issued) (64 bytes),
and issued, when the signing run started (8 bytes, big-endian; nanoseconds since 1970). One bytes
object, not three, because the server keeps one for every registered client (81 bytes less each)."""


def signed(ident: bytes, sig: bytes, issued: int) -> bytes:
    """The :data:`Signed` field of identity key ``ident``, signature ``sig`` and ``issued``."""
    return ident + sig + issued.to_bytes(8, "big")


def ident_of(field: bytes | None) -> bytes | None:
    """The identity key in a :data:`Signed` field (None: no field)."""
    return None if field is None else field[:32]


class _SignedFields:
    """The parts of a :data:`Signed` field, read (a mixin for the structs that carry one)."""

    __slots__ = ()
    if TYPE_CHECKING:
        signed: bytes | None

    @property
    def ident(self) -> bytes | None:
        """The identity key."""
        return ident_of(self.signed)

    @property
    def sig(self) -> bytes | None:
        """The identity's signature of (ID, session key, issued)."""
        return None if self.signed is None else self.signed[32:96]

    @property
    def issued(self) -> int | None:
        """When the signing run started (ns since 1970; a value of 2**63 or more is never signed by natchat)."""
        return None if self.signed is None else int.from_bytes(self.signed[96:], "big")


Clock = Annotated[float, Meta(ge=-1e12, le=1e12)]
"""A reading of the sender's own clock (seconds; its origin is arbitrary)."""


class Addr(Struct, array_like=True, frozen=True, gc=False):
    """A UDP endpoint; on the wire ``["10.0.0.1", 53002]``.

    ``gc=False``: it holds only a string and an int, so it can be in no reference cycle, and the garbage
    collector need not visit the hundreds of thousands a big server holds (registry, queued datagrams)."""

    host: Host
    port: Port

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def as_tuple(self) -> tuple[str, int]:
        return (self.host, self.port)


class PeerInfo(_SignedFields, Struct, array_like=True, frozen=True, gc=False):
    """One registered client's details: ``["client1", [pub], [priv], key]``. Not in the list (which
    holds IDs only): a client looks up the peers it talks to (:class:`Lookup`), and punching brings them."""

    id: ClientId
    pub: Addr
    priv: Addr
    key: PublicKey
    """Its public key: peers seal what they send it with the pair key (``seal.py``). (``gc=False``, as
    :class:`Addr`: strings, bytes and two Addr, no cycles.)"""
    signed: Signed | None = None
    """Its identity, as it registered it (:data:`Signed`; the server passes it on unverified, clients
    check it: ``proto/identity.py``). None in the lookup of everyone (``@show_list``), which leaves it out."""

    def unsigned(self) -> PeerInfo:
        """These details without the identity (the lookup of everyone: 9 a page instead of 4)."""
        return PeerInfo(self.id, self.pub, self.priv, self.key)


_ID = r"[A-Za-z0-9._-]{1,32}"
IdList = Annotated[str, Meta(pattern=rf"^(?:{_ID}(?: {_ID})*)?$")]
"""Client IDs separated by single spaces (IDs have none): ``"client1 client2"``. Every client receives
every ID in a join storm (O(N^2) in all), so the two bytes a JSON list would spend on each count."""
ChangeList = Annotated[str, Meta(pattern=rf"^[+-]{_ID}(?: [+-]{_ID})*$")]
"""Registry changes separated by single spaces: ``"+client1"``, client1 joined, or its details
(addresses, key) changed: look them up again if you use them; ``"-client1"``, client1 left. The sign
always comes first (IDs may contain ``-``)."""


def change(client_id: str, *, gone: bool) -> str:
    """One change as a :data:`ChangeList` writes it."""
    return ("-" if gone else "+") + client_id


class Message(Struct, tag_field="t", forbid_unknown_fields=True, kw_only=True, frozen=True):
    v: int = PROTOCOL_VERSION


Mapping = Literal["independent", "dependent"]
"""A client's mapping kind as it registers it (``birthday.MappingKind``'s values but ``unknown``)."""


# --- client -> server -------------------------------------------------------------------------------


class Register(_SignedFields, Message, tag="register", frozen=True):
    """Join (or rejoin) as ``id``. ``token`` proves it is the same session after a NAT rebinding."""

    id: ClientId
    priv: Addr
    key: PublicKey
    """The session's public key, listed with the client; a session keeps its key (``key_changed``)."""
    token: Token | None = None
    cookie: Token | None = None
    """From the server's ``challenge``: proves this source address receives what is sent to it."""
    proof: Token | None = None
    """With ``serve --secret``: a MAC under the secret of the cookie, ID and private address (auth.py)."""
    mapping: Mapping | None = None
    """How the client's NAT maps (learned by STUN to the server's two ports): ``"independent"`` (easy),
    ``"dependent"`` (hard), None: unknown (as before)."""
    spray: bool = True
    """The client takes part in birthday attempts (false with ``--no-spray``: it neither sprays nor fans out)."""
    signed: Signed | None = None
    """The client's identity key, its signature of (ID, ``key``, issued), and issued (:data:`Signed`);
    a session keeps it as it keeps its key."""


class KeepAlive(Message, tag="keepalive", frozen=True):
    id: ClientId
    token: Token
    ver: Counter
    """The registry version the client's list is at; the reply tells it whether it is behind."""
    rtt: Seconds
    """The client's smoothed round-trip time to the server (0: not measured yet)."""


class Deregister(Message, tag="deregister", frozen=True):
    id: ClientId
    token: Token


class Lookup(Message, tag="lookup", frozen=True):
    """Ask for the details (addresses and public key) of ``peers`` (None: of everyone, for ``@show_list``).

    Answered with :class:`Details` pages that echo ``q``; IDs that are not registered are left out.
    """

    id: ClientId
    token: Token
    q: Counter
    peers: Annotated[list[ClientId], Meta(min_length=1, max_length=16)] | None


class Sync(Message, tag="sync", frozen=True):
    """Ask for every registry change after version ``since``."""

    id: ClientId
    token: Token
    since: Counter


class PunchRequest(Message, tag="punch_req", frozen=True):
    """Sent from the socket that will punch: start (or join) hole-punching attempt ``attempt``.

    The server learns this socket's public address from the datagram's source.
    """

    id: ClientId
    token: Token
    peer: ClientId
    attempt: Attempt
    priv: Addr
    rtt: Seconds


# --- server -> client -------------------------------------------------------------------------------


class Registered(Message, tag="registered", frozen=True):
    id: ClientId
    token: Token
    pub: Addr
    timeout: Annotated[float, Meta(gt=0, le=86400)]
    now: Clock
    """The server's clock when it sent this (with ``alive``, lets clients estimate the clock offset)."""
    relay: bool = False
    """The server runs a midPeer relay (``serve --midpeer``, ``natchat midpeer``)."""


class Challenge(Message, tag="challenge", frozen=True):
    """Register again with this ``cookie`` (and a ``proof``, if ``secret``): the answer to a
    registration that did not show it can receive at its source address."""

    cookie: Token
    secret: bool
    alt: Port | None = None
    """The server's second port on the same address, which answers STUN Binding (None: it has none)."""


class Alive(Message, tag="alive", frozen=True):
    """Acknowledges a keepalive; ``ver`` is the server's registry version."""

    ver: Counter
    pub: Addr
    now: Clock


class Bye(Message, tag="bye", frozen=True):
    """Acknowledges a deregistration."""

    id: ClientId


class ListDelta(Message, tag="delta", frozen=True):
    """Registry changes number ``ver``, ``ver + 1``, ... (oldest first): ``"+client4 -client2"``."""

    ver: Counter
    changes: ChangeList

    def parsed(self) -> list[tuple[str, bool]]:
        """``(id, gone)`` for each change, oldest first."""
        return [(c[1:], c[0] == "-") for c in self.changes.split(" ")]


class ListPage(Message, tag="page", frozen=True):
    """Page ``index`` of ``count`` of the registry's IDs at version ``ver``, in registration order:
    ``"client1 client2"``."""

    ver: Counter
    index: Annotated[int, Meta(ge=0, le=100_000)]
    count: Annotated[int, Meta(ge=1, le=100_000)]
    peers: IdList

    def ids(self) -> list[str]:
        return self.peers.split(" ") if self.peers else []


class Details(Message, tag="details", frozen=True):
    """Page ``index`` of ``count`` of the answer to lookup ``q``: the details of the registered clients it
    asked for, as of registry version ``ver``."""

    q: Counter
    ver: Counter
    index: Annotated[int, Meta(ge=0, le=100_000)]
    count: Annotated[int, Meta(ge=1, le=100_000)]
    peers: list[PeerInfo]


class PunchInvite(Message, tag="punch_invite", frozen=True):
    """``peer`` wants to punch to you with attempt ``attempt`` from a fresh socket: join it."""

    peer: ClientId
    attempt: Attempt


Probes = Annotated[int, Meta(ge=1, le=1024)]
FanSockets = Annotated[int, Meta(ge=1, le=256)]
Rate = Annotated[float, Meta(gt=0, le=4000)]
Resend = Annotated[float, Meta(ge=0.05, le=1)]
Life = Annotated[float, Meta(ge=0, le=5)]


class SprayPlan(Struct, array_like=True, tag="spray", frozen=True, forbid_unknown_fields=True):
    """``["spray", probes, rate, life]``, to the easy side of a birthday attempt: from the socket this
    arrived on, from ``at``, probe ``probes`` distinct random ports of ``peer.pub``'s host, at most
    ``rate`` a second, until ``at + life``."""

    probes: Probes
    rate: Rate
    life: Life


class FanOutPlan(Struct, array_like=True, tag="fan_out", frozen=True, forbid_unknown_fields=True):
    """``["fan_out", sockets, rate, resend, life]``, to the hard side: from ``at``, open ``sockets`` fresh
    sockets (at most ``rate`` a second), each probing ``peer.pub`` when it opens and every ``resend``
    seconds until ``at + life``."""

    sockets: FanSockets
    rate: Rate
    resend: Resend
    life: Life


class RelayPlan(Struct, array_like=True, tag="relay", frozen=True, forbid_unknown_fields=True):
    """``["relay"]``, to both sides: do not punch; relay now, without waiting for ``--relay-after``."""


Plan = SprayPlan | FanOutPlan | RelayPlan


class PunchGo(Message, tag="punch_go", frozen=True):
    """Start punching toward ``peer`` from the socket this arrived on, at the server's time ``at``.

    ``peer.pub`` is the address the server saw the peer's punching socket at. Both peers get the same
    ``at``, far enough ahead for both to have this by then; each converts it to its own clock.
    """

    peer: PeerInfo
    attempt: Attempt
    at: Clock
    plan: Plan | None = None
    """None: today's scheduled punch. Otherwise this side's part of a birthday attempt, or relay at once."""
    rtt: Seconds = 0.0
    """The slower of the two peers' round trips to the server: a probe between them takes at most about
    that long, so an attempt lasts as many round trips of it as of the receiver's own."""


class Error(Message, tag="error", frozen=True):
    code: Annotated[str, Meta(max_length=32)]
    msg: Annotated[str, Meta(max_length=300)]
    peer: ClientId | None = None
    """The peer the error is about (``unknown_peer``), None for the others: the text is for people."""


# --- peer <-> peer ----------------------------------------------------------------------------------


class Probe(Message, tag="probe", frozen=True):
    """Hole-punching probe; answered with ``ack`` true. Either direction arriving opens the path."""

    src: ClientId
    dst: ClientId
    attempt: Attempt
    n: Nonce
    tag: Tag
    """Seals nothing but authenticates the rest (:func:`sealed_header`) under the pair key."""
    ack: bool = False
    ping: Counter = 0
    """Non-zero: a round-trip measurement (``@path``); the answer echoes it."""


class Chat(Message, tag="chat", frozen=True):
    """Message ``seq`` of stream ``stream`` from ``src`` to ``dst``. Streams start at seq 1.

    ``base`` is the lowest seq the sender has not seen acknowledged: everything before it was shown. A
    receiver that lost its state (it restarted, or the peer briefly left its list) resumes there.
    ``group``: the sender sent this text to everyone (``@all``), one copy to each peer.
    ``box``: the text, sealed with the pair key and nonce ``n``; the other fields are authenticated.
    """

    src: ClientId
    dst: ClientId
    stream: Counter
    base: Counter
    seq: Counter
    group: bool
    n: Nonce
    box: Box


class ChatAck(Message, tag="chat_ack", frozen=True):
    src: ClientId
    dst: ClientId
    stream: Counter
    seq: Counter
    n: Nonce
    tag: Tag


Sealed = Probe | Chat | ChatAck
"""What peers send each other: sealed (``seal.py``), directly or through a relay."""


# --- client <-> midPeer relay ------------------------------------------------------------------------


class Relay(Message, tag="relay", frozen=True):
    """Client -> midPeer: forward ``data`` (one peer-to-peer datagram: ``chat``, ``chat_ack`` or
    ``probe``) to the registered client ``dst``. The midPeer does not look inside."""

    id: ClientId
    token: Token
    dst: ClientId
    data: msgspec.Raw


class Relayed(Message, tag="relayed", frozen=True):
    """midPeer -> client: ``data`` from the registered client ``src`` (the midPeer checked its token)."""

    src: ClientId
    data: msgspec.Raw


AnyMessage = (
    Register
    | KeepAlive
    | Deregister
    | Sync
    | Lookup
    | PunchRequest
    | Registered
    | Challenge
    | Alive
    | Bye
    | ListDelta
    | ListPage
    | Details
    | PunchInvite
    | PunchGo
    | Error
    | Probe
    | Chat
    | ChatAck
    | Relay
    | Relayed
)


def encode(msg: Message) -> bytes:
    """Serialize ``msg``; raises :class:`WireError` if it would exceed :data:`MAX_DATAGRAM`."""
    return _codec.encode(msg)


def sealed_header(msg: Sealed) -> bytes:
    """The associated data a peer-to-peer datagram is sealed with: the message in JSON with its nonce and
    its box or tag left empty. Every other field (``v``, ``t``, IDs, counters, flags) is authenticated."""
    if isinstance(msg, Chat):
        return to_json(msgspec.structs.replace(msg, n=b"", box=b""))
    return to_json(msgspec.structs.replace(msg, n=b"", tag=b""))


def encoded_size(obj: object) -> int:
    """Bytes ``obj`` takes in JSON (used to pack lists into datagrams)."""
    return len(to_json(obj))


def _check_addr(addr: Addr) -> None:
    try:
        ipaddress.ip_address(addr.host)
    except ValueError:
        raise WireError(f"not an IP address: {addr.host!r}") from None


def _check_addresses(msg: AnyMessage) -> None:
    for addr in _addresses(msg):
        _check_addr(addr)


_codec: StrictCodec[AnyMessage] = StrictCodec(
    AnyMessage, version=PROTOCOL_VERSION, max_size=MAX_DATAGRAM, check=_check_addresses
)


def decode(data: bytes) -> AnyMessage:
    """Parse one datagram strictly; raises :class:`WireError` with the reason on any defect."""
    return _codec.decode_untrusted(data)


def _addresses(msg: AnyMessage) -> list[Addr]:
    match msg:
        case Register(priv=a) | PunchRequest(priv=a) | Registered(pub=a) | Alive(pub=a):
            return [a]
        case PunchGo(peer=p):
            return [p.pub, p.priv]
        case Details(peers=peers):
            return [a for p in peers for a in (p.pub, p.priv)]
        case _:
            return []
