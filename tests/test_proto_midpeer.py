"""The midPeer: the relay's rules datagram by datagram, and the client's path state machine (direct,
lan, relay, and back to direct) on the hand-driven network, with an explicit clock."""

from __future__ import annotations

import msgspec
import pytest

from natchat.proto import wire
from natchat.proto.client import MAIN, ClientConfig, UnknownPeer
from natchat.proto.events import ChatReceived, DeliveryFailed, PathChanged, PathReport, RelayStarted
from natchat.proto.server import RendezvousServer
from natchat.proto.wire import Addr

from .sim import MIDPEER, SERVER, Node, Sim, tokens
from .test_proto_server import KEY, events, feed, register, registration

A = Addr("10.0.0.1", 53002)
B = Addr("10.0.0.2", 54264)
STRANGER = Addr("10.0.0.9", 4000)


def chats(node: Node) -> list[str]:
    return [e.line() for e in node.events if isinstance(e, ChatReceived)]


def relay(src: str, token: str, dst: str, inner: wire.Message) -> wire.Relay:
    return wire.Relay(id=src, token=token, dst=dst, data=msgspec.Raw(wire.encode(inner)))


def hello(src: str = "a", dst: str = "b") -> wire.Chat:
    return wire.Chat(src=src, dst=dst, stream=1, base=1, seq=1, group=False, n=bytes(12), box=bytes(21))


# --- the relay's rules ------------------------------------------------------------------------------


def midpeer(**kwargs: float) -> RendezvousServer:
    return RendezvousServer(token_factory=tokens(), relay=True, lists=False, cookie_key=KEY, **kwargs)  # type: ignore[arg-type]


def test_relay_forwards_between_registered_clients_by_id_only() -> None:
    srv = midpeer()
    token_a = register(srv, "a", A)
    register(srv, "b", B)
    events(srv)
    datagram = wire.encode(relay("a", token_a, "b", hello()))
    srv.receive_datagram(datagram, A, 1.0)
    out = srv.datagrams_to_send()
    assert len(out) == 1
    data, dst = out[0]
    assert dst == B  # the address the midPeer registered for b, never one the sender names
    msg = wire.decode(data)
    assert isinstance(msg, wire.Relayed) and msg.src == "a"
    assert wire.decode(bytes(msg.data)) == hello()
    assert len(data) < len(datagram)  # no amplification
    assert events(srv) == [RelayStarted("a", "b")]
    srv.receive_datagram(datagram, A, 1.1)
    assert len(srv.datagrams_to_send()) == 1 and events(srv) == []  # shown once per pair
    assert srv.relayed == 2


def test_relay_refuses_strangers_forged_tokens_and_unknown_peers() -> None:
    srv = midpeer()
    register(srv, "a", A)
    register(srv, "b", B)
    srv.datagrams_to_send()
    # a stranger with a made-up token: nothing relayed, one small error at most
    replies = feed(srv, relay("a", "f" * 32, "b", hello()), STRANGER, 1.0)
    assert all(isinstance(m, wire.Error) and dst == STRANGER for m, dst in replies)
    assert srv.relayed == 0
    replies = feed(srv, relay("nobody", "f" * 32, "b", hello()), STRANGER, 1.0)
    assert all(isinstance(m, wire.Error) for m, _ in replies) and srv.relayed == 0
    # a registered client asking for an unregistered peer is told so
    token_b = register(srv, "b", B)
    srv.datagrams_to_send()
    replies = feed(srv, relay("b", token_b, "ghost", hello("b", "ghost")), B, 1.0)
    assert [(m.code, dst) for m, dst in replies if isinstance(m, wire.Error)] == [("unknown_peer", B)]
    assert srv.relayed == 0


def test_a_server_without_midpeer_does_not_relay() -> None:
    srv = RendezvousServer(token_factory=tokens(), cookie_key=KEY)
    token_a = register(srv, "a", A)
    register(srv, "b", B)
    srv.datagrams_to_send()
    replies = feed(srv, relay("a", token_a, "b", hello()), A, 1.0)
    assert [m.code for m, _ in replies if isinstance(m, wire.Error)] == ["no_relay"]
    assert not any(isinstance(m, wire.Relayed) for m, _ in replies)


def test_relay_rate_limit_per_sender_refills_with_time() -> None:
    srv = midpeer(relay_rate=10.0, relay_bytes=1e6)
    token_a = register(srv, "a", A)
    token_b = register(srv, "b", B)
    srv.datagrams_to_send()
    datagram = wire.encode(relay("a", token_a, "b", hello()))
    for _ in range(100):  # a flood at one instant: a burst of twice the rate passes
        srv.receive_datagram(datagram, A, 5.0)
    assert len(srv.datagrams_to_send()) == 20
    assert srv.relay_limited == 80
    # b is not held back by a's flood
    srv.receive_datagram(wire.encode(relay("b", token_b, "a", hello("b", "a"))), B, 5.0)
    assert len(srv.datagrams_to_send()) == 1
    # a second later, a has earned ten more
    for _ in range(100):
        srv.receive_datagram(datagram, A, 6.0)
    assert len(srv.datagrams_to_send()) == 10


def test_relay_byte_limit() -> None:
    srv = midpeer(relay_rate=1000.0, relay_bytes=2000.0)
    token_a = register(srv, "a", A)
    register(srv, "b", B)
    srv.datagrams_to_send()
    big = wire.Chat(src="a", dst="b", stream=1, base=1, seq=1, group=False, n=bytes(12), box=bytes(600))
    datagram = wire.encode(relay("a", token_a, "b", big))
    for _ in range(10):
        srv.receive_datagram(datagram, A, 1.0)
    assert len(srv.datagrams_to_send()) == 4000 // len(datagram)


def test_standalone_midpeer_sends_no_lists() -> None:
    srv = midpeer()
    register(srv, "a", A)
    replies = feed(srv, registration("b", B, 0.0), B, 0.0)
    assert [type(m) for m, _ in replies] == [wire.Registered]
    assert replies[0][0].relay is True  # type: ignore[union-attr]


def test_relay_state_is_forgotten_with_the_client() -> None:
    srv = midpeer()
    token_a = register(srv, "a", A)
    token_b = register(srv, "b", B)
    feed(srv, relay("a", token_a, "b", hello()), A, 1.0)
    feed(srv, wire.Deregister(id="b", token=token_b), B, 2.0)
    assert srv.relay_gate.relaying() == {"a": frozenset()} and "b" not in srv.relay_gate.metered()


# --- the client's paths -------------------------------------------------------------------------------


def blocked(sim: Sim) -> None:
    """Nothing passes between the peers directly; the servers still reach everyone."""
    sim.drop = lambda src, dst, data: not {SERVER, MIDPEER} & {src, dst}


def pair(sim: Sim) -> tuple[Node, Node]:
    a = sim.add("a", "10.0.0.1")
    b = sim.add("b", "10.0.0.2")
    sim.run(1)
    return a, b


def path_changes(node: Node) -> list[str]:
    return [e.path for e in node.events if isinstance(e, PathChanged)]


def test_no_direct_path_falls_back_to_the_relay_after_relay_after() -> None:
    sim = Sim(relay=True, config=ClientConfig(relay_after=3.0))
    a, b = pair(sim)
    blocked(sim)
    a.session.chat("b", "one", sim.now)
    sim.run(2.9)
    assert chats(b) == []
    sim.run(0.5)
    assert chats(b) == ["From a [one]"]
    assert a.session.path_kind("b") == "relay" and path_changes(a) == ["relay"]
    # the answer goes back the same way, at once (b follows the relay it was reached by)
    b.session.chat("a", "two", sim.now)
    sim.run(0.1)
    assert chats(a) == ["From b [two]"]
    # no chat datagram ever went between the peers
    assert not any(isinstance(wire.decode(d), wire.Chat) for s, t, d in sim.sent if not {SERVER, MIDPEER} & {s, t})


def test_relay_to_direct_upgrade_loses_and_duplicates_nothing() -> None:
    sim = Sim(relay=True, config=ClientConfig(relay_after=1.0, deliver_within=60))
    a, b = pair(sim)
    blocked(sim)
    sent = [f"m{i}" for i in range(60)]
    for text in sent[:20]:
        a.session.chat("b", text, sim.now)
        sim.run(0.1)
    assert a.session.path_kind("b") == "relay"
    sim.drop = lambda *_: False  # the block is lifted, while messages are in flight
    for text in sent[20:]:
        a.session.chat("b", text, sim.now)
        sim.run(0.5)
    sim.run(5)
    assert a.session.path_kind("b") == "direct"
    assert path_changes(a) == ["relay", "direct"]
    assert chats(b) == [f"From a [{t}]" for t in sent]  # every message once, in order
    assert not any(isinstance(e, DeliveryFailed) for e in a.events)
    # and after the upgrade, chat goes directly
    before = sim.server.relayed
    a.session.chat("b", "direct now", sim.now)
    sim.run(1)
    assert chats(b)[-1] == "From a [direct now]" and sim.server.relayed == before


def test_background_direct_attempts_back_off_and_stop_when_nobody_chats() -> None:
    sim = Sim(relay=True, config=ClientConfig(relay_after=1.0, upgrade_max=8.0, upgrade_for=60.0))
    a, b = pair(sim)
    blocked(sim)
    a.session.chat("b", "one", sim.now)
    sim.run(100)

    def asks() -> int:
        return sum(
            1
            for src, dst, data in sim.sent
            if dst == SERVER and isinstance(wire.decode(data), wire.PunchRequest) and src.host == "10.0.0.1"
        )

    total = asks()
    assert 8 <= total <= 40  # gaps of 1, 2, 4, 8, 8, ... s for 60 s, a few requests each
    sim.run(100)
    assert asks() == total  # nobody chatted for over a minute: no more attempts
    assert chats(b) == ["From a [one]"]


def test_direct_only_never_relays_and_says_why() -> None:
    sim = Sim(relay=True, config=ClientConfig(path="direct", deliver_within=5))
    a, b = pair(sim)
    blocked(sim)
    a.session.chat("b", "one", sim.now)
    sim.run(6)
    assert [e.line() for e in a.events if isinstance(e, DeliveryFailed)] == [
        "could not deliver to b: no direct path within 5 s (--direct-only: not relayed) [one]"
    ]
    assert sim.server.relayed == 0 and chats(b) == []


def test_relay_only_never_punches() -> None:
    sim = Sim(relay=True, config=ClientConfig(path="relay"))
    a, b = pair(sim)
    a.session.chat("b", "one", sim.now)
    sim.run(0.1)
    assert chats(b) == ["From a [one]"]
    assert a.session.path_kind("b") == "relay"
    b.session.chat("a", "two", sim.now)
    sim.run(30)  # long past the relayed peers' background attempts (after 1, 2, 4 ... s): none for --relay-only
    assert chats(a) == ["From b [two]"]
    kinds = {type(wire.decode(d)) for s, t, d in sim.sent if not {SERVER, MIDPEER} & {s, t}}
    assert kinds == set()  # not one datagram between the peers directly
    assert not any(isinstance(wire.decode(d), wire.PunchRequest) for _, _, d in sim.sent)


def test_relay_only_without_a_relay_fails_clearly() -> None:
    sim = Sim(config=ClientConfig(path="relay", deliver_within=2))
    a, _b = pair(sim)
    a.session.chat("b", "one", sim.now)
    sim.run(3)
    assert [e.line() for e in a.events if isinstance(e, DeliveryFailed)] == [
        "could not deliver to b: no relay (--relay-only, and the server offers none) within 2 s [one]"
    ]


def test_without_a_midpeer_behaviour_is_direct_only() -> None:
    sim = Sim(config=ClientConfig(deliver_within=5))
    a, _b = pair(sim)
    blocked(sim)
    a.session.chat("b", "one", sim.now)
    sim.run(6)
    assert [e.line() for e in a.events if isinstance(e, DeliveryFailed)] == [
        "could not deliver to b: no direct path within 5 s [one]"
    ]
    assert not any(isinstance(wire.decode(d), wire.Relay) for _, _, d in sim.sent)


def test_same_nat_pair_is_on_the_lan_path_and_path_reports_it() -> None:
    sim = Sim(relay=True)
    a = sim.add("a", "10.0.0.1")
    b = sim.add("b", "10.0.0.1")
    sim.run(1)
    a.session.measure_path("b", sim.now)
    sim.step()
    assert [e.line() for e in a.events if isinstance(e, PathReport)] == ["b: no path yet (nothing sent to it)"]
    a.session.chat("b", "psst", sim.now)
    sim.run(1)
    assert a.session.path_kind("b") == "lan"
    a.session.measure_path("b", sim.now)
    sim.run(0.1)
    report = [e for e in a.events if isinstance(e, PathReport)][-1]
    assert (report.path, report.addr, report.rtt) == ("lan", b.sockets[MAIN], 0.0)  # the sim is instant


def test_path_report_over_the_relay_and_a_silent_peer() -> None:
    sim = Sim(relay=True, config=ClientConfig(relay_after=1.0))
    a, _b = pair(sim)
    blocked(sim)
    a.session.chat("b", "one", sim.now)
    sim.run(2)
    a.session.measure_path("b", sim.now)
    sim.run(0.1)
    report = [e for e in a.events if isinstance(e, PathReport)][-1]
    assert (report.path, report.addr, report.rtt) == ("relay", SERVER, 0.0)
    sim.drop = lambda *_: True  # nothing at all gets through now
    a.session.measure_path("b", sim.now)
    sim.run(2.5)
    report = [e for e in a.events if isinstance(e, PathReport)][-1]
    assert report.rtt is None
    assert report.line() == f"b: relay via the midPeer {SERVER}, no answer within 2 s"
    with pytest.raises(UnknownPeer):
        a.session.measure_path("nobody", sim.now)


def test_standalone_midpeer_introduces_and_relays_and_the_server_sees_neither() -> None:
    sim = Sim(midpeer=True, config=ClientConfig(relay_after=1.0))
    a, b = pair(sim)
    c = sim.add("c", "10.0.0.3")
    sim.run(1)
    # direct, introduced by the midPeer
    a.session.chat("c", "hi c", sim.now)
    sim.run(1)
    assert chats(c) == ["From a [hi c]"] and a.session.path_kind("c") == "direct"
    # relayed by the midPeer
    blocked(sim)
    a.session.chat("b", "hi b", sim.now)
    sim.run(2)
    assert chats(b) == ["From a [hi b]"] and a.session.path_kind("b") == "relay"
    to_server = [type(wire.decode(d)) for _, dst, d in sim.sent if dst == SERVER]
    assert wire.PunchRequest not in to_server and wire.Relay not in to_server
    assert sim.midpeer.relayed >= 1
    # the lists still come from the server alone
    assert a.session.peers() == ["a", "b", "c"]


def test_silent_midpeer_falls_back_to_the_server_as_introducer() -> None:
    sim = Sim(midpeer=True, config=ClientConfig(register_within=2.0))
    sim.midpeer_up = True
    a = sim.add("a", "10.0.0.1")
    b = sim.add("b", "10.0.0.2")
    sim.midpeer_up = False  # it never answers
    sim.run(3)
    notices = [e.line() for e in a.events if type(e).__name__ == "Notice"]
    assert notices == [f"no answer from the midPeer {MIDPEER}; the server introduces, no relay"]
    a.session.chat("b", "still direct", sim.now)
    sim.run(1)
    assert chats(b) == ["From a [still direct]"]


def test_relayed_datagrams_must_come_from_the_named_peer() -> None:
    sim = Sim(relay=True)
    _a, b = pair(sim)
    # a Relayed whose inner datagram claims another sender is dropped
    forged = wire.Relayed(src="a", data=msgspec.Raw(wire.encode(hello("mallory", "b"))))
    before = b.session.dropped
    b.session.receive_datagram(wire.encode(forged), MAIN, SERVER, sim.now)
    assert b.session.dropped == before + 1 and chats(b) == []


def test_many_pairs_at_once_some_relayed_all_delivered() -> None:
    """Twenty peers, every one chatting with every other at the same moment; the pairs whose sites
    end in an odd digit cannot reach each other directly."""
    sim = Sim(midpeer=True, config=ClientConfig(relay_after=1.0, deliver_within=30))
    nodes = [sim.add(f"n{i}", f"10.0.1.{i}") for i in range(20)]
    sim.run(2)

    def no_direct(src: Addr, dst: Addr) -> bool:
        return src.host.startswith("10.0.1.") and dst.host.startswith("10.0.1.") and int(src.host[-1]) % 2 == 1

    sim.drop = lambda src, dst, data: no_direct(src, dst) or no_direct(dst, src)
    for a in nodes:
        for b in nodes:
            if a is not b:
                a.session.chat(b.session.id, f"{a.session.id}->{b.session.id}", sim.now)
    sim.run(10)
    for b in nodes:
        expected = sorted(f"From {a.session.id} [{a.session.id}->{b.session.id}]" for a in nodes if a is not b)
        assert sorted(chats(b)) == expected
    relayed = {(a.session.id, p) for a in nodes for p in a.session.peers() if a.session.path_kind(p) == "relay"}
    odd = {n.session.id for n in nodes if int(n.site[-1]) % 2 == 1}
    assert relayed == {
        (a.session.id, b.session.id) for a in nodes for b in nodes if a is not b and {a.session.id, b.session.id} & odd
    }
    assert not any(isinstance(e, DeliveryFailed) for n in nodes for e in n.events)


def test_a_relay_rate_above_the_source_rate_raises_it() -> None:
    """``--relay-rate 1000``: the per-source limit (400/s) must not cap the relay below what was asked."""
    from natchat.proto.server import SOURCE_RATE

    srv = RendezvousServer(relay=True, relay_rate=1000.0)
    assert srv.source_rate == 2000.0 > SOURCE_RATE
    assert RendezvousServer(relay=True).source_rate == SOURCE_RATE
