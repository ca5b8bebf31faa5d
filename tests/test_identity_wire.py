"""Identities on the wire and in the chat session (sans-I/O, ``tests/sim.py``).

A server (or an impostor who registered a pinned ID after its owner left) that lists another identity
under a pinned ID is noticed: one warning, nothing sent to it, nothing shown from it, until ``@trust``.
A replayed registration of an old signed key is refused; ``--ephemeral`` pins nothing; the lookup of
everyone (``@show_list``) pins nothing and marks changed peers.
"""

from __future__ import annotations

import pytest

from natchat.proto import auth, wire
from natchat.proto.client import Blocked, ClientConfig
from natchat.proto.events import ChatReceived, DeliveryFailed, ListShown
from natchat.proto.identity import Identity, PeerIdentities, PinBook, Status
from natchat.proto.identity_events import (
    CHANGED_MARK,
    BadSignature,
    IdentityChanged,
    KeyReplayed,
    SendBlocked,
    Trusted,
    WhoisReport,
)
from natchat.proto.server import RendezvousServer
from natchat.proto.wire import Addr, PeerInfo

from .sim import Node, Sim, tokens

LABEL = "10.0.0.3:10080"
T1, T2 = 1_764_000_000_000_000_000, 1_764_000_100_000_000_000


def received(node: Node) -> list[str]:
    return [e.text for e in node.events if isinstance(e, ChatReceived)]


def of(node: Node, kind: type) -> list[object]:
    return [e for e in node.events if isinstance(e, kind)]


def pair(sim: Sim, pins: PinBook) -> tuple[Node, Node, Identity]:
    """``a`` (pinning into ``pins``) and ``b`` (identity returned), registered, having chatted once."""
    ib = Identity()
    a = sim.add("a", "10.0.0.1", identity=Identity(), issued=T1, peer_ids=PeerIdentities(LABEL, pins))
    b = sim.add("b", "10.0.0.2", identity=ib, issued=T2)
    sim.run(1)
    a.session.chat("b", "hello b", sim.now)
    sim.run(2)
    assert received(b) == ["hello b"]
    return a, b, ib


def test_first_contact_pins_and_chat_flows_unchanged() -> None:
    sim = Sim()
    pins = PinBook()
    a, b, ib = pair(sim, pins)
    pin = pins.get(LABEL, "b")
    assert pin is not None and pin.identity_key == ib.public and pin.issued == T2
    assert [p.peer_id for p in pins] == ["b"]  # b never looked a up: a is not pinned for b's own session
    b.session.chat("a", "hi a", sim.now)
    sim.run(2)
    assert received(a) == ["hi a"]
    assert not of(a, IdentityChanged) and not of(a, DeliveryFailed)
    a.session.whois("b", sim.now)
    sim.run(0.1)
    (report,) = of(a, WhoisReport)
    assert isinstance(report, WhoisReport) and report.status is Status.NEW
    # the server passes the identity on as registered
    info = next(p for p in sim.server.peers() if p.id == "b")
    assert (info.ident, info.issued) == (ib.public, T2) and info.sig == ib.sign("b", b.session.public_key, T2)


def test_impostor_after_owner_left_is_blocked_until_trust() -> None:
    sim = Sim()
    pins = PinBook()
    a, b, _ = pair(sim, pins)
    b.session.close(sim.now)
    sim.run(2)
    assert "b" not in a.session.peers()
    mallory = sim.add("b", "10.0.0.9", identity=Identity(), issued=T2 + 1)  # registers b with its own identity
    sim.run(2)
    assert "b" in a.session.peers()

    a.session.chat("b", "are you b?", sim.now)
    sim.run(3)
    (warning,) = of(a, IdentityChanged)
    assert isinstance(warning, IdentityChanged) and warning.peer == "b" and warning.server == LABEL
    assert warning.line().startswith("warning: b's identity on 10.0.0.3:10080 changed: pinned ")
    failed = of(a, DeliveryFailed)
    assert failed and "identity changed" in failed[0].line()  # type: ignore[attr-defined]
    assert received(mallory) == []  # nothing was sent to it
    with pytest.raises(Blocked) as blocked:
        a.session.chat("b", "again", sim.now)
    assert blocked.value.event == SendBlocked("b", Status.CHANGED)
    assert blocked.value.event.line().startswith("error: b's identity changed; nothing sent.")

    mallory.session.chat("a", "I am b, trust me", sim.now)
    sim.run(3)
    assert received(a) == []  # nothing shown from it
    assert len(of(a, IdentityChanged)) == 1  # warned once

    a.session.whois("b", sim.now)
    a.session.show_list(sim.now)
    sim.run(1)
    (report,) = of(a, WhoisReport)
    assert isinstance(report, WhoisReport) and report.status is Status.CHANGED
    assert report.pinned is not None and report.pinned != report.fingerprint
    assert any("CHANGED on 10.0.0.3:10080" in line for line in report.lines())
    (shown,) = of(a, ListShown)
    assert isinstance(shown, ListShown)
    assert [line.endswith(CHANGED_MARK) for line in shown.lines()] == [False, True]  # a, then b
    assert shown.lines()[0] == f"a {a.public(0)}"  # unchanged for peers as pinned (the assignment's line)

    a.session.trust("b", sim.now)
    sim.run(1)
    assert of(a, Trusted)
    pin = pins.get(LABEL, "b")
    assert pin is not None and pin.issued == T2 + 1
    a.session.chat("b", "welcome, new b", sim.now)
    sim.run(3)
    assert received(mallory) == ["welcome, new b"]


def test_server_that_swaps_a_pinned_key_is_noticed() -> None:
    """The server itself lists another (validly self-signed) identity and key under b's ID."""
    sim = Sim()
    pins = PinBook()
    a, b, _ = pair(sim, pins)
    evil = Identity()
    entry = sim.server.registry.get("b")
    assert entry is not None
    key = bytes(range(32))
    claim = wire.signed(evil.public, evil.sign("b", key, T2 + 5), T2 + 5)
    forged = PeerInfo("b", entry.info.pub, entry.info.priv, key, claim)
    sim.server._update(entry, entry.info.pub, entry.info.priv, key, forged)  # a lying server
    sim.run(2)  # a looks b up again (its details changed): noticed at once, without a chat
    assert len(of(a, IdentityChanged)) == 1
    with pytest.raises(Blocked):
        a.session.chat("b", "to b", sim.now)
    b.session.chat("a", "the real b speaks", sim.now)
    sim.run(3)
    assert len(of(a, IdentityChanged)) == 1
    assert received(a) == []  # what the real b sends is not shown either: the pinned ID is blocked
    assert a.session.details("b") is None  # the forged key is never used


def test_replayed_registration_of_an_old_signed_key_is_refused() -> None:
    sim = Sim()
    ib = Identity()
    pins = PinBook()
    pins.pin(LABEL, "b", ib.public, T2)  # a saw b's run of T2 before
    a = sim.add("a", "10.0.0.1", identity=Identity(), issued=T2, peer_ids=PeerIdentities(LABEL, pins))
    old = sim.add("b", "10.0.0.2", identity=ib, issued=T1)  # an older statement of b's identity, replayed
    sim.run(1)
    a.session.chat("b", "hi", sim.now)
    sim.run(3)
    assert len(of(a, KeyReplayed)) == 1
    assert received(old) == []
    with pytest.raises(Blocked):
        a.session.chat("b", "hi again", sim.now)


def test_forged_signature_is_rejected() -> None:
    sim = Sim()
    a = sim.add("a", "10.0.0.1", identity=Identity(), issued=T1, peer_ids=PeerIdentities(LABEL, PinBook()))
    b = sim.add("b", "10.0.0.2", identity=Identity(), issued=T2)
    sim.run(1)
    entry = sim.server.registry.get("b")
    assert entry is not None and entry.info.sig is not None
    bad = bytes([entry.info.sig[0] ^ 1]) + entry.info.sig[1:]
    i = entry.info
    entry.info = PeerInfo(i.id, i.pub, i.priv, i.key, wire.signed(i.ident, bad, i.issued))
    a.session.chat("b", "hi", sim.now)
    sim.run(3)
    assert len(of(a, BadSignature)) == 1
    assert received(b) == []


def test_ephemeral_pins_nothing_and_checks_signatures() -> None:
    sim = Sim()
    a = sim.add("a", "10.0.0.1", identity=Identity(), issued=T1)  # --ephemeral: PeerIdentities(server, None)
    b = sim.add("b", "10.0.0.2", identity=Identity(), issued=T2)
    sim.run(1)
    a.session.chat("b", "one", sim.now)
    sim.run(2)
    ids = a.session.identities
    assert ids is not None and ids.pins is None
    seen = ids.seen("b")
    assert seen is not None and seen.status is Status.UNPINNED
    b.session.close(sim.now)
    sim.run(2)
    other = sim.add("b", "10.0.0.9", identity=Identity(), issued=T2 + 1)
    sim.run(2)
    a.session.chat("b", "two", sim.now)
    sim.run(3)
    assert received(other) == ["two"] and not of(a, IdentityChanged)  # nothing pinned, nothing compared


def test_show_list_pins_nothing() -> None:
    sim = Sim()
    pins = PinBook()
    a = sim.add("a", "10.0.0.1", identity=Identity(), issued=T1, peer_ids=PeerIdentities(LABEL, pins))
    sim.add("b", "10.0.0.2", identity=Identity(), issued=T2)
    sim.run(1)
    a.session.show_list(sim.now)
    sim.run(1)
    (shown,) = of(a, ListShown)
    assert isinstance(shown, ListShown) and [p.id for p in shown.peers] == ["a", "b"]
    assert len(pins) == 0 and not pins.dirty
    assert all(p.ident is None for p in shown.peers)  # the lookup of everyone leaves identities out


# --- the server and the wire ------------------------------------------------------------------------

A = Addr("10.0.0.1", 40000)
PRIV = Addr("192.168.1.2", 40000)


def register(srv: RendezvousServer, msg: wire.Register, now: float = 1.0) -> list[wire.AnyMessage]:
    srv.receive_datagram(wire.encode(msg), A, now)
    return [wire.decode(d) for d, _ in srv.datagrams_to_send()]


def signed_register(identity: Identity, key: bytes, issued: int, **extra: object) -> wire.Register:
    sig = identity.sign("client1", key, issued)
    return wire.Register(id="client1", priv=PRIV, key=key, signed=wire.signed(identity.public, sig, issued), **extra)  # type: ignore[arg-type]


def test_a_session_keeps_its_identity() -> None:
    srv = RendezvousServer(timeout=30, token_factory=tokens())
    me, key = Identity(), bytes(32)
    (challenge,) = register(srv, signed_register(me, key, T1))
    assert isinstance(challenge, wire.Challenge)
    joined = register(srv, signed_register(me, key, T1, cookie=challenge.cookie))
    token = next(m.token for m in joined if isinstance(m, wire.Registered))
    (refused,) = register(srv, signed_register(Identity(), key, T1, token=token))
    assert isinstance(refused, wire.Error) and refused.code == "key_changed"
    (refused,) = register(srv, signed_register(me, key, T2, token=token))
    assert isinstance(refused, wire.Error) and refused.code == "key_changed"
    assert srv.peers()[0].ident == me.public


def test_the_secret_proof_covers_the_identity() -> None:
    cookie = "0" * 32
    plain = auth.proof(b"s", cookie, "client1", PRIV, bytes(32))
    with_ident = auth.proof(b"s", cookie, "client1", PRIV, bytes(32), bytes(32))
    assert plain != with_ident != auth.proof(b"s", cookie, "client1", PRIV, bytes(32), bytes(range(32)))
    srv = RendezvousServer(timeout=30, token_factory=tokens(), secret=b"s")
    me, key = Identity(), bytes(32)
    (challenge,) = register(srv, signed_register(me, key, T1))
    assert isinstance(challenge, wire.Challenge)
    good = auth.proof(b"s", challenge.cookie, "client1", PRIV, key, me.public)
    swapped = signed_register(Identity(), key, T1, cookie=challenge.cookie, proof=good)  # another identity
    (refused,) = register(srv, swapped)
    assert isinstance(refused, wire.Error) and refused.code == "bad_secret"
    joined = register(srv, signed_register(me, key, T1, cookie=challenge.cookie, proof=good))
    assert any(isinstance(m, wire.Registered) for m in joined)


def test_a_client_with_an_identity_proves_the_secret_over_it() -> None:
    sim = Sim(secret=b"s", config=ClientConfig(secret=b"s"))
    me = Identity()
    a = sim.add("a", "10.0.0.1", identity=me, issued=T1)
    sim.run(2)
    entry = sim.server.registry.get("a")
    assert a.session.state.value == "registered" and entry is not None and entry.info.ident == me.public


def test_largest_datagrams_with_identities_fit() -> None:
    v6 = Addr("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", 65535)
    ident, sig = bytes(32), bytes(64)
    info = PeerInfo("x" * 32, v6, v6, bytes(32), wire.signed(ident, sig, 2**63 - 1))
    go = wire.PunchGo(peer=info, attempt=1000, at=-1e12 + 0.123456789, rtt=3599.1234567891234)
    assert len(wire.encode(go)) == 444  # (PROTOCOL.md's figure) room left for the birthday-punching fields
    register = wire.Register(
        id="x" * 32, priv=v6, key=bytes(32), token="f" * 32, cookie="f" * 32, proof="f" * 32,
        signed=wire.signed(ident, sig, 2**63 - 1),
    )  # fmt: skip
    assert len(wire.encode(register)) <= 700
    assert wire.decode(wire.encode(go)) == go
    details = wire.Details(q=2**53, ver=2**53, index=100_000, count=100_000, peers=[info, info])
    assert len(wire.encode(details)) <= wire.MAX_DATAGRAM  # a details page holds at least two


def test_server_pages_signed_details_within_the_limit() -> None:
    srv = RendezvousServer(timeout=30, token_factory=tokens())
    v6 = Addr("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", 65535)
    names = [f"{i:032d}" for i in range(16)]
    for i, name in enumerate(names):
        claim = wire.signed(bytes(32), bytes(64), 2**63 - 1)
        srv.registry.add(PeerInfo(name, Addr("10.0.1.1", 1000 + i), v6, bytes(32), claim), 0)
    me = srv.registry.get(names[0])
    assert me is not None
    srv.receive_datagram(wire.encode(wire.Lookup(id=names[0], token=me.token, q=0, peers=names)), me.info.pub, 1)
    pages = [wire.decode(d) for d, _ in srv.datagrams_to_send()]
    found = [p for page in pages if isinstance(page, wire.Details) for p in page.peers]
    assert sorted(p.id for p in found) == names and all(p.ident == bytes(32) for p in found)
