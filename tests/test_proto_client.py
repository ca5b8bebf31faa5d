"""Client sessions and the server together on a hand-driven network with a manual clock."""

from __future__ import annotations

import itertools

import pytest

from natchat.proto import wire
from natchat.proto.client import MAIN, ClientConfig, NoPeers, Send, State, UnknownPeer
from natchat.proto.events import (
    ChatReceived,
    DeliveryFailed,
    Joined,
    Left,
    ListChanged,
    ListShown,
    Notice,
    Refused,
    ServerLost,
)
from natchat.proto.wire import Addr

from .sim import SERVER, Sim


def five(sim: Sim) -> None:
    sim.add("client1", "10.0.0.1")
    sim.add("client2", "10.0.0.1")
    sim.add("client3", "10.0.0.4", nat=False)
    sim.add("client4", "10.0.0.2")
    sim.add("client5", "10.0.0.2")


def chats(node: object) -> list[str]:
    return [e.line() for e in node.events if isinstance(e, ChatReceived)]  # type: ignore[attr-defined]


def test_five_clients_register_and_every_list_equals_the_registry() -> None:
    sim = Sim()
    five(sim)
    sim.run(1)
    registry = sim.registry()
    assert registry == ["client1", "client2", "client3", "client4", "client5"]
    assert all(lst == registry for lst in sim.lists().values())
    assert sim.server_lines() == [f"{p.id} {p.pub}" for p in sim.server.peers()]
    assert all(isinstance(n.events[0], Joined) for n in sim.nodes.values())


def test_lists_converge_under_heavy_loss() -> None:
    sim = Sim(config=ClientConfig(keepalive=2.0), timeout=60)
    sim.lossy(0.3)
    five(sim)
    sim.run(30)
    sim.drop = lambda *_: False
    sim.run(5)  # one keepalive round without loss: version gaps are noticed and filled
    registry = sim.registry()
    assert len(registry) == 5
    assert all(lst == registry for lst in sim.lists().values())


def test_keepalives_keep_clients_registered_and_silence_makes_them_disappear() -> None:
    sim = Sim(timeout=30)
    five(sim)
    sim.run(300)
    assert len(sim.registry()) == 5
    sim.drop = lambda src, dst, data: src.port == sim.nodes["client5"].public(MAIN).port
    sim.run(19.9)  # its last keepalive was at most 10 s before the silence began: not yet 30 s ago
    assert len(sim.registry()) == 5
    sim.run(10.2)  # and at least 0 s before: more than 30 s ago now
    assert sim.registry() == ["client1", "client2", "client3", "client4"]
    assert sim.server_lines()[-1].startswith("client5 is disappeared ")
    for cid in ("client1", "client2", "client3", "client4"):
        assert sim.lists()[cid] == sim.registry()


def test_exit_deregisters_and_everyone_sees_it() -> None:
    sim = Sim()
    five(sim)
    sim.run(1)
    for cid in ("client4", "client3"):
        sim.nodes[cid].session.close(sim.now)
    sim.run(1)
    assert sorted(sim.server_lines()[-2:]) == [
        f"client3 is deregistered {sim.nodes['client3'].public(MAIN)}",
        f"client4 is deregistered {sim.nodes['client4'].public(MAIN)}",
    ]
    for cid in ("client4", "client3"):
        assert sim.nodes[cid].events[-1] == Left(acknowledged=True)
        assert sim.nodes[cid].session.state is State.DONE
    assert all(sim.lists()[c] == sim.registry() for c in ("client1", "client2", "client5"))


def test_exit_without_an_answer_still_ends_in_bounded_time() -> None:
    sim = Sim()
    sim.add("a")
    sim.run(1)
    sim.server_up = False
    sim.nodes["a"].session.close(sim.now)
    sim.run(0.6)
    assert sim.nodes["a"].events[-1] == Left(acknowledged=False)


def test_taken_id_is_refused() -> None:
    sim = Sim()
    sim.add("client1", "10.0.0.1")
    sim.run(1)
    dup = sim.add("client1", "10.0.0.2")
    sim.run(1)
    assert dup.events == [Refused("id_taken", "ID client1 is already registered by another client")]
    assert dup.session.state is State.DONE
    assert len(sim.registry()) == 1


def test_no_server_gives_up_after_register_within() -> None:
    sim = Sim(config=ClientConfig(register_within=10))
    sim.server_up = False
    node = sim.add("a")
    sim.run(9.9)
    assert node.events == []
    sim.run(0.2)
    assert [e.code for e in node.events if isinstance(e, Refused)] == ["no_answer"]


def test_server_restart_clients_register_again_by_themselves() -> None:
    sim = Sim(config=ClientConfig(keepalive=10))
    five(sim)
    sim.run(5)
    sim.restart_server()
    sim.run(11)  # within one keepalive interval
    registry = sim.registry()
    assert len(registry) == 5
    assert all(lst == registry for lst in sim.lists().values())
    for node in sim.nodes.values():
        assert [e.again for e in node.events if isinstance(e, Joined)] == [False, True]
    sim.nodes["client1"].session.chat("client4", "still here", sim.now)
    sim.run(2)
    assert chats(sim.nodes["client4"]) == ["From client1 [still here]"]


def test_silent_server_is_noticed() -> None:
    sim = Sim(config=ClientConfig(keepalive=10))
    node = sim.add("a")
    sim.run(1)
    sim.server_up = False
    sim.run(25)
    assert any(isinstance(e, ServerLost) for e in node.events)
    assert node.session.state is State.REGISTERING
    sim.server_up = True
    sim.restart_server()
    sim.run(12)
    assert node.session.state is State.REGISTERED
    assert [(p.id, p.pub) for p in sim.server.peers()] == [("a", node.public(MAIN))]


def test_chat_ring_is_delivered_directly_never_through_the_server() -> None:
    sim = Sim()
    five(sim)
    sim.run(1)
    ring = ["client1", "client2", "client3", "client4", "client5", "client1"]
    for src, dst in itertools.pairwise(ring):
        sim.nodes[src].session.chat(dst, f"hi from {src}", sim.now)
    sim.run(2)
    for src, dst in itertools.pairwise(ring):
        assert chats(sim.nodes[dst]) == [f"From {src} [hi from {src}]"]
    for _, dst, data in sim.sent:
        if dst == SERVER:
            assert not isinstance(wire.decode(data), wire.Chat)


def test_same_nat_peers_use_private_addresses() -> None:
    sim = Sim()
    a = sim.add("a", "10.0.0.1")
    b = sim.add("b", "10.0.0.1")
    sim.run(1)
    a.session.chat("b", "psst", sim.now)
    sim.run(1)
    assert chats(b) == ["From a [psst]"]
    chat_dsts = {dst for _, dst, data in sim.sent if isinstance(wire.decode(data), wire.Chat)}
    assert chat_dsts == {b.sockets[MAIN]}
    assert a.session.path("b") == ("up", b.sockets[MAIN])


def test_delivery_is_exactly_once_and_in_order_under_loss() -> None:
    sim = Sim(config=ClientConfig(deliver_within=30))
    a = sim.add("a", "10.0.0.1")
    b = sim.add("b", "10.0.0.2")
    sim.run(1)
    sim.lossy(0.3)
    for i in range(40):
        a.session.chat("b", f"m{i}", sim.now)
        sim.run(0.05)
    sim.run(30)
    assert chats(b) == [f"From a [m{i}]" for i in range(40)]
    assert not any(isinstance(e, DeliveryFailed) for e in a.events)


def test_retransmitted_duplicates_are_not_shown_twice() -> None:
    sim = Sim()
    a = sim.add("a", "10.0.0.1")
    b = sim.add("b", "10.0.0.2")
    sim.run(1)
    # lose every acknowledgement for a while: the message is retransmitted several times
    sim.drop = lambda src, dst, data: isinstance(wire.decode(data), wire.ChatAck)
    a.session.chat("b", "once", sim.now)
    sim.run(2)
    copies = sum(1 for _, _, d in sim.sent if isinstance(wire.decode(d), wire.Chat))
    assert copies >= 3
    sim.drop = lambda *_: False
    sim.run(3)
    assert chats(b) == ["From a [once]"]
    assert a.session.unacknowledged("b") == []


def test_undeliverable_message_reports_one_line_each_in_bounded_time() -> None:
    sim = Sim(config=ClientConfig(deliver_within=10))
    a = sim.add("a", "10.0.0.1")
    b = sim.add("b", "10.0.0.2")
    sim.run(1)
    sim.drop = lambda src, dst, data: SERVER not in (src, dst)  # no path between the peers at all
    a.session.chat("b", "one", sim.now)
    a.session.chat("b", "two", sim.now)
    sim.run(9.9)
    assert [e for e in a.events if isinstance(e, DeliveryFailed)] == []
    sim.run(0.2)
    assert [e.line() for e in a.events if isinstance(e, DeliveryFailed)] == [
        "could not deliver to b: no direct path within 10 s [one]",
        "could not deliver to b: no direct path within 10 s [two]",
    ]
    assert chats(b) == []
    # the next message starts a new stream and is delivered once the path works
    sim.drop = lambda *_: False
    a.session.chat("b", "three", sim.now)
    sim.run(2)
    assert chats(b) == ["From a [three]"]


def test_failed_attempt_is_retried_from_a_fresh_port() -> None:
    """The conntrack trap: nothing sent between the peers' registered sockets ever arrives."""
    sim = Sim()
    a = sim.add("a", "10.0.0.1")
    b = sim.add("b", "10.0.0.2")
    sim.run(1)
    mains = {a.public(MAIN), b.public(MAIN)}
    sim.drop = lambda src, dst, data: src in mains and dst in mains
    a.session.chat("b", "through a fresh port", sim.now)
    sim.run(5)
    assert chats(b) == ["From a [through a fresh port]"]
    (a_sock,) = [s for s in a.sockets if s != MAIN]
    (b_sock,) = [s for s in b.sockets if s != MAIN]
    assert a.session.path("b") == ("up", b.public(b_sock))
    assert b.session.path("a") == ("up", a.public(a_sock))
    # and the reply takes the same path, at once
    b.session.chat("a", "back", sim.now)
    sim.run(0.5)
    assert chats(a) == ["From b [back]"]


def _probes_of_attempt(pair_rtt: float) -> list[float]:
    """When a sent its probes for one go (attempt 50, with ``rtt`` = ``pair_rtt``) that nothing answers."""
    sim = Sim()
    a = sim.add("a", "10.0.0.1")
    sim.add("b", "10.0.0.2")
    sim.run(1)
    sim.drop = lambda src, dst, data: {src.host, dst.host} == {"10.0.0.1", "10.0.0.2"}
    info = sim.server.registry.get("b").info  # type: ignore[union-attr]
    go = wire.PunchGo(peer=info, attempt=50, at=sim.now, rtt=pair_rtt)
    start, times = sim.now, []
    a.session.receive_datagram(wire.encode(go), MAIN, SERVER, sim.now)
    for _ in range(100):
        before = len(sim.sent)
        sim.run(0.01)
        for src, dst, data in sim.sent[before:]:
            msg = wire.decode(data) if dst.host == "10.0.0.2" and src.host == "10.0.0.1" else None
            if isinstance(msg, wire.Probe) and msg.attempt == 50:
                times.append(round(sim.now - start, 2))
    return times


def test_an_attempt_lasts_as_many_round_trips_of_the_slower_peer() -> None:
    """Near the server (the simulation's round trips are 0) an attempt lasts ``attempt_min``; a go that
    says the peer is 50 ms away stretches it to 10 of the peer's round trips, in time for its probes."""
    config = ClientConfig()
    assert len(_probes_of_attempt(0.0)) == 1  # (attempt_min 40 ms: one probe, the next would be at 100 ms)
    far = _probes_of_attempt(0.05)
    assert len(far) == 5 and far[-1] <= config.attempt_rtts * 0.05  # probes at 0, 0.1 ... 0.4 s


def test_dead_path_is_punched_again_without_losing_messages() -> None:
    sim = Sim(config=ClientConfig(deliver_within=20))
    a = sim.add("a", "10.0.0.1")
    b = sim.add("b", "10.0.0.2")
    sim.run(1)
    a.session.chat("b", "first", sim.now)
    sim.run(1)
    mains = {a.public(MAIN), b.public(MAIN)}
    sim.drop = lambda src, dst, data: src in mains and dst in mains  # the old path dies
    a.session.chat("b", "second", sim.now)
    a.session.chat("b", "third", sim.now)
    sim.run(10)
    assert chats(b) == ["From a [first]", "From a [second]", "From a [third]"]


def test_peer_leaving_fails_its_queued_messages() -> None:
    sim = Sim()
    a = sim.add("a", "10.0.0.1")
    b = sim.add("b", "10.0.0.2")
    sim.run(1)
    sim.drop = lambda src, dst, data: dst.host == "10.0.0.2" and src != SERVER
    a.session.chat("b", "wait for me", sim.now)
    sim.run(0.5)
    b.session.close(sim.now)
    sim.run(1)
    assert [e.line() for e in a.events if isinstance(e, DeliveryFailed)] == [
        "could not deliver to b: b left [wait for me]"
    ]


def test_chat_to_unknown_or_self_is_refused() -> None:
    sim = Sim()
    a = sim.add("a")
    sim.run(1)
    for target in ("nobody", "a"):
        try:
            a.session.chat(target, "hi", sim.now)
        except UnknownPeer as exc:
            assert str(exc) == target
        else:
            raise AssertionError(f"chat to {target} accepted")


def test_sessions_never_send_oversize_datagrams() -> None:
    sim = Sim()
    a = sim.add("a", "10.0.0.1")
    b = sim.add("b", "10.0.0.2")
    sim.run(1)
    longest = "é" * (a.session.max_text_bytes // 2)  # the most text, two bytes a character
    a.session.chat("b", longest, sim.now)
    sim.run(1)
    assert chats(b) == ["From a [" + longest + "]"]
    assert max(len(d) for _, _, d in sim.sent) <= wire.MAX_DATAGRAM


def test_rebinding_reaches_the_peers() -> None:
    sim = Sim()
    a = sim.add("a", "10.0.0.1")
    b = sim.add("b", "10.0.0.2")
    sim.run(1)
    # the NAT gives a's socket a new public port
    old = a.sockets[MAIN]
    a.sockets[MAIN] = Addr(old.host, old.port + 5000)
    sim.run(11)
    moved = Addr("10.0.0.1", old.port + 5000)
    assert sim.server.peers()[0].pub == moved
    assert sim.lists()["b"] == sim.registry()
    assert [e.joined for e in b.events if isinstance(e, ListChanged)][-1] == ("a",)  # a changed
    assert a.session.pub == moved
    b.session.chat("a", "found you", sim.now)  # b looks a up: its new address
    sim.run(1)
    assert chats(a) == ["From b [found you]"]
    details = b.session.details("a")
    assert details is not None and details.pub == moved


def test_receiver_that_lost_its_state_resumes_at_the_senders_base() -> None:
    """After a server restart the receiver may register again first, see a list without the sender,
    and forget its stream; the sender goes on numbering. Nothing may be held forever or lost."""
    sim = Sim(config=ClientConfig(keepalive=1, deliver_within=10))
    a = sim.add("a", "10.0.0.1")
    b = sim.add("b", "10.0.0.2")
    sim.run(1)
    a.session.chat("b", "before", sim.now)
    sim.run(1)
    assert chats(b) == ["From a [before]"]
    a_addr = a.public(MAIN)
    sim.drop = lambda src, dst, data: a_addr in (src, dst)  # a is paused (SIGSTOP)
    sim.restart_server()
    sim.run(4)
    assert sim.lists()["b"] == ["b"]  # b forgot a, and its stream
    sim.drop = lambda *_: False
    sim.run(4)
    assert sim.lists()["b"] == ["b", "a"]
    a.session.chat("b", "after", sim.now)
    a.session.chat("b", "and more", sim.now)
    sim.run(3)
    assert chats(b) == ["From a [before]", "From a [after]", "From a [and more]"]
    assert not [e for e in a.events if isinstance(e, DeliveryFailed)]


def test_messages_too_far_ahead_are_not_acknowledged() -> None:
    sim = Sim()
    a = sim.add("a", "10.0.0.1")
    b = sim.add("b", "10.0.0.2")
    sim.run(1)
    a.session.chat("b", "one", sim.now)
    sim.run(1)
    stream, _ = a.session.streams("b")
    far = wire.Chat(src="a", dst="b", stream=stream, base=1, seq=10_000, group=False, n=b"", box=b"")
    far = a.session.seal(far, b"x")
    assert far is not None
    b.session.receive_datagram(wire.encode(far), MAIN, a.public(MAIN), sim.now)
    assert not [act for act in b.session.actions() if isinstance(act, Send)]
    assert chats(b) == ["From a [one]"]


def test_full_server_refuses_with_a_clear_error() -> None:
    sim = Sim()
    sim.server.max_clients = 1
    sim.add("a")
    sim.run(1)
    late = sim.add("b", "10.0.0.2")
    sim.run(1)
    assert late.events == [Refused("server_full", "the server is full: 1 clients are registered")]
    assert late.session.state is State.DONE


def test_all_reaches_every_other_peer_directly_marked_as_to_all() -> None:
    sim = Sim()
    five(sim)
    sim.run(1)
    sent_to = sim.nodes["client3"].session.chat_all("hello everyone", sim.now)
    assert sent_to == ["client1", "client2", "client4", "client5"]
    sim.run(2)
    for cid in sent_to:
        assert chats(sim.nodes[cid]) == ["From client3 to all [hello everyone]"]
    assert chats(sim.nodes["client3"]) == []
    group = [wire.decode(d) for _, dst, d in sim.sent if dst != SERVER and b'"t":"chat"' in d]
    assert {m.dst for m in group if isinstance(m, wire.Chat) and m.group} == set(sent_to)


def test_all_alone_is_refused() -> None:
    sim = Sim()
    a = sim.add("a")
    sim.run(1)
    try:
        a.session.chat_all("anyone?", sim.now)
    except NoPeers:
        pass
    else:
        raise AssertionError("@all with nobody else was accepted")


def test_list_changes_are_events_with_who_joined_and_left() -> None:
    sim = Sim()
    a = sim.add("a")
    sim.run(1)
    b = sim.add("b", "10.0.0.2")
    sim.run(1)
    b.session.close(sim.now)
    sim.run(1)
    changes = [e for e in a.events if isinstance(e, ListChanged)]
    assert [(c.joined, c.left, c.count) for c in changes] == [(("a",), (), 1), (("b",), (), 2), ((), ("b",), 1)]
    assert changes[1].as_dict() == {"event": "list", "joined": ["b"], "left": [], "count": 2}


def test_show_list_looks_up_everyones_addresses() -> None:
    sim = Sim()
    a = sim.add("a")
    b = sim.add("b", "10.0.0.2")
    sim.run(1)
    assert a.session.details("b") is None  # the list holds IDs: nobody's addresses until needed
    a.session.show_list(sim.now)
    sim.run(0.1)
    shown = [e for e in a.events if isinstance(e, ListShown)]
    assert [e.lines() for e in shown] == [[f"a {a.public(MAIN)}", f"b {b.public(MAIN)}"]]
    assert shown[0].as_dict()["peers"][1] == {"id": "b", "public": str(b.public(MAIN)), "private": str(b.sockets[MAIN])}
    # again within the second the server allows: the same answer, without asking
    lookups = len([d for _, dst, d in sim.sent if dst == SERVER and b'"lookup"' in d])
    a.session.show_list(sim.now)
    sim.run(0.1)
    assert len([e for e in a.events if isinstance(e, ListShown)]) == 2
    assert len([d for _, dst, d in sim.sent if dst == SERVER and b'"lookup"' in d]) == lookups
    # the list changed: the answer waits out the second, then shows the newcomer
    c = sim.add("c", "10.0.0.4")
    sim.run(0.2)
    a.session.show_list(sim.now)
    sim.run(0.2)
    assert len([e for e in a.events if isinstance(e, ListShown)]) == 2
    sim.run(1)
    last = [e for e in a.events if isinstance(e, ListShown)][-1]
    assert last.lines()[-1] == f"c {c.public(MAIN)}"
    assert not [e for e in a.events if isinstance(e, Notice)]


def test_show_list_says_when_the_server_does_not_answer() -> None:
    sim = Sim()
    a = sim.add("a")
    sim.run(1)
    sim.drop = lambda src, dst, data: b'"lookup"' in data
    a.session.show_list(sim.now)
    sim.run(7)
    assert not [e for e in a.events if isinstance(e, ListShown)]
    assert [(e.code, e.message) for e in a.events if isinstance(e, Notice)] == [
        ("list_unavailable", "the server did not send the list (asked 4 times)")
    ]


def test_a_client_whose_list_was_lost_asks_for_it() -> None:
    """A retransmitted registration is answered without the list: a client that lost the pages of the
    first answer asks for them (sync) a second after it registered."""
    sim = Sim()
    sim.add("a")
    sim.run(1)
    sim.drop = lambda src, dst, data: b'"page"' in data  # b's first list never arrives
    b = sim.add("b", "10.0.0.2")
    sim.run(0.5)
    assert b.session.state is State.REGISTERED and b.session.peers() == []
    sim.drop = lambda *_: False
    sim.run(1.0)
    assert b.session.peers() == ["a", "b"]


def test_show_list_says_what_the_busy_server_said(monkeypatch: pytest.MonkeyPatch) -> None:
    import natchat.proto.server as server_module

    monkeypatch.setattr(server_module, "SHOW_PAGES_RATE", 0.0)  # the server-wide budget is spent, for good
    sim = Sim()
    a = sim.add("a")
    sim.run(1)
    a.session.show_list(sim.now)
    sim.run(7)
    assert [e.message for e in a.events if isinstance(e, Notice)] == [
        "the server did not send the list: the server is busy sending lists; ask again (asked 4 times)"
    ]
