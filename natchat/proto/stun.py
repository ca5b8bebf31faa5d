"""STUN Binding (RFC 5389) answering, without I/O.

``natchat serve`` answers standard STUN Binding Requests on its main port, so any STUN client (a
browser's ICE agent, ``turnutils_stunclient``, ``stunclient``) learns its public address from it. The
server's socket carries natchat's JSON datagrams too; the two are told apart by the STUN header:
a STUN message starts with two zero bits and has the magic cookie ``0x2112A442`` at bytes 4-8, while
every natchat datagram starts with ``{`` (``0x7B``, first bits ``01``). :func:`is_stun` is that test.

What the server does with a STUN message (:func:`binding_response`), following RFC 5389 section 7.3:

* not well formed (length not a multiple of 4 or not matching the datagram, an attribute running past
  the end, anything after FINGERPRINT, a wrong FINGERPRINT) -> silently discarded;
* an indication, or a response -> ignored (a server only answers requests);
* a request with an unknown comprehension-required attribute (type below ``0x8000``) -> ``420
  Unknown Attribute`` listing them. This includes RFC 5780's CHANGE-REQUEST: the behaviour discovery
  it asks for is what ``natchat probe-mapping`` does with its own messages, and RFC 5780 expects a
  server without it to say 420;
* a request of another method -> ``400 Bad Request``;
* a Binding Request -> Binding Success Response with XOR-MAPPED-ADDRESS (the request's source,
  IPv4 or IPv6), SOFTWARE and FINGERPRINT, and the request's transaction ID.

No authentication: MESSAGE-INTEGRITY and USERNAME are understood (so they cause no 420) and ignored.
The answer goes to the request's source only and is never more than twice the request's size on the
wire (IP and UDP headers included: 28 bytes over IPv4, 48 over IPv6), which is what a reflection
attack multiplies: SOFTWARE (and an error's reason text) is left out when it would not fit. A bare
20-byte request gets its 52-byte answer (IPv4: 48 bytes on the wire become 80; IPv6: 68 become 112,
under 136). Nothing is ever sent unasked.
"""

from __future__ import annotations

import ipaddress
import struct
import zlib
from dataclasses import dataclass
from typing import Final

from .wire import Addr

MAGIC_COOKIE: Final = 0x2112A442
IP_UDP_HEADERS: Final = {False: 28, True: 48}
"""Bytes of IPv4 (False) or IPv6 (True) and UDP headers around every datagram."""
HEADER_SIZE: Final = 20
FINGERPRINT_XOR: Final = 0x5354554E
"""FINGERPRINT is the CRC-32 of the message up to it, XORed with this ("STUN")."""

BINDING: Final = 0x001
"""The only STUN method natchat serves."""

# Message classes (RFC 5389 section 6: the class bits C1 C0 sit at bits 8 and 4 of the type).
REQUEST: Final = 0b00
INDICATION: Final = 0b01
SUCCESS: Final = 0b10
ERROR: Final = 0b11

# Attribute types.
MAPPED_ADDRESS: Final = 0x0001
USERNAME: Final = 0x0006
MESSAGE_INTEGRITY: Final = 0x0008
ERROR_CODE: Final = 0x0009
UNKNOWN_ATTRIBUTES: Final = 0x000A
REALM: Final = 0x0014
NONCE: Final = 0x0015
XOR_MAPPED_ADDRESS: Final = 0x0020
SOFTWARE: Final = 0x8022
FINGERPRINT: Final = 0x8028

KNOWN_REQUIRED: Final = frozenset(
    {MAPPED_ADDRESS, USERNAME, MESSAGE_INTEGRITY, ERROR_CODE, UNKNOWN_ATTRIBUTES, REALM, NONCE, XOR_MAPPED_ADDRESS}
)
"""Comprehension-required attributes (type < 0x8000) this server understands; others get a 420."""

SOFTWARE_NAME: Final = b"natchat"

_FAMILY_IPV4: Final = 0x01
_FAMILY_IPV6: Final = 0x02


class StunError(ValueError):
    """Bytes that are not a well-formed STUN message (the text says why)."""


@dataclass(frozen=True, slots=True)
class StunMessage:
    """A parsed STUN message: its method and class, transaction ID and attributes in order."""

    method: int
    cls: int
    transaction_id: bytes
    attributes: tuple[tuple[int, bytes], ...]
    fingerprint: bool
    """True when the message carried a (valid) FINGERPRINT."""

    def attribute(self, attr_type: int) -> bytes | None:
        """The value of the first attribute of ``attr_type`` (RFC 5389: later duplicates are ignored)."""
        return next((value for t, value in self.attributes if t == attr_type), None)


def is_stun(data: bytes) -> bool:
    """Whether a datagram is STUN (RFC 5389 section 6): first two bits zero and the magic cookie.

    This only decides *where* the datagram goes; whether it is well formed is :func:`parse`'s business.
    """
    return len(data) >= HEADER_SIZE and data[0] & 0xC0 == 0 and data[4:8] == MAGIC_COOKIE.to_bytes(4, "big")


def _split_type(msg_type: int) -> tuple[int, int]:
    """(method, class) of a 14-bit message type: M11..M7 C1 M6..M4 C0 M3..M0."""
    cls = ((msg_type >> 7) & 0b10) | ((msg_type >> 4) & 0b01)
    method = (msg_type & 0x000F) | ((msg_type >> 1) & 0x0070) | ((msg_type >> 2) & 0x0F80)
    return method, cls


def _join_type(method: int, cls: int) -> int:
    return (
        (method & 0x000F)
        | ((method & 0x0070) << 1)
        | ((method & 0x0F80) << 2)
        | ((cls & 0b01) << 4)
        | ((cls & 0b10) << 7)
    )


def fingerprint(data: bytes) -> int:
    """The FINGERPRINT value for a message whose bytes, up to the FINGERPRINT attribute, are ``data``.

    ``data``'s length field must already count the FINGERPRINT attribute (8 bytes).
    """
    return (zlib.crc32(data) & 0xFFFFFFFF) ^ FINGERPRINT_XOR


def parse(data: bytes) -> StunMessage:
    """Parse a STUN message strictly; raises :class:`StunError` on any defect."""
    if not is_stun(data):
        raise StunError("no STUN header (two zero bits and the magic cookie)")
    msg_type, length = struct.unpack_from("!HH", data, 0)
    if length % 4 or HEADER_SIZE + length != len(data):
        raise StunError(f"length field {length} does not fit a datagram of {len(data)} bytes")
    method, cls = _split_type(msg_type)
    attributes: list[tuple[int, bytes]] = []
    has_fingerprint = False
    pos = HEADER_SIZE
    while pos < len(data):
        if has_fingerprint:
            raise StunError("attribute after FINGERPRINT")
        if pos + 4 > len(data):
            raise StunError("truncated attribute header")
        attr_type, attr_len = struct.unpack_from("!HH", data, pos)
        end = pos + 4 + attr_len
        if end > len(data):
            raise StunError(f"attribute 0x{attr_type:04x} runs past the end")
        value = data[pos + 4 : end]
        if attr_type == FINGERPRINT:
            if attr_len != 4:
                raise StunError("FINGERPRINT is not 4 bytes")
            if int.from_bytes(value, "big") != fingerprint(data[:pos]):
                raise StunError("wrong FINGERPRINT")
            has_fingerprint = True
        attributes.append((attr_type, value))
        pos = end + (-attr_len % 4)
    if pos != len(data):
        raise StunError("padding runs past the end")
    return StunMessage(method, cls, data[8:20], tuple(attributes), has_fingerprint)


def _xor_key(transaction_id: bytes) -> bytes:
    return MAGIC_COOKIE.to_bytes(4, "big") + transaction_id


def encode_xor_address(addr: Addr, transaction_id: bytes) -> bytes:
    """The value of an XOR-MAPPED-ADDRESS attribute for ``addr`` (RFC 5389 section 15.2)."""
    ip = ipaddress.ip_address(addr.host)
    family = _FAMILY_IPV4 if ip.version == 4 else _FAMILY_IPV6
    key = _xor_key(transaction_id)
    packed = bytes(a ^ b for a, b in zip(ip.packed, key, strict=False))
    return struct.pack("!BBH", 0, family, addr.port ^ (MAGIC_COOKIE >> 16)) + packed


def decode_xor_address(value: bytes, transaction_id: bytes) -> Addr:
    """The address an XOR-MAPPED-ADDRESS value carries; raises :class:`StunError` if malformed."""
    if len(value) < 4:
        raise StunError("XOR-MAPPED-ADDRESS too short")
    _, family, xport = struct.unpack_from("!BBH", value, 0)
    size = {_FAMILY_IPV4: 4, _FAMILY_IPV6: 16}.get(family)
    if size is None or len(value) != 4 + size:
        raise StunError(f"XOR-MAPPED-ADDRESS of family {family} and {len(value)} bytes")
    raw = bytes(a ^ b for a, b in zip(value[4:], _xor_key(transaction_id), strict=False))
    host = ipaddress.ip_address(raw)
    return Addr(str(host), xport ^ (MAGIC_COOKIE >> 16))


def encode(method: int, cls: int, transaction_id: bytes, attributes: list[tuple[int, bytes]]) -> bytes:
    """A STUN message with ``attributes`` (padded to 4 bytes each) and a FINGERPRINT at the end."""
    body = b"".join(
        struct.pack("!HH", attr_type, len(value)) + value + b"\0" * (-len(value) % 4) for attr_type, value in attributes
    )
    header = struct.pack("!HHI", _join_type(method, cls), len(body) + 8, MAGIC_COOKIE) + transaction_id
    unsigned = header + body
    return unsigned + struct.pack("!HHI", FINGERPRINT, 4, fingerprint(unsigned))


def binding_request(transaction_id: bytes) -> bytes:
    """A Binding Request with the given 12-byte transaction ID (the caller draws it at random)."""
    if len(transaction_id) != 12:
        raise ValueError("a STUN transaction ID is 12 bytes")
    return encode(BINDING, REQUEST, transaction_id, [])


def _error(method: int, transaction_id: bytes, code: int, reason: str, extra: list[tuple[int, bytes]]) -> list[bytes]:
    value = struct.pack("!HBB", 0, code // 100, code % 100) + reason.encode()
    return [
        encode(method, ERROR, transaction_id, [(ERROR_CODE, value), *extra, (SOFTWARE, SOFTWARE_NAME)]),
        encode(method, ERROR, transaction_id, [(ERROR_CODE, struct.pack("!HBB", 0, code // 100, code % 100)), *extra]),
    ]


def binding_response(data: bytes, source: Addr) -> bytes | None:
    """What to send back to ``source`` for the STUN message ``data``, or None to send nothing.

    See the module docstring for the rules; ``source`` is the address the datagram came from, which
    the success response reports as XOR-MAPPED-ADDRESS.
    """
    try:
        msg = parse(data)
    except StunError:
        return None
    if msg.cls != REQUEST:
        return None
    # No amplification: on the wire, the answer is at most twice the request. Each answer below comes
    # in decreasing sizes (without SOFTWARE, without the reason text); the first that fits is sent, or none.
    unknown = sorted({t for t, _ in msg.attributes if t < 0x8000 and t not in KNOWN_REQUIRED})
    if unknown:
        listing = b"".join(t.to_bytes(2, "big") for t in unknown)
        answers = _error(msg.method, msg.transaction_id, 420, "Unknown Attribute", [(UNKNOWN_ATTRIBUTES, listing)])
    elif msg.method != BINDING:
        answers = _error(msg.method, msg.transaction_id, 400, "Bad Request: only Binding is served here", [])
    else:
        mapped = (XOR_MAPPED_ADDRESS, encode_xor_address(source, msg.transaction_id))
        answers = [
            encode(BINDING, SUCCESS, msg.transaction_id, [mapped, (SOFTWARE, SOFTWARE_NAME)]),
            encode(BINDING, SUCCESS, msg.transaction_id, [mapped]),
        ]
    headers = IP_UDP_HEADERS[":" in source.host]
    limit = 2 * (len(data) + headers) - headers  # on the wire, at most twice the request
    return next((answer for answer in answers if len(answer) <= limit), None)
