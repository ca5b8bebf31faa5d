"""The registry's rules, datagram by datagram, with an explicit clock."""

from __future__ import annotations

from natchat.proto import auth, wire
from natchat.proto.events import Deregistered, Disappeared, Moved, RegisteredEvent
from natchat.proto.server import PUNCH_LEAD_MARGIN, PUNCH_SWEEP_STEPS, RendezvousServer, sweep_offset
from natchat.proto.wire import Addr, PeerInfo

from .sim import tokens

A = Addr("10.0.0.1", 53002)
B = Addr("10.0.0.1", 53003)
C = Addr("10.0.0.2", 54264)
PRIV = Addr("192.168.1.2", 10081)


KEY = b"k" * 32
"""The servers' cookie key in these tests, so that a test can show a valid cookie at once."""
PUB = bytes(range(32))
"""A client's public key in these tests (the server lists it and does not use it)."""


def server(timeout: float = 30.0, **settings: object) -> RendezvousServer:
    return RendezvousServer(timeout=timeout, token_factory=tokens(), cookie_key=KEY, **settings)  # type: ignore[arg-type]


def registration(cid: str, src: Addr, now: float, **fields: object) -> wire.Register:
    """A registration from ``src`` with the cookie the server would give it at ``now``."""
    return wire.Register(id=cid, priv=PRIV, key=PUB, cookie=auth.cookie(KEY, src, now), **fields)  # type: ignore[arg-type]


def feed(srv: RendezvousServer, msg: wire.Message, src: Addr, now: float) -> list[tuple[wire.AnyMessage, Addr]]:
    srv.receive_datagram(wire.encode(msg), src, now)
    return [(wire.decode(data), dst) for data, dst in srv.datagrams_to_send()]


def events(srv: RendezvousServer) -> list[object]:
    out = []
    while (event := srv.next_event()) is not None:
        out.append(event)
    return out


def register(srv: RendezvousServer, cid: str, src: Addr, now: float = 0.0) -> str:
    replies = feed(srv, registration(cid, src, now), src, now)
    reg = next(m for m, dst in replies if isinstance(m, wire.Registered) and dst == src)
    return reg.token


def test_registration_reply_and_line() -> None:
    srv = server()
    replies = feed(srv, registration("client1", A, 0.0), A, 0.0)
    reg, dst = replies[0]
    assert isinstance(reg, wire.Registered) and dst == A
    assert reg.pub == A and len(reg.token) == 32 and reg.timeout == 30.0
    page = replies[1][0]
    assert isinstance(page, wire.ListPage) and page.ids() == ["client1"]  # IDs: details are looked up
    assert [e.line() for e in events(srv)] == ["client1 10.0.0.1:53002"]


def test_new_client_is_announced_to_everyone_else() -> None:
    srv = server()
    register(srv, "client1", A)
    replies = feed(srv, registration("client2", B, 1.0), B, 1.0)
    to_a = [m for m, dst in replies if dst == A]
    assert to_a == [wire.ListDelta(ver=2, changes="+client2")]
    assert [p.id for p in srv.peers()] == ["client1", "client2"]


def test_timeout_at_exactly_the_deadline_and_keepalive_refresh() -> None:
    srv = server(timeout=30.0)
    token = register(srv, "client5", C, now=0.0)
    assert srv.get_timer() == 30.0
    replies = feed(srv, wire.KeepAlive(id="client5", token=token, ver=1, rtt=0.0), C, 20.0)
    assert replies == [(wire.Alive(ver=1, pub=C, now=20.0), C)]
    assert srv.get_timer() == 50.0
    srv.handle_timer(49.999)
    assert [p.id for p in srv.peers()] == ["client5"]
    events(srv)
    srv.handle_timer(50.0)
    assert srv.peers() == []
    assert [e.line() for e in events(srv)] == ["client5 is disappeared 10.0.0.2:54264"]
    assert srv.get_timer() is None


def test_sweeper_expires_in_order_of_silence() -> None:
    srv = server(timeout=10.0)
    ta = register(srv, "a", A, 0.0)
    register(srv, "b", B, 1.0)
    feed(srv, wire.KeepAlive(id="a", token=ta, ver=0, rtt=0.0), A, 5.0)
    assert srv.get_timer() == 11.0  # b, silent since 1.0, goes first
    srv.handle_timer(11.0)
    assert [type(e) for e in events(srv)][-1] is Disappeared
    assert [p.id for p in srv.peers()] == ["a"]
    assert srv.get_timer() == 15.0


def test_deregistration_needs_the_token() -> None:
    srv = server()
    token = register(srv, "client2", B)
    register(srv, "client1", A)
    events(srv)
    forged = feed(srv, wire.Deregister(id="client2", token="f" * 32), A, 1.0)
    assert [m for m, _ in forged] == [wire.Error(code="bad_token", msg="wrong session token for client2")]
    assert [p.id for p in srv.peers()] == ["client2", "client1"]
    replies = feed(srv, wire.Deregister(id="client2", token=token), B, 2.0)
    assert (wire.Bye(id="client2"), B) in replies
    assert [e.line() for e in events(srv) if isinstance(e, Deregistered)] == ["client2 is deregistered 10.0.0.1:53003"]
    assert [p.id for p in srv.peers()] == ["client1"]
    gone = [m for m, dst in replies if dst == A]
    assert gone == [wire.ListDelta(ver=3, changes="-client2")]


def test_live_id_cannot_be_taken() -> None:
    srv = server()
    token = register(srv, "client1", A)
    replies = feed(srv, registration("client1", C, 1.0), C, 1.0)
    assert replies == [(wire.Error(code="id_taken", msg="ID client1 is already registered by another client"), C)]
    assert srv.peers() == [PeerInfo("client1", A, PRIV, PUB)]
    # a guessed token does not help either
    replies = feed(srv, registration("client1", C, 1.0, token="0" * 32), C, 1.0)
    assert replies[0][0] == wire.Error(code="id_taken", msg="ID client1 is already registered by another client")
    assert token != "0" * 32


def test_retransmitted_registration_gets_the_same_session() -> None:
    srv = server()
    token = register(srv, "client1", A, 0.0)
    assert register(srv, "client1", A, 0.5) == token
    assert len(srv.peers()) == 1
    assert len([e for e in events(srv) if isinstance(e, RegisteredEvent)]) == 1


def test_rebinding_moves_the_entry_instead_of_adding_one() -> None:
    srv = server()
    token = register(srv, "client1", A)
    register(srv, "client2", C)
    events(srv)
    moved = Addr("10.0.0.1", 61000)
    replies = feed(srv, wire.KeepAlive(id="client1", token=token, ver=2, rtt=0.0), moved, 5.0)
    # the answer names the version sent so far; the move (version 3) follows, to everyone, client1 included
    assert [m for m, dst in replies if dst == moved] == [
        wire.Alive(ver=2, pub=moved, now=5.0),
        wire.ListDelta(ver=3, changes="+client1"),
    ]
    assert srv.peers() == [PeerInfo("client1", moved, PRIV, PUB), PeerInfo("client2", C, PRIV, PUB)]
    assert [e.line() for e in events(srv) if isinstance(e, Moved)] == ["client1 moved 10.0.0.1:53002 -> 10.0.0.1:61000"]
    # a registration with the token from yet another address does the same
    again = Addr("10.0.0.1", 62000)
    feed(srv, wire.Register(id="client1", priv=PRIV, key=PUB, token=token), again, 6.0)
    assert [p.pub for p in srv.peers()] == [again, C]


def test_keepalive_from_an_unknown_session_is_told_to_register() -> None:
    srv = server()
    replies = feed(srv, wire.KeepAlive(id="client1", token="a" * 32, ver=4, rtt=0.0), A, 0.0)
    assert [m.code for m, _ in replies if isinstance(m, wire.Error)] == ["unknown_session"]


def test_malformed_datagrams_are_counted_and_only_registered_senders_hear_why() -> None:
    srv = server()
    register(srv, "client1", A)
    bad = [
        b"\xff\xfe",
        b"not json",
        b'{"t":"nope","v":1}',
        b'{"t":"keepalive","v":1,"id":"client1"}',
        b'{"t":"register","v":1,"id":"a b","priv":["1.2.3.4",1]}',
        b'{"t":"register","v":1,"id":"' + b"x" * 33 + b'","priv":["1.2.3.4",1]}',
        b'{"t":"register","v":2,"id":"ok","priv":["1.2.3.4",1]}',
        b"{" + b" " * 1300 + b"}",
    ]
    for data in bad:
        srv.receive_datagram(data, C, 1.0)
        assert srv.datagrams_to_send() == []
    for data in bad:
        srv.receive_datagram(data, A, 1.0)
        (reply, dst), *rest = [(wire.decode(d), a) for d, a in srv.datagrams_to_send()]
        assert dst == A and isinstance(reply, wire.Error) and reply.code == "malformed" and rest == []
    assert srv.dropped == 2 * len(bad)
    assert [p.id for p in srv.peers()] == ["client1"]


def test_a_client_that_missed_changes_gets_exactly_the_rest() -> None:
    srv = server()
    token = register(srv, "c0", A)
    for i in range(1, 6):
        register(srv, f"c{i}", Addr("10.0.0.9", 1000 + i))
    srv.datagrams_to_send()
    replies = feed(srv, wire.Sync(id="c0", token=token, since=3), A, 1.0)
    deltas = [m for m, _ in replies if isinstance(m, wire.ListDelta)]
    changes = [(m.ver + i, c) for m in deltas for i, c in enumerate(m.changes.split())]
    assert changes == [(4, "+c3"), (5, "+c4"), (6, "+c5")]
    assert feed(srv, wire.Sync(id="c0", token=token, since=6), A, 1.0) == []


def test_snapshot_is_paged_under_the_datagram_limit() -> None:
    srv = server()
    for i in range(400):
        register(srv, f"client-with-a-long-name-{i:04d}", Addr("2001:db8::1234:5678", 10000 + i))
    srv.datagrams_to_send()
    srv.receive_datagram(wire.encode(registration("late", A, 1.0)), A, 1.0)
    datagrams = srv.datagrams_to_send()
    to_late = [wire.decode(d) for d, dst in datagrams if dst == A]
    pages = [m for m in to_late if isinstance(m, wire.ListPage)]
    assert len(pages) > 10
    assert all(len(d) <= wire.MAX_DATAGRAM for d, _ in datagrams)
    assert {p.count for p in pages} == {len(pages)}
    assert [cid for page in pages for cid in page.ids()] == [p.id for p in srv.peers()]


def test_punch_from_registered_sockets_tells_both_at_once() -> None:
    srv = server()
    ta = register(srv, "a", A)
    tb = register(srv, "b", C)
    srv.datagrams_to_send()
    feed(srv, wire.KeepAlive(id="b", token=tb, ver=2, rtt=0.08), C, 0.5)  # b is far away
    replies = feed(srv, wire.PunchRequest(id="a", token=ta, peer="b", attempt=1, priv=PRIV, rtt=0.01), A, 1.0)
    at = 1.0 + 0.08 + PUNCH_LEAD_MARGIN  # both go's arrive in time for one shared moment
    assert replies == [
        (wire.PunchGo(peer=PeerInfo("b", C, PRIV, PUB), attempt=1, at=at, rtt=0.08), A),
        (wire.PunchGo(peer=PeerInfo("a", A, PRIV, PUB), attempt=1, at=at, rtt=0.08), C),
    ]


def test_punch_from_fresh_sockets_waits_for_both_then_tells_both() -> None:
    srv = server()
    ta = register(srv, "a", A)
    tb = register(srv, "b", C)
    srv.datagrams_to_send()
    a2, b2 = Addr("10.0.0.1", 40001), Addr("10.0.0.2", 40002)
    pa, pb = Addr("192.168.1.2", 5555), Addr("192.168.2.2", 6666)
    replies = feed(srv, wire.PunchRequest(id="a", token=ta, peer="b", attempt=2, priv=pa, rtt=0.0), a2, 1.0)
    assert replies == [(wire.PunchInvite(peer="a", attempt=2), C)]
    replies = feed(srv, wire.PunchRequest(id="b", token=tb, peer="a", attempt=2, priv=pb, rtt=0.0), b2, 1.1)
    assert sorted(replies, key=lambda r: r[1].port) == [
        (wire.PunchGo(peer=PeerInfo("b", b2, pb, PUB), attempt=2, at=1.1 + PUNCH_LEAD_MARGIN + 5e-6), a2),
        (wire.PunchGo(peer=PeerInfo("a", a2, pa, PUB), attempt=2, at=1.1 + PUNCH_LEAD_MARGIN - 5e-6), b2),
    ]
    assert [p.pub for p in srv.peers()] == [A, C]  # punching sockets do not move the registration


def test_successive_attempts_sweep_the_start_difference() -> None:
    offsets = {n: round(sweep_offset(n) * 1e6) for n in range(1, 4 * 88 + 1)}  # (microseconds)
    assert [offsets[n] for n in range(1, 9)] == [0, 10, -10, 140, 20, -20, 30, -140]
    inner = [us for n, us in offsets.items() if n % 4]  # three attempts in four: 0, +-10 ... +-120
    assert sorted(set(inner)) == list(range(-120, 121, 10)) and inner[25:50] == inner[:25]  # each once a cycle
    outer = [us for n, us in offsets.items() if n % 4 == 0]  # every fourth: +-140 ... +-1000, each once
    assert sorted(outer) == [*range(-1000, -139, 20), *range(140, 1001, 20)]
    assert PUNCH_SWEEP_STEPS == 12 and sweep_offset(4 * 89) == sweep_offset(4)  # then again


def test_punch_to_unknown_peer_is_an_error() -> None:
    srv = server()
    ta = register(srv, "a", A)
    replies = feed(srv, wire.PunchRequest(id="a", token=ta, peer="ghost", attempt=1, priv=PRIV, rtt=0.0), A, 1.0)
    assert replies == [(wire.Error(code="unknown_peer", msg="ghost is not registered", peer="ghost"), A)]


def test_capacity_refuses_registration_beyond_max_clients() -> None:
    srv = server(max_clients=2)
    ta = register(srv, "a", A)
    register(srv, "b", B)
    replies = feed(srv, registration("c", C, 1.0), C, 1.0)
    assert replies == [(wire.Error(code="server_full", msg="the server is full: 2 clients are registered"), C)]
    assert [p.id for p in srv.peers()] == ["a", "b"]
    feed(srv, wire.Register(id="a", priv=PRIV, key=PUB, token=ta), A, 2.0)  # a known session still gets in
    feed(srv, wire.Deregister(id="a", token=ta), A, 3.0)
    assert register(srv, "c", C, 4.0)  # room again
    assert [p.id for p in srv.peers()] == ["b", "c"]


def test_lookup_gives_the_details_of_whom_was_asked_and_everyone_once_a_second() -> None:
    srv = server()
    ta = register(srv, "a", A)
    register(srv, "b", B)
    srv.datagrams_to_send()
    replies = feed(srv, wire.Lookup(id="a", token=ta, q=0, peers=["b", "nobody", "b"]), A, 1.0)
    assert replies == [(wire.Details(q=0, ver=2, index=0, count=1, peers=[PeerInfo("b", B, PRIV, PUB)]), A)]
    everyone = feed(srv, wire.Lookup(id="a", token=ta, q=7, peers=None), A, 1.0)
    assert [m.peers for m, _ in everyone if isinstance(m, wire.Details)] == [
        [PeerInfo("a", A, PRIV, PUB), PeerInfo("b", B, PRIV, PUB)]
    ]
    again = feed(srv, wire.Lookup(id="a", token=ta, q=8, peers=None), A, 1.5)
    assert [m.code for m, _ in again if isinstance(m, wire.Error)] == ["too_often"]
    assert isinstance(feed(srv, wire.Lookup(id="a", token=ta, q=9, peers=None), A, 2.0)[0][0], wire.Details)
    forged = feed(srv, wire.Lookup(id="a", token="f" * 32, q=0, peers=["b"]), A, 3.0)
    assert [m for m, _ in forged] == [wire.Error(code="bad_token", msg="wrong session token for a")]


def test_everyones_details_are_paged_under_the_datagram_limit() -> None:
    srv = server()
    token = register(srv, "c0", A)
    for i in range(1, 40):
        register(srv, f"client-with-a-long-name-{i:04d}", Addr("2001:db8::1234:5678", 10000 + i))
    srv.datagrams_to_send()
    srv.receive_datagram(wire.encode(wire.Lookup(id="c0", token=token, q=5, peers=None)), A, 1.0)
    datagrams = srv.datagrams_to_send()
    pages = [wire.decode(d) for d, _ in datagrams]
    assert len(pages) > 3 and all(len(d) <= wire.MAX_DATAGRAM for d, _ in datagrams)
    assert all(isinstance(p, wire.Details) and p.count == len(pages) and p.q == 5 for p in pages)
    assert [p.id for page in pages if isinstance(page, wire.Details) for p in page.peers] == [p.id for p in srv.peers()]


def test_changes_made_while_the_shell_is_busy_share_deltas() -> None:
    srv = server()
    register(srv, "a", A, 0.0)
    replies = feed(srv, registration("b", B, 5.0), B, 5.0)
    assert (wire.ListDelta(ver=2, changes="+b"), A) in replies  # an idle shell: at once
    for i in range(200):  # the shell is busy: it does not ask for more meanwhile
        src = Addr("10.0.0.9", 2000 + i)
        srv.receive_datagram(wire.encode(registration(f"storm-{i:03d}", src, 5.01)), src, 5.01)
    to_a = [wire.decode(d) for d, dst in srv.datagrams_to_send() if dst == A]
    deltas = [m for m in to_a if isinstance(m, wire.ListDelta)]
    assert [c for m in deltas for c in m.changes.split()] == [f"+storm-{i:03d}" for i in range(200)]
    assert len(deltas) <= 3  # 200 changes, not 200 deltas: full datagrams, and the rest
    assert all(len(wire.encode(m)) > wire.MAX_DATAGRAM - 40 for m in deltas[:-1])


def test_a_retransmitted_registration_is_answered_without_the_list_again() -> None:
    srv = server()
    register(srv, "a", A)
    first = feed(srv, registration("b", B, 1.0), B, 1.0)
    assert any(isinstance(m, wire.ListPage) for m, dst in first if dst == B)
    again = feed(srv, registration("b", B, 1.5), B, 1.5)  # the answer was slow: b asks again
    assert [type(m) for m, _ in again] == [wire.Registered]
    assert again[0][0].token == next(m.token for m, _ in first if isinstance(m, wire.Registered))


def test_everyones_details_have_a_server_wide_budget() -> None:
    """Many @show_list at once on a big server: a few are answered at a time, the others asked again."""
    from natchat.proto.server import SHOW_PAGES_RATE

    srv = server()
    tokens = {f"c{i}": register(srv, f"c{i}", Addr("10.0.9.1", 1000 + i)) for i in range(2000)}
    srv.datagrams_to_send()
    answered = refused = 0
    for cid, token in tokens.items():
        src = Addr("10.0.9.1", 1000 + int(cid[1:]))
        replies = feed(srv, wire.Lookup(id=cid, token=token, q=1, peers=None), src, 5.0)
        if any(isinstance(m, wire.Details) for m, _ in replies):
            answered += 1
        else:
            assert [m.code for m, _ in replies if isinstance(m, wire.Error)] == ["too_often"]
            refused += 1
    assert answered == int(2 * SHOW_PAGES_RATE // (2000 // 10 + 1)) and refused == 2000 - answered
    later = feed(srv, wire.Lookup(id="c1999", token=tokens["c1999"], q=2, peers=None), Addr("10.0.9.1", 2999), 6.0)
    assert any(isinstance(m, wire.Details) for m, _ in later)  # the budget refills
