"""End-to-end sealing on the hand-driven network: the server and the relay see only ciphertext, and a
datagram that is altered, or sealed with a key other than its named sender's, is rejected with a warning."""

from __future__ import annotations

import base64

import msgspec
import pytest

from natchat.proto import seal, wire
from natchat.proto.client import MAIN, ClientConfig, MessageTooLong
from natchat.proto.events import ChatReceived, Rejected
from natchat.proto.wire import Addr

from .sim import MIDPEER, SERVER, Node, Sim

SECRET = "the owl flies at midnight, 7391"


def chats(node: Node) -> list[str]:
    return [e.line() for e in node.events if isinstance(e, ChatReceived)]


def warnings(node: Node) -> list[str]:
    return [e.line() for e in node.events if isinstance(e, Rejected)]


def sealed_to(sim: Sim, kind: type, src: Node, dst: Node) -> list[bytes]:
    """Datagrams of ``kind`` that ``src`` sent straight to ``dst``."""
    return [
        d
        for s, t, d in sim.sent
        if s == src.public(MAIN) and t == dst.public(MAIN) and isinstance(wire.decode(d), kind)
    ]


def trio_of_peers(sim: Sim) -> tuple[Node, Node, Node]:
    a = sim.add("a", "10.0.0.1")
    b = sim.add("b", "10.0.0.2")
    c = sim.add("c", "10.0.0.5")
    sim.run(1)
    return a, b, c


@pytest.mark.parametrize("standalone", [False, True], ids=["server-relays", "standalone-midpeer"])
def test_the_server_and_the_relay_see_only_ciphertext(standalone: bool) -> None:
    sim = Sim(relay=not standalone, midpeer=standalone, config=ClientConfig(relay_after=1.0))
    a, b, c = trio_of_peers(sim)
    sites = {a.site, b.site}
    sim.drop = lambda src, dst, data: {src.host, dst.host} == sites  # a and b cannot reach each other
    a.session.chat("b", SECRET + " (relayed)", sim.now)
    a.session.chat("c", SECRET + " (direct)", sim.now)
    sim.run(3)
    b.session.chat("a", SECRET + " (answer)", sim.now)
    sim.run(1)
    assert chats(b) == [f"From a [{SECRET} (relayed)]"] and chats(c) == [f"From a [{SECRET} (direct)]"]
    assert chats(a) == [f"From b [{SECRET} (answer)]"]
    assert a.session.path_kind("b") == "relay" and a.session.path_kind("c") == "direct"
    relay = MIDPEER if standalone else SERVER
    relayed = [d for s, t, d in sim.sent if relay in (s, t) and isinstance(wire.decode(d), wire.Relay | wire.Relayed)]
    direct = [d for s, t, d in sim.sent if not {SERVER, MIDPEER} & {s, t}]
    assert len(relayed) >= 4 and len(direct) >= 2  # chats and acknowledgements went both ways
    forms = [SECRET.encode(), SECRET.encode("utf-16-le"), base64.b64encode(SECRET.encode()[:24])]
    for _, _, data in sim.sent:  # to and from the server, the midPeer and between the peers
        assert not any(form in data for form in forms), data
        # (a word of the text, but not one as short as "owl": three letters turn up in random base64 by chance,
        # one run in five or so across all these datagrams)
        assert b"midnight" not in data
    assert warnings(a) == warnings(b) == warnings(c) == []


def test_an_altered_chat_is_rejected_with_a_warning_and_not_acknowledged() -> None:
    sim = Sim()
    a, b, _c = trio_of_peers(sim)
    a.session.chat("b", "pay 10 coins", sim.now)
    sim.run(1)
    assert chats(b) == ["From a [pay 10 coins]"]
    original = wire.decode(sealed_to(sim, wire.Chat, a, b)[0])
    assert isinstance(original, wire.Chat)
    box = bytearray(original.box)
    box[3] ^= 0x01  # one bit of the ciphertext
    forgeries = [
        msgspec.structs.replace(original, box=bytes(box)),
        msgspec.structs.replace(original, seq=original.seq + 1),  # the header is authenticated too
        msgspec.structs.replace(original, group=True),
        msgspec.structs.replace(original, n=bytes(12)),
    ]
    for forged in forgeries:
        b.session.receive_datagram(wire.encode(forged), MAIN, a.public(MAIN), sim.now)
        assert not b.session.actions()  # not acknowledged, nothing sent
    assert b.session.rejected == len(forgeries)
    # one warning per peer per minute, however many arrive
    line = "warning: rejected a datagram claiming to be from a: it is not sealed with a's key"
    sim.step()
    assert warnings(b) == [line]
    (event,) = (e for e in b.events if isinstance(e, Rejected))
    assert event.as_dict() == {
        "event": "warning",
        "code": "bad_seal",
        "peer": "a",
        "message": "rejected a datagram claiming to be from a: it is not sealed with a's key",
    }
    sim.run(61)
    b.session.receive_datagram(wire.encode(forgeries[0]), MAIN, a.public(MAIN), sim.now)
    sim.step()
    assert warnings(b) == [line, line]
    assert chats(b) == ["From a [pay 10 coins]"]
    # the genuine datagram, replayed, is a duplicate: acknowledged, not shown again, no warning
    b.session.receive_datagram(wire.encode(original), MAIN, a.public(MAIN), sim.now)
    assert [type(wire.decode(act.data)) for act in b.session.actions()] == [wire.ChatAck]  # type: ignore[attr-defined]
    assert b.session.rejected == len(forgeries) + 1 and chats(b) == ["From a [pay 10 coins]"]


def test_altered_acknowledgements_and_probes_are_rejected() -> None:
    sim = Sim(config=ClientConfig(deliver_within=5))
    a, b, _c = trio_of_peers(sim)
    a.session.chat("b", "one", sim.now)
    sim.run(1)
    ack = wire.decode(sealed_to(sim, wire.ChatAck, b, a)[0])
    assert isinstance(ack, wire.ChatAck)
    tag = bytearray(ack.tag)
    tag[0] ^= 0x80
    # an acknowledgement of a message the receiver never saw: a forged tag does not take it off the outbox
    sim.drop = lambda src, dst, data: src == a.public(MAIN) and dst == b.public(MAIN)
    a.session.chat("b", "two", sim.now)
    sim.step()
    forged_ack = msgspec.structs.replace(ack, seq=2, tag=bytes(tag))
    a.session.receive_datagram(wire.encode(forged_ack), MAIN, b.public(MAIN), sim.now)
    assert 2 in a.session.unacknowledged("b") and a.session.rejected == 1
    # a forged probe from a new address opens no path there and is not answered
    probe = wire.Probe(src="b", dst="a", attempt=9, n=bytes(12), tag=bytes(16))
    elsewhere = Addr("10.0.0.66", 4444)
    a.session.receive_datagram(wire.encode(probe), MAIN, elsewhere, sim.now)
    assert a.session.path("b") == ("up", b.public(MAIN)) and a.session.rejected == 2
    assert not [act for act in a.session.actions() if getattr(act, "addr", None) == elsewhere]
    sim.step()
    assert warnings(a)[:1] == ["warning: rejected a datagram claiming to be from b: it is not sealed with b's key"]


def test_a_registered_mallory_cannot_speak_for_another_peer() -> None:
    sim = Sim(relay=True)
    a, b, _c = trio_of_peers(sim)
    mallory = sim.add("mallory", "10.0.0.9")
    sim.run(1)
    a.session.chat("b", "hello b", sim.now)
    sim.run(1)
    _, stream = b.session.streams("a")
    assert stream is not None
    # mallory has a key and a place in the list, and seals properly, but with its own key
    keys = mallory.keys
    b_public = next(p.key for p in sim.server.peers() if p.id == "b")  # anyone registered may look it up
    for ids in (("mallory", "b"), ("a", "b")):  # under its own name, or under a's
        key = seal.pair_key(keys.private, b_public, *ids)
        forged = wire.Chat(src="a", dst="b", stream=stream, base=2, seq=2, group=False, n=b"", box=b"")
        nonce, box = seal.seal(key, wire.sealed_header(forged), b"send mallory the keys")
        forged = msgspec.structs.replace(forged, n=nonce, box=box)
        b.session.receive_datagram(wire.encode(forged), MAIN, mallory.public(MAIN), sim.now)
        assert not b.session.actions()
    sim.step()
    assert chats(b) == ["From a [hello b]"]
    assert warnings(b) == ["warning: rejected a datagram claiming to be from a: it is not sealed with a's key"]
    assert b.session.rejected == 2 and b.session.path("a")[1] == a.public(MAIN)  # the path did not move
    # a genuine message from a still arrives, and mallory's own messages are fine
    a.session.chat("b", "still me", sim.now)
    mallory.session.chat("b", "hi, I am mallory", sim.now)
    sim.run(1)
    assert chats(b) == ["From a [hello b]", "From a [still me]", "From mallory [hi, I am mallory]"]


def test_a_peer_back_with_a_new_key_is_heard_and_the_old_key_no_longer_opens() -> None:
    sim = Sim()
    a, b, _c = trio_of_peers(sim)
    a.session.chat("b", "first", sim.now)
    sim.run(1)
    old_chat = sealed_to(sim, wire.Chat, a, b)[0]
    a.session.close(sim.now)
    sim.run(1)
    again = sim.add("a", "10.0.0.1")  # a new session: a new key pair
    sim.run(1)
    assert again.session.public_key != a.session.public_key
    assert b.session.details("a") is None  # a left: b forgot its key
    again.session.chat("b", "second", sim.now)
    sim.run(1)
    assert chats(b) == ["From a [first]", "From a [second]"]
    details = b.session.details("a")  # looked up again: the new session's key
    assert details is not None and details.key == again.session.public_key
    b.session.receive_datagram(old_chat, MAIN, again.public(MAIN), sim.now)  # sealed under the old session
    assert b.session.rejected == 1


def test_a_session_keeps_its_key_at_the_server() -> None:
    sim = Sim()
    a, b, _c = trio_of_peers(sim)
    token = a.session.token
    assert token is not None
    other = seal.KeyPair().public
    swap = wire.Register(id="a", priv=a.sockets[MAIN], key=other, token=token)
    sim.server.receive_datagram(wire.encode(swap), Addr("10.0.0.66", 5555), sim.now)
    replies = [(wire.decode(d), dst) for d, dst in sim.server.datagrams_to_send()]
    assert [(m.code, dst) for m, dst in replies if isinstance(m, wire.Error)] == [
        ("key_changed", Addr("10.0.0.66", 5555))
    ]
    assert [p.key for p in sim.server.peers() if p.id == "a"] == [a.session.public_key]
    assert not [m for m, _ in replies if isinstance(m, wire.Registered | wire.ListDelta)]
    # what every client looked up names each session's own key
    a.session.chat("b", "hello", sim.now)
    sim.run(1)
    keys = {n.session.id: n.session.public_key for n in sim.nodes.values()}
    for node, peer in ((a, "b"), (b, "a")):
        details = node.session.details(peer)
        assert details is not None and details.key == keys[peer]


def test_the_longest_text_fits_in_one_datagram_even_relayed() -> None:
    longest_id = "x" * 32
    sim = Sim(relay=True, config=ClientConfig(path="relay"))
    a = sim.add(longest_id, "10.0.0.1")
    b = sim.add("y" * 32, "10.0.0.2")
    sim.run(1)
    limit = a.session.max_text_bytes
    assert 590 <= limit <= 620  # the seal and base64 cost a third, the relay's envelope about 100 bytes
    with pytest.raises(MessageTooLong):
        a.session.chat("y" * 32, "z" * (limit + 1), sim.now)
    text = "é" * (limit // 2) + "z" * (limit % 2)  # two bytes a character
    assert len(text.encode()) == limit
    a.session.chat("y" * 32, text, sim.now)
    sim.run(1)  # (the simulated network asserts that no datagram is over 1200 bytes)
    assert chats(b) == [f"From {longest_id} [{text}]"]
    # the limit is tight: only the counters (1 here, up to 16 digits each) are below the worst case
    assert max(len(d) for _, _, d in sim.sent) > wire.MAX_DATAGRAM - 40
    direct_only = Sim(config=ClientConfig(path="direct")).add("d" * 32, start=False).session
    assert direct_only.max_text_bytes > limit  # without a relay's envelope, more fits


def test_a_replayed_chat_of_an_ended_stream_is_not_shown_again() -> None:
    """A stream ends when a delivery fails; someone who recorded its datagrams replays them later."""
    sim = Sim(config=ClientConfig(deliver_within=3))
    a = sim.add("a", "10.0.0.1")
    b = sim.add("b", "10.0.0.2")
    sim.run(1)
    a.session.chat("b", "old news", sim.now)
    sim.run(1)
    recorded = [(src, data) for src, dst, data in sim.sent if isinstance(wire.decode(data), wire.Chat)]
    # the acknowledgements are lost and the next message is never acknowledged: the stream ends
    sim.drop = lambda src, dst, data: isinstance(wire.decode(data), wire.ChatAck)
    a.session.chat("b", "lost", sim.now)
    sim.run(5)
    sim.drop = lambda *_: False
    a.session.chat("b", "fresh", sim.now)  # a new stream
    sim.run(1)
    assert chats(b)[-1] == "From a [fresh]"
    shown = len(chats(b))
    for src, data in recorded:
        b.session.receive_datagram(data, MAIN, src, sim.now)
    sim.run(1)
    assert len(chats(b)) == shown  # "old news" is not shown a second time
