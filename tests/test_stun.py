"""STUN Binding (RFC 5389) on natchat's server port: the codec against RFC 5769's test vectors, the
answering rules, and a real third-party client (coturn's ``turnutils_stunclient``) against ``serve``."""

from __future__ import annotations

import re
import shutil
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from natchat.net import to_addr
from natchat.proto import stun
from natchat.proto.wire import Addr
from natchat.server import ServerConfig, serve

from .procs import has_ipv6_loopback

# RFC 5769 section 2: test vectors (transaction ID b7e7a701bc34d686fa87dfae).
TXID = bytes.fromhex("b7e7a701bc34d686fa87dfae")
SAMPLE_REQUEST = bytes.fromhex(
    "000100582112a442b7e7a701bc34d686fa87dfae"
    "80220010" + b"STUN test client".hex() + "00240004"
    "6e0001ff"
    "80290008932ff9b151263b36"
    "000600096576746a3a6836765920202000080014"
    "9aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2"
    "80280004e57a3bcf"
)
SAMPLE_IPV4_RESPONSE = bytes.fromhex(
    "0101003c2112a442b7e7a701bc34d686fa87dfae"
    "8022000b7465737420766563746f7220"
    "002000080001a147e112a643"
    "000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7"
    "80280004c07d4c96"
)
SAMPLE_IPV6_RESPONSE = bytes.fromhex(
    "010100482112a442b7e7a701bc34d686fa87dfae"
    "8022000b7465737420766563746f7220"
    "002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d9"
    "00080014a382954e4be67bf11784c97c8292c275bfe3ed41"
    "80280004c8fb0b4c"
)
SOURCE = Addr("10.0.0.1", 40000)


# --- the codec --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", [SAMPLE_REQUEST, SAMPLE_IPV4_RESPONSE, SAMPLE_IPV6_RESPONSE])
def test_rfc5769_vectors_parse_with_their_fingerprint(vector: bytes) -> None:
    assert stun.is_stun(vector)
    msg = stun.parse(vector)
    assert msg.transaction_id == TXID
    assert msg.fingerprint
    assert msg.method == stun.BINDING


@pytest.mark.parametrize(
    ("vector", "addr"),
    [
        (SAMPLE_IPV4_RESPONSE, Addr("192.0.2.1", 32853)),
        (SAMPLE_IPV6_RESPONSE, Addr("2001:db8:1234:5678:11:2233:4455:6677", 32853)),
    ],
)
def test_xor_mapped_address_matches_rfc5769(vector: bytes, addr: Addr) -> None:
    msg = stun.parse(vector)
    assert msg.cls == stun.SUCCESS
    value = msg.attribute(stun.XOR_MAPPED_ADDRESS)
    assert value is not None
    assert stun.decode_xor_address(value, TXID) == addr
    assert stun.encode_xor_address(addr, TXID) == value


@pytest.mark.parametrize("source", [SOURCE, Addr("2001:db8::7", 65535), Addr("127.0.0.1", 1)])
def test_binding_request_gets_its_source_as_xor_mapped_address(source: Addr) -> None:
    txid = bytes(range(12))
    answer = stun.binding_response(stun.binding_request(txid), source)
    assert answer is not None
    msg = stun.parse(answer)  # well formed, FINGERPRINT valid
    assert (msg.method, msg.cls, msg.transaction_id) == (stun.BINDING, stun.SUCCESS, txid)
    assert msg.fingerprint
    value = msg.attribute(stun.XOR_MAPPED_ADDRESS)
    assert value is not None and stun.decode_xor_address(value, txid) == source
    assert msg.attribute(stun.SOFTWARE) == b"natchat"
    assert len(answer) <= 64


def on_wire(size: int, source: Addr) -> int:
    return size + (48 if ":" in source.host else 28)


@pytest.mark.parametrize("source", [SOURCE, Addr("2001:db8::7", 65535)])
def test_answers_are_never_more_than_twice_the_request_on_the_wire(source: Addr) -> None:
    txid = bytes(range(12))
    header = stun.binding_request(txid)[:20]
    bare = header[:2] + b"\0\0" + header[4:]  # a Binding request with no attributes at all: 20 bytes
    long_reason = stun.encode(0x0FF, stun.REQUEST, txid, [])  # another method: a 400 with a reason
    for request in (bare, SAMPLE_REQUEST, stun.binding_request(txid), long_reason):
        answer = stun.binding_response(request, source)
        assert answer is not None
        assert on_wire(len(answer), source) <= 2 * on_wire(len(request), source)


def test_unknown_comprehension_required_attributes_get_420_listing_them() -> None:
    # RFC 5769's sample request carries ICE's PRIORITY (0x0024): not for a plain STUN server.
    answer = stun.binding_response(SAMPLE_REQUEST, SOURCE)
    assert answer is not None
    msg = stun.parse(answer)
    assert (msg.cls, msg.transaction_id) == (stun.ERROR, TXID)
    code = msg.attribute(stun.ERROR_CODE)
    assert code is not None and code[2:4] == bytes([4, 20])
    assert msg.attribute(stun.UNKNOWN_ATTRIBUTES) == b"\x00\x24"


def test_comprehension_optional_and_understood_attributes_are_fine() -> None:
    txid = b"x" * 12
    request = stun.encode(
        stun.BINDING, stun.REQUEST, txid, [(stun.USERNAME, b"user"), (0x8029, b"12345678"), (stun.SOFTWARE, b"c")]
    )
    answer = stun.binding_response(request, SOURCE)
    assert answer is not None and stun.parse(answer).cls == stun.SUCCESS


def test_other_methods_get_400() -> None:
    answer = stun.binding_response(stun.encode(0x003, stun.REQUEST, b"y" * 12, []), SOURCE)  # TURN Allocate
    assert answer is not None
    msg = stun.parse(answer)
    assert (msg.method, msg.cls) == (0x003, stun.ERROR)
    code = msg.attribute(stun.ERROR_CODE)
    assert code is not None and code[2:4] == bytes([4, 0])


def _corrupt(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


def _with_length(data: bytes, length: int) -> bytes:
    return data[:2] + struct.pack("!H", length) + data[4:]


def _after_fingerprint() -> bytes:
    """A request with a valid FINGERPRINT followed by one more (SOFTWARE) attribute."""
    header = struct.pack("!HHI", 0x0001, 12, stun.MAGIC_COOKIE) + b"f" * 12
    return header + struct.pack("!HHI", stun.FINGERPRINT, 4, stun.fingerprint(header)) + b"\x80\x22\x00\x00"


@pytest.mark.parametrize(
    "data",
    [
        _corrupt(SAMPLE_REQUEST, 30),  # FINGERPRINT no longer matches
        _with_length(stun.binding_request(b"z" * 12), 4),  # length beyond the datagram
        stun.binding_request(b"z" * 12) + b"\0\0\0\0",  # datagram beyond the length
        _with_length(stun.binding_request(b"z" * 12)[:20] + b"\x00\x06\x00\x10abcd", 8),  # attribute past the end
        _after_fingerprint(),
        stun.encode(stun.BINDING, stun.INDICATION, b"i" * 12, []),  # indications get no answer
        SAMPLE_IPV4_RESPONSE,  # responses neither
    ],
)
def test_malformed_and_non_requests_are_silently_ignored(data: bytes) -> None:
    assert stun.binding_response(data, SOURCE) is None


def test_stun_is_told_from_natchat_json() -> None:
    assert stun.is_stun(stun.binding_request(b"a" * 12))
    assert not stun.is_stun(b'{"t":"register","v":2,"id":"a","priv":["1.2.3.4",5]}')
    assert not stun.is_stun(b"\x00\x01\x00\x00" + b"\x21\x12\xa4\x43" + bytes(12))  # wrong cookie
    assert not stun.is_stun(b"\x40\x01\x00\x00" + b"\x21\x12\xa4\x42" + bytes(12))  # first bits not zero
    assert not stun.is_stun(b"\x00\x01\x00\x00\x21\x12\xa4\x42")  # shorter than a header


@given(st.binary(max_size=200))
def test_any_bytes_after_a_stun_header_never_crash_the_responder(tail: bytes) -> None:
    data = struct.pack("!HHI", 0x0001, len(tail) & 0xFFFC, stun.MAGIC_COOKIE) + b"t" * 12 + tail
    answer = stun.binding_response(data, SOURCE)
    assert answer is None or stun.parse(answer).transaction_id == b"t" * 12


# --- natchat serve answers STUN on its port ---------------------------------------------------------------


def _ignore(_: object) -> None:
    pass


@pytest.fixture
async def server(nursery: trio.Nursery) -> AsyncIterator[Addr]:
    yield await nursery.start(serve, ServerConfig(host="127.0.0.1", port=0), _ignore)


async def test_serve_answers_a_binding_request_with_the_senders_address(server: Addr) -> None:
    with trio.fail_after(10), trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        await sock.bind(("127.0.0.1", 0))
        me = to_addr(sock.getsockname())
        txid = b"natchat-test"
        await sock.sendto(stun.binding_request(txid), server.as_tuple())
        data, source = await sock.recvfrom(2048)
    assert to_addr(source) == server
    msg = stun.parse(data)
    value = msg.attribute(stun.XOR_MAPPED_ADDRESS)
    assert msg.transaction_id == txid and value is not None
    assert stun.decode_xor_address(value, txid) == me


# --- a third-party STUN client ----------------------------------------------------------------------------

STUNCLIENT = shutil.which("turnutils_stunclient")
needs_stunclient = pytest.mark.skipif(
    STUNCLIENT is None, reason="turnutils_stunclient not installed (Debian package: coturn)"
)


async def _relay(
    front: trio.socket.SocketType, back: trio.socket.SocketType, target: Addr, *, task_status: trio.TaskStatus[None]
) -> None:
    """A one-client userspace NAT: what arrives on ``front`` goes to ``target`` from ``back``, and back.

    The STUN server then sees ``back``'s address, a port this test knows, unlike the client's own."""
    client: list[Any] = []

    async def outward() -> None:
        while True:
            data, source = await front.recvfrom(2048)
            client[:] = [source]
            await back.sendto(data, target.as_tuple())

    async def inward() -> None:
        while True:
            data, _ = await back.recvfrom(2048)
            if client:
                await front.sendto(data, client[0])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(outward)
        nursery.start_soon(inward)
        task_status.started()


@needs_stunclient
@pytest.mark.parametrize(
    ("host", "family"),
    [
        ("127.0.0.1", socket.AF_INET),
        pytest.param(
            "::1",
            socket.AF_INET6,
            marks=pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback here"),
        ),
    ],
)
async def test_turnutils_stunclient_learns_its_mapped_address_from_serve(host: str, family: int) -> None:
    assert STUNCLIENT is not None
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve, ServerConfig(host=host, port=0), _ignore)
            with (
                trio.socket.socket(family, socket.SOCK_DGRAM) as front,
                trio.socket.socket(family, socket.SOCK_DGRAM) as back,
            ):
                await front.bind((host, 0))
                await back.bind((host, 0))
                await nursery.start(_relay, front, back, server)
                mapped = to_addr(back.getsockname())
                result = await trio.run_process(
                    [STUNCLIENT, "-p", str(front.getsockname()[1]), host],
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                )
                nursery.cancel_scope.cancel()  # before the relay's sockets close under it
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()
    # e.g. "0: : IPv4. UDP reflexive addr: 127.0.0.1:54595"
    found = re.findall(r"UDP reflexive addr: (\S+):(\d+)", out)
    assert found, out
    assert {(ip, int(port)) for ip, port in found} == {(mapped.host, mapped.port)}
