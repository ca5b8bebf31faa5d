"""Who may register, and what strangers can get out of the server: cookies, the pre-shared secret,
forged tokens, amplification and per-source rate limits, datagram by datagram with explicit time."""

from __future__ import annotations

import msgspec

from natchat.proto import auth, wire
from natchat.proto.client import ClientConfig, State
from natchat.proto.events import Refused
from natchat.proto.ratelimit import RateLimiter
from natchat.proto.server import RendezvousServer
from natchat.proto.wire import Addr

from .sim import Sim
from .test_proto_server import KEY, PRIV, PUB, feed, register, server

A = Addr("10.0.0.1", 53002)
B = Addr("10.0.0.2", 54264)
VICTIM = Addr("10.0.0.66", 4000)
SECRET = b"correct horse battery staple"


def stranger_replies(srv: RendezvousServer, msg: wire.Message | bytes, src: Addr, now: float = 1.0) -> list[bytes]:
    data = msg if isinstance(msg, bytes) else wire.encode(msg)
    srv.receive_datagram(data, src, now)
    out = srv.datagrams_to_send()
    assert all(dst == src for _, dst in out)
    return [d for d, _ in out]


# --- cookies ------------------------------------------------------------------------------------------


def test_registration_without_a_cookie_gets_one_small_challenge_and_nothing_else() -> None:
    srv = server()
    register(srv, "client1", A)
    request = wire.encode(wire.Register(id="client2", priv=PRIV, key=PUB))
    (reply,) = stranger_replies(srv, request, VICTIM)
    challenge = wire.decode(reply)
    assert isinstance(challenge, wire.Challenge) and not challenge.secret
    assert len(reply) <= 2 * len(request)
    assert [p.id for p in srv.peers()] == ["client1"]  # nothing registered, nothing about client1 sent


def test_a_cookie_is_good_for_its_address_and_about_a_minute() -> None:
    srv = server()
    cookie = auth.cookie(KEY, A, 100.0)
    for src, now, admitted in ((B, 100.0, False), (A, 100.0 + auth.COOKIE_WINDOW, True)):
        replies = feed(srv, wire.Register(id="x", priv=PRIV, key=PUB, cookie=cookie), src, now)
        assert isinstance(replies[0][0], wire.Registered) is admitted, (src, now)
    srv2 = server()
    late = feed(srv2, wire.Register(id="x", priv=PRIV, key=PUB, cookie=cookie), A, 100.0 + 2 * auth.COOKIE_WINDOW)
    assert [type(m) for m, _ in late] == [wire.Challenge]


def test_a_known_session_moves_without_a_cookie() -> None:
    srv = server()
    token = register(srv, "client1", A)
    replies = feed(srv, wire.Register(id="client1", priv=PRIV, key=PUB, token=token), B, 5.0)
    assert [m for m, dst in replies if isinstance(m, wire.Registered) and dst == B]
    assert srv.peers()[0].pub == B


# --- the secret ---------------------------------------------------------------------------------------


def test_secret_proof_is_required_checked_and_bound_to_cookie_and_id() -> None:
    srv = server(secret=SECRET)
    cookie = auth.cookie(KEY, A, 1.0)
    (reply,) = stranger_replies(srv, wire.Register(id="a", priv=PRIV, key=PUB), A)
    assert wire.decode(reply) == wire.Challenge(cookie=cookie, secret=True)
    no_proof = feed(srv, wire.Register(id="a", priv=PRIV, key=PUB, cookie=cookie), A, 1.0)
    assert [(m.code, dst) for m, dst in no_proof] == [("secret_required", A)]  # type: ignore[union-attr]
    wrong = auth.proof(b"wrong", cookie, "a", PRIV, PUB)
    bad = feed(srv, wire.Register(id="a", priv=PRIV, key=PUB, cookie=cookie, proof=wrong), A, 1.0)
    assert [m.code for m, _ in bad] == ["bad_secret"]  # type: ignore[union-attr]
    other_id = auth.proof(SECRET, cookie, "b", PRIV, PUB)
    other = feed(srv, wire.Register(id="a", priv=PRIV, key=PUB, cookie=cookie, proof=other_id), A, 1.0)
    assert [m.code for m, _ in other] == ["bad_secret"]  # type: ignore[union-attr]
    good = auth.proof(SECRET, cookie, "a", PRIV, PUB)
    # replayed from another address, the proof is useless: its cookie belongs to A
    replayed = feed(srv, wire.Register(id="a", priv=PRIV, key=PUB, cookie=cookie, proof=good), B, 1.0)
    assert [type(m) for m, _ in replayed] == [wire.Challenge]
    assert srv.peers() == []
    replies = feed(srv, wire.Register(id="a", priv=PRIV, key=PUB, cookie=cookie, proof=good), A, 1.0)
    assert isinstance(replies[0][0], wire.Registered)


def test_clients_with_the_secret_chat_and_the_secret_never_travels() -> None:
    sim = Sim(relay=True, secret=SECRET, config=ClientConfig(secret=SECRET))
    a = sim.add("a", "10.0.0.1")
    b = sim.add("b", "10.0.0.2")
    sim.run(1)
    a.session.chat("b", "hello", sim.now)
    sim.run(1)
    assert [e.line() for e in b.events if type(e).__name__ == "ChatReceived"] == ["From a [hello]"]
    assert not any(SECRET in data for _, _, data in sim.sent)


def test_client_without_or_with_a_wrong_secret_is_refused_clearly() -> None:
    sim = Sim(secret=SECRET)
    none = sim.add("none")
    wrong = sim.add("wrong", config=ClientConfig(secret=b"guess"))
    sim.run(2)
    assert none.session.state is State.DONE and wrong.session.state is State.DONE
    assert [e.line() for e in none.events if isinstance(e, Refused)] == [
        "error: the server requires a secret: give it with --secret or NATCHAT_SECRET"
    ]
    assert [e.line() for e in wrong.events if isinstance(e, Refused)] == [
        "error: wrong secret: the server refused the registration"
    ]
    assert sim.registry() == []


def test_a_client_with_a_secret_is_told_when_the_server_checks_none() -> None:
    sim = Sim()
    a = sim.add("a", config=ClientConfig(secret=SECRET))
    sim.run(1)
    assert a.session.state is State.REGISTERED
    assert [e.line() for e in a.events if type(e).__name__ == "Notice"] == ["the server does not check the secret"]


# --- tokens -------------------------------------------------------------------------------------------


def test_forged_keepalive_deregister_and_moves_leave_the_victim_alone() -> None:
    sim = Sim()
    a = sim.add("a", "10.0.0.1")
    sim.add("b", "10.0.0.2")
    sim.run(1)
    before = sim.registry()
    attacker = Addr("10.0.0.9", 6666)
    for msg in (
        wire.KeepAlive(id="a", token="f" * 32, ver=0, rtt=0.0),
        wire.Deregister(id="a", token="f" * 32),
        wire.Register(id="a", priv=PRIV, key=PUB, token="f" * 32, cookie=auth.cookie(b"?" * 32, attacker, sim.now)),
        wire.Sync(id="a", token="f" * 32, since=0),
    ):
        sim.server.receive_datagram(wire.encode(msg), attacker, sim.now)
    sim.run(30)
    assert sim.registry() == before
    assert a.session.state is State.REGISTERED


# --- amplification ------------------------------------------------------------------------------------


def test_strangers_get_at_most_one_reply_of_at_most_twice_their_size_and_no_list() -> None:
    srv = server(relay=True)
    token = register(srv, "client1", A)
    register(srv, "client2", B)
    srv.datagrams_to_send()
    inner = wire.Chat(src="client1", dst="client2", stream=1, base=1, seq=1, group=False, n=bytes(12), box=bytes(18))
    requests: list[bytes] = [
        b"x",
        b"{}",
        b'{"t":"keepalive"}',
        wire.encode(wire.Register(id="client1", priv=PRIV, key=PUB)),
        wire.encode(wire.Register(id="c", priv=PRIV, key=PUB, cookie="0" * 32)),
        wire.encode(wire.KeepAlive(id="client1", token="f" * 32, ver=0, rtt=0.0)),
        wire.encode(wire.KeepAlive(id="ghost", token="f" * 32, ver=0, rtt=0.0)),
        wire.encode(wire.Deregister(id="client1", token="f" * 32)),
        wire.encode(wire.Sync(id="client1", token="f" * 32, since=0)),
        wire.encode(wire.PunchRequest(id="client1", token="f" * 32, peer="client2", attempt=1, priv=PRIV, rtt=0.0)),
        wire.encode(wire.Relay(id="client1", token="f" * 32, dst="client2", data=msgspec.Raw(wire.encode(inner)))),
        wire.encode(wire.Alive(ver=1, pub=A, now=0.0)),
    ]
    assert token
    for request in requests:
        replies = stranger_replies(srv, request, VICTIM)
        assert len(replies) <= 1, request
        for reply in replies:
            assert len(reply) <= 2 * len(request), (request, reply)
            assert not isinstance(wire.decode(reply), wire.ListPage | wire.ListDelta | wire.Relayed)


# --- rate limits --------------------------------------------------------------------------------------


def test_rate_limiter_buckets_refill_and_memory_is_bounded() -> None:
    limiter = RateLimiter(rate=10, burst=20, max_sources=100)
    assert sum(limiter.allow(A, 0.0) for _ in range(100)) == 20
    assert sum(limiter.allow(A, 1.0) for _ in range(100)) == 10
    assert limiter.allow(B, 1.0)  # others are not held back
    for port in range(1000):
        limiter.allow(Addr("10.0.0.9", port), 2.0)
    assert len(limiter) == 100


def test_a_flood_from_one_address_does_not_stop_the_others() -> None:
    sim = Sim(timeout=3.0, config=ClientConfig(keepalive=1.0))
    nodes = [sim.add(f"c{i}", f"10.0.0.{i + 1}") for i in range(5)]
    sim.run(2)
    flooder = Addr("10.0.0.99", 9999)
    garbage = wire.encode(wire.KeepAlive(id="c0", token="f" * 32, ver=0, rtt=0.0))
    for _ in range(30):  # 30 s of 10,000 forged keepalives a second
        for _ in range(10_000):
            sim.server.receive_datagram(garbage, flooder, sim.now)
        sim.server.datagrams_to_send()
        sim.run(1.0)
    assert sim.server.rate_limited >= 300_000 - 2 * 400 - 30 * 400  # all but a burst and 400 a second
    assert sim.registry() == [f"c{i}" for i in range(5)]
    nodes[0].session.chat("c4", "still here", sim.now)
    sim.run(1)
    assert [e.line() for e in nodes[4].events if type(e).__name__ == "ChatReceived"] == ["From c0 [still here]"]


def test_a_server_that_challenges_is_there_the_client_keeps_trying() -> None:
    """register_within is for a server that never answers; one whose challenges arrive (heavy loss
    took the rest) is there, and the client keeps registering until it gets through."""
    sim = Sim(config=ClientConfig(register_within=10))
    sim.drop = lambda src, dst, data: isinstance(wire.decode(data), wire.Registered)
    a = sim.add("a")
    sim.run(15)
    assert a.session.state is State.REGISTERING
    sim.drop = lambda *_: False
    sim.run(11)
    assert a.session.state is State.REGISTERED and not [e for e in a.events if isinstance(e, Refused)]


def test_datagrams_naming_unlooked_up_peers_cost_bounded_lookups() -> None:
    """Anyone can send a datagram that names any listed peer as its sender. The client holds such
    datagrams while it looks the peer's key up, but for 64 peers at most: a forger cannot make it
    flood the server with lookups (nor fill its memory)."""
    from natchat.proto.client import HELD_MAX, HELD_PEERS, MAIN, ClientSession
    from natchat.proto.wire import PeerInfo

    server_addr, now = Addr("10.0.0.3", 10080), 1000.0
    session = ClientSession("me", server_addr, Addr("192.168.1.2", 10081))
    session.start(now)
    token = "ab" * 16
    registered = wire.Registered(id="me", token=token, pub=A, timeout=30.0, now=now)
    session.receive_datagram(wire.encode(registered), MAIN, server_addr, now)
    peers = [f"peer{i}" for i in range(200)]
    page = wire.ListPage(ver=200, index=0, count=1, peers=" ".join(["me", *peers[:100]]))
    session.receive_datagram(wire.encode(page), MAIN, server_addr, now)
    page2 = wire.ListDelta(ver=201, changes=" ".join(f"+{p}" for p in peers[100:]))
    session.receive_datagram(wire.encode(page2), MAIN, server_addr, now)
    assert len(session.peers()) == 201
    session.actions()
    for peer in peers:
        for seq in range(1, 12):
            forged = wire.Chat(src=peer, dst="me", stream=7, base=1, seq=seq, group=False, n=bytes(12), box=b"x" * 20)
            session.receive_datagram(wire.encode(forged), MAIN, VICTIM, now)
    asked = [p for a in session.actions() for p in (wire.decode(a.data).peers or [])]  # type: ignore[attr-defined]
    assert len(asked) == HELD_PEERS and len(set(asked)) == HELD_PEERS
    held = session.held_for_keys()
    assert len(held) == HELD_PEERS and all(n == HELD_MAX for n in held.values())
    # the server answers for the first: the held forgeries are opened, rejected, and dropped
    answer = wire.Details(q=0, ver=201, index=0, count=1, peers=[PeerInfo(asked[0], B, PRIV, PUB)])
    session.receive_datagram(wire.encode(answer), MAIN, server_addr, now)
    assert asked[0] not in session.held_for_keys() and session.rejected == HELD_MAX
    assert not [e for e in iter(session.next_event, None) if type(e).__name__ == "ChatReceived"]
