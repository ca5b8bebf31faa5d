"""The wire format: strict decoding, nothing but WireError escapes, and every message round-trips."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from natchat.proto import wire
from natchat.proto.server import RendezvousServer
from natchat.proto.wire import Addr, PeerInfo

from .sim import tokens
from .test_proto_server import KEY, registration

PUB = bytes(range(32))
PEER = PeerInfo("client1", Addr("10.0.0.1", 53002), Addr("192.168.1.2", 10081), PUB)
TOKEN = "0123456789abcdef" * 2
SAMPLES: list[wire.Message] = [
    wire.Register(id="client1", priv=Addr("192.168.1.2", 10081), key=PUB),
    wire.Register(id="client1", priv=Addr("::1", 10081), key=PUB, token=TOKEN),
    wire.KeepAlive(id="c", token=TOKEN, ver=7, rtt=0.012),
    wire.Deregister(id="c", token=TOKEN),
    wire.Sync(id="c", token=TOKEN, since=3),
    wire.PunchRequest(id="c", token=TOKEN, peer="d", attempt=2, priv=Addr("192.168.1.2", 4000), rtt=0.0),
    wire.Registered(id="c", token=TOKEN, pub=Addr("10.0.0.1", 1), timeout=30.0, now=123456.5),
    wire.Alive(ver=1, pub=Addr("10.0.0.1", 1), now=-5.25),
    wire.Bye(id="c"),
    wire.ListDelta(ver=1, changes="+client1 -client-2"),
    wire.ListPage(ver=2, index=0, count=1, peers="client1 b"),
    wire.ListPage(ver=2, index=0, count=1, peers=""),
    wire.Lookup(id="c", token=TOKEN, q=0, peers=["a", "b"]),
    wire.Lookup(id="c", token=TOKEN, q=5, peers=None),
    wire.Details(q=5, ver=2, index=0, count=1, peers=[PEER]),
    wire.PunchInvite(peer="d", attempt=3),
    wire.PunchGo(peer=PEER, attempt=1, at=99.5),
    wire.Error(code="id_taken", msg="taken"),
    wire.Probe(src="a", dst="b", attempt=1, n=bytes(12), tag=bytes(16), ack=True),
    wire.Chat(src="a", dst="b", stream=99, base=1, seq=1, group=False, n=bytes(12), box=b"sealed hello there"),
    wire.ChatAck(src="a", dst="b", stream=99, seq=1, n=bytes(12), tag=bytes(16)),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips_with_version_and_type(msg: wire.Message) -> None:
    data = wire.encode(msg)
    obj = json.loads(data)
    assert obj["v"] == wire.PROTOCOL_VERSION and obj["t"] == msg.__struct_config__.tag
    assert wire.decode(data) == msg


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xc3\x28", "not UTF-8"),
        (b"{", "truncated"),
        (b'{"t":"chat","v":3}', "missing required field"),
        (b'{"t":"bye","id":"a"}', "missing required field `v`"),
        (b'{"t":"bye","v":1,"id":"a"}', "unsupported protocol version 1"),
        (b'{"t":"bye","v":3,"id":"a","extra":1}', "unknown field"),
        (b'{"t":"bye","v":3,"id":"has space"}', "regex"),
        (b'{"t":"bye","v":3,"id":"' + b"a" * 33 + b'"}', "regex"),
        (b'{"t":"bye","v":3,"id":""}', "regex"),
        (b'{"t":"bye","v":3,"id":7}', "Expected `str`"),
        (
            b'{"t":"register","v":3,"id":"a","priv":["10.0.0.300",1],"key":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}',
            "not an IP address",
        ),
        (b'{"t":"register","v":3,"id":"a","priv":["10.0.0.3",1],"key":"AAEC"}', "length >= 32"),
        (b'{"t":"register","v":3,"id":"a","priv":["10.0.0.3",70000]}', "<= 65535"),
        (b'{"t":"steal","v":3}', "Invalid value 'steal'"),
        (b" " * 1201, "over 1200"),
    ],
)
def test_strict_decoding_says_why(data: bytes, reason: str) -> None:
    with pytest.raises(wire.WireError, match=reason.replace("(", r"\(")):
        wire.decode(data)


def test_oversize_message_is_never_encoded() -> None:
    with pytest.raises(wire.WireError, match="over 1200"):
        wire.encode(wire.Chat(src="a", dst="b", stream=1, base=1, seq=1, group=True, n=bytes(12), box=bytes(900)))


def mutations() -> st.SearchStrategy[bytes]:
    sample = st.sampled_from([wire.encode(m) for m in SAMPLES])
    flip = st.tuples(sample, st.integers(0, 2000), st.integers(0, 255)).map(
        lambda t: t[0][: t[1] % len(t[0])] + bytes([t[2]]) + t[0][t[1] % len(t[0]) + 1 :]
    )
    cut = st.tuples(sample, st.integers(0, 2000)).map(lambda t: t[0][: t[1] % len(t[0])])
    return st.one_of(st.binary(max_size=1400), flip, cut, sample)


@settings(max_examples=500, deadline=None)
@given(st.lists(mutations(), max_size=20))
def test_garbage_never_escapes_and_never_costs_a_client(datagrams: list[bytes]) -> None:
    srv = RendezvousServer(token_factory=tokens(), cookie_key=KEY)
    first = Addr("10.0.0.1", 1)
    srv.receive_datagram(wire.encode(registration("client1", first, 0.0)), first, 0.0)
    for i, data in enumerate(datagrams):
        srv.receive_datagram(data, Addr("10.0.0.9", 1000 + i), 1.0)
        with contextlib.suppress(wire.WireError):  # and nothing else
            wire.decode(data)
    assert "client1" in [p.id for p in srv.peers()]
    assert all(len(d) <= wire.MAX_DATAGRAM for d, _ in srv.datagrams_to_send())


@pytest.mark.parametrize(
    "bad",
    [
        '{"v":3,"t":"page","ver":1,"index":0,"count":1,"peers":"a  b"}',
        '{"v":3,"t":"page","ver":1,"index":0,"count":1,"peers":" a"}',
        '{"v":3,"t":"page","ver":1,"index":0,"count":1,"peers":"a b "}',
        '{"v":3,"t":"page","ver":1,"index":0,"count":1,"peers":"a,b"}',
        '{"v":3,"t":"delta","ver":1,"changes":""}',
        '{"v":3,"t":"delta","ver":1,"changes":"a"}',
        '{"v":3,"t":"delta","ver":1,"changes":"+a b"}',
        '{"v":3,"t":"delta","ver":1,"changes":"+a  -b"}',
    ],
)
def test_id_and_change_lists_are_single_spaced_and_signed(bad: str) -> None:
    with pytest.raises(wire.WireError, match="regex"):
        wire.decode(bad.encode())


def test_id_and_change_lists_split_back() -> None:
    page = wire.decode(b'{"v":3,"t":"page","ver":1,"index":0,"count":1,"peers":"a b-c"}')
    assert isinstance(page, wire.ListPage) and page.ids() == ["a", "b-c"]
    delta = wire.decode(b'{"v":3,"t":"delta","ver":4,"changes":"+a -b-c +-d"}')
    assert isinstance(delta, wire.ListDelta) and delta.parsed() == [("a", False), ("b-c", True), ("-d", False)]
