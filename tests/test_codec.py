"""The strict codec both wire formats share (natchat/proto/codec.py), on a small message union of its
own, and the two formats built on it (natchat/proto/wire.py, natchat/proto/probe/wire.py)."""

from __future__ import annotations

from typing import Annotated

import msgspec
import pytest
from msgspec import Meta, Struct

from natchat.proto import probe, wire
from natchat.proto.codec import StrictCodec, WireError


class Msg(Struct, tag_field="t", forbid_unknown_fields=True, kw_only=True, frozen=True):
    v: int = 7


class Ping(Msg, tag="ping", frozen=True):
    n: Annotated[int, Meta(ge=0)]


class Text(Msg, tag="text", frozen=True):
    s: str


def no_secrets(msg: Ping | Text) -> None:
    if isinstance(msg, Text) and "secret" in msg.s:
        raise WireError("secret text")


codec: StrictCodec[Ping | Text] = StrictCodec(Ping | Text, version=7, max_size=64, check=no_secrets)


def test_round_trip() -> None:
    data = codec.encode(Ping(n=3))
    assert data == b'{"t":"ping","n":3,"v":7}'
    assert codec.decode_untrusted(data) == Ping(n=3)
    assert codec.decode_untrusted(codec.encode(Text(s="h\u00e9"))) == Text(s="h\u00e9")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"t":"ping","n":3,"v":8}', "unsupported protocol version 8"),
        (b'{"t":"ping","n":3}', "missing required field `v`"),
        (b'{"t":"ping","n":-1,"v":7}', "Expected `int` >= 0"),
        (b'{"t":"ping","n":1,"x":0,"v":7}', "unknown field `x`"),
        (b'{"t":"pong","v":7}', "Invalid value 'pong'"),
        (b'{"t":"text","s":"\xff","v":7}', "not UTF-8"),
        (b'{"t":"text","s":"' + b"a" * 60 + b'","v":7}', "datagram of 85 bytes is over 64"),
        (b'{"t":"text","s":"a secret","v":7}', "secret text"),
        (b'{"t":"ping"', "truncated"),
    ],
)
def test_every_defect_is_a_wire_error_with_its_reason(data: bytes, reason: str) -> None:
    with pytest.raises(WireError, match=reason):
        codec.decode_untrusted(data)


def test_nothing_over_the_limit_is_encoded() -> None:
    with pytest.raises(WireError, match=r"^Text is \d+ bytes, over 64$"):
        codec.encode(Text(s="a" * 64))


def test_peeking_reads_the_type_of_any_version_and_never_raises() -> None:
    assert codec.peek_type_untrusted(b'{"v":1,"t":"whatever","x":[1]}') == "whatever"
    for junk in (b"", b"\xff\xfe", b"[1]", b'{"t":1,"v":1}', b'{"v":1,"t":"ping"', b'{"v":1,"t":"' + b"a" * 64 + b'"}'):
        assert codec.peek_type_untrusted(junk) is None


def test_both_formats_share_the_checks() -> None:
    for decode in (wire.decode, probe.decode):
        with pytest.raises(WireError, match=r"^not UTF-8$"):
            decode(b'{"v":1,"t":"x","s":"\xc3\x28"}')
        with pytest.raises(WireError, match=r"^datagram of 1201 bytes is over 1200$"):
            decode(b" " * 1201)
    with pytest.raises(WireError, match="unsupported protocol version 1"):
        wire.decode(probe.encode(probe.Hello(n=1)))
    with pytest.raises(WireError, match=f"unsupported protocol version {wire.PROTOCOL_VERSION}"):
        probe.decode(wire.encode(wire.Bye(id="a")))


def test_only_the_chat_format_checks_addresses() -> None:
    bad = wire.Alive(ver=1, pub=wire.Addr("not-an-ip", 5), now=0.0)
    with pytest.raises(WireError, match="not an IP address: 'not-an-ip'"):
        wire.decode(msgspec.json.encode(bad))
    mapped = probe.Mapped(sid="0" * 32, n=1, pub=wire.Addr("not-an-ip", 5))
    assert probe.decode(probe.encode(mapped)) == mapped  # the prober compares addresses, never uses them
