"""Birthday punching end to end on the hand-driven network (tests/sim.py), with a manual clock.

A hard node (``Sim.add(..., hard=True)``) gets a fresh public port toward every destination and lets in
only what comes from that destination, as ``--random-fully`` does; ``Sim(alt=True)`` makes the server's
second port answer STUN, so clients learn their mapping kind and register it. The claims about real
NATs are proven on the grid (topologies/nat_grid.py); these check the protocol's logic.
"""

from __future__ import annotations

from natchat.proto import birthday, wire
from natchat.proto.broker import FAILED_MEMORY, PunchBroker, Side
from natchat.proto.client import ClientConfig, OpenSocket, Send
from natchat.proto.events import ChatReceived, PathUp
from natchat.proto.wire import Addr, PeerInfo

from .sim import ALT, SERVER, Sim

EASY, HARD, HARD2 = "10.0.1.1", "10.0.2.1", "10.0.3.1"


def _sent_between(sim: Sim, src_host: str, dst_host: str) -> list[tuple[Addr, Addr, bytes]]:
    return [(s, d, data) for s, d, data in sim.sent if s.host == src_host and d.host == dst_host]


def _pair(*, hard_a: bool = False, hard_b: bool = True, config_a: ClientConfig | None = None) -> Sim:
    sim = Sim(relay=True, alt=True, seed=7)
    sim.add("a", HARD2 if hard_a else EASY, hard=hard_a, filtered=not hard_a, config=config_a)
    sim.add("b", HARD, hard=hard_b)
    sim.run(2.0)
    return sim


def test_clients_learn_their_mapping_kind_and_register_it() -> None:
    sim = _pair()
    a, b = sim.server.registry.get("a"), sim.server.registry.get("b")
    assert a is not None and b is not None
    assert (a.mapping, b.mapping) == ("independent", "dependent")
    assert all(n.session.state.value == "registered" for n in sim.nodes.values())


def test_an_unanswered_alt_port_leaves_the_kind_unknown_and_registration_goes_on() -> None:
    sim = Sim(relay=True, alt=True, seed=7)
    sim.drop = lambda src, dst, data: dst == ALT  # (a firewall in front of the second port)
    node = sim.add("a", EASY)
    sim.run(3.0)  # past the learner's deadline (1 s at most)
    entry = sim.server.registry.get("a")
    assert entry is not None and entry.mapping is None
    assert node.session.state.value == "registered"
    asked = [d for s, d, data in sim.sent if s.host == EASY and d in (SERVER, ALT) and not data.startswith(b"{")]
    assert sorted(asked, key=str) == sorted([SERVER, ALT], key=str)  # one STUN request to each port, once


def test_without_the_alt_port_nothing_is_learned_and_go_has_no_plan() -> None:
    sim = Sim(relay=True, seed=7)
    sim.add("a", EASY)
    sim.add("b", HARD, hard=True)
    sim.run(2.0)
    assert sim.server.registry.get("b").mapping is None  # type: ignore[union-attr]
    sim.nodes["a"].session.chat("b", "hi", sim.now)
    sim.run(5.0)
    goes = [wire.decode(d) for s, _, d in sim.sent if s == SERVER and b'"punch_go"' in d]
    assert goes and all(isinstance(g, wire.PunchGo) and g.plan is None for g in goes)
    # today's punch (the Sim's easy side filters nothing, so the hard side's probe gets through)
    assert sim.nodes["b"].mappings and max(sock for sock, _ in sim.nodes["b"].mappings) < 5
    assert [e.text for e in sim.nodes["b"].events if isinstance(e, ChatReceived)] == ["hi"]


def test_easy_and_hard_find_a_direct_path_and_every_other_socket_closes() -> None:
    sim = _pair()
    a, b = sim.nodes["a"], sim.nodes["b"]
    start = sim.now
    a.session.chat("b", "hello hard", sim.now)
    sim.run(1.5)
    assert a.session.path_kind("b") == "direct" and b.session.path_kind("a") == "direct"
    assert [e.text for e in b.events if isinstance(e, ChatReceived)] == ["hello hard"]
    assert [e for e in sim.sent if e[0] == SERVER and b'"relayed"' in e[2]] == []  # never relayed
    # the hard side opened a fan-out; all its sockets but the winner are closed again
    opened = sum(1 for (sock, _dst) in b.mappings if sock != 0)
    assert opened > 1
    assert len(b.sockets) == 2  # the registered socket and the winner
    up_b = [e for e in b.events if isinstance(e, PathUp)]
    up_a = [e for e in a.events if isinstance(e, PathUp)]
    assert up_b and up_b[0].sockets == opened and up_b[0].probes >= opened
    assert up_a and 0 < up_a[0].probes <= birthday.PROBES
    # the easy side sprayed only the hard side's public IP, at distinct ports, from its registered socket
    spray = _sent_between(sim, EASY, HARD)
    ports = [d.port for _, d, _ in spray]
    assert len(set(ports)) >= len(ports) - 2  # (the ack and the chat go to the winner's port too)
    assert {s for s, _, _ in spray} == {a.public(0)}
    assert sim.now - start < 3.0
    # both ways on the direct path
    b.session.chat("a", "hello easy", sim.now)
    sim.run(1.0)
    assert [e.text for e in a.events if isinstance(e, ChatReceived)] == ["hello easy"]


def test_hard_and_hard_relay_at_once_and_spray_nothing() -> None:
    sim = _pair(hard_a=True)
    a, b = sim.nodes["a"], sim.nodes["b"]
    a.session.chat("b", "via relay", sim.now)
    sim.run(0.5)  # well before --relay-after (3 s)
    assert a.session.path_kind("b") == "relay"
    assert [e.text for e in b.events if isinstance(e, ChatReceived)] == ["via relay"]
    assert _sent_between(sim, HARD2, HARD) == [] and _sent_between(sim, HARD, HARD2) == []
    goes = [wire.decode(d) for s, _, d in sim.sent if s == SERVER and b'"punch_go"' in d]
    assert goes and all(isinstance(g, wire.PunchGo) and isinstance(g.plan, wire.RelayPlan) for g in goes)
    assert len(a.sockets) == 1 and len(b.sockets) == 1


def test_no_spray_sprays_nothing() -> None:
    sim = _pair(config_a=ClientConfig(spray=False))
    a, b = sim.nodes["a"], sim.nodes["b"]
    assert sim.server.registry.get("a").spray is False  # type: ignore[union-attr]
    a.session.chat("b", "no spray", sim.now)
    sim.run(6.0)
    assert [e.text for e in b.events if isinstance(e, ChatReceived)] == ["no spray"]
    goes = [wire.decode(d) for s, _, d in sim.sent if s == SERVER and b'"punch_go"' in d]
    assert goes and all(isinstance(g, wire.PunchGo) and g.plan is None for g in goes)  # scheduled, as today
    # today's punch only: a few probes, each to an address the hard side registered or asked from
    assert len(_sent_between(sim, EASY, HARD)) < 100
    # no fan-out: one fresh socket per scheduled attempt at most (today's retry from fresh ports)
    attempts = {g.attempt for g in goes if isinstance(g, wire.PunchGo)}
    assert len({sock for sock, _ in b.mappings if sock != 0}) <= len(attempts) + 1


def test_a_no_spray_client_ignores_a_forged_spray_plan() -> None:
    sim = _pair(config_a=ClientConfig(spray=False))
    a = sim.nodes["a"]
    info = sim.server.registry.get("b").info  # type: ignore[union-attr]
    before = len(_sent_between(sim, EASY, HARD))
    go = wire.PunchGo(peer=info, attempt=5, at=sim.now, plan=wire.SprayPlan(probes=1024, rate=4000.0, life=5.0))
    a.session.receive_datagram(wire.encode(go), 0, SERVER, sim.now)
    sim.run(6.0)
    assert len(_sent_between(sim, EASY, HARD)) == before


def _forged(sim: Sim, node: str, peer: str, plans: list[wire.Plan], every: float) -> None:
    """The introducer misbehaves: go after go with a plan, each a new attempt."""
    info = sim.server.registry.get(peer).info  # type: ignore[union-attr]
    session = sim.nodes[node].session
    session.chat(peer, "x", sim.now)
    for i, plan in enumerate(plans):
        go = wire.PunchGo(peer=info, attempt=100 + i, at=sim.now, plan=plan)
        session.receive_datagram(wire.encode(go), 0, SERVER, sim.now)
        sim.run(every)


def test_spray_budget_holds_under_a_misbehaving_introducer() -> None:
    sim = Sim(relay=True, alt=True, seed=3)
    sim.add("a", EASY)
    sim.add("b", HARD)  # not hard: nothing it answers to, so the spray never wins
    sim.run(2.0)
    sim.drop = lambda src, dst, data: {src.host, dst.host} == {EASY, HARD}  # no probe ever arrives
    start = len(sim.sent)
    _forged(sim, "a", "b", [wire.SprayPlan(probes=1024, rate=4000.0, life=5.0)] * 12, every=2.0)
    probes = [d for s, d, _ in sim.sent[start:] if s.host == EASY and d.host == HARD]
    # 12 attempts asked for 12,288 probes within 24 s: the per-peer minute budget lets 3,072 through
    assert len(probes) <= birthday.PROBES_PER_PEER_MINUTE + 100  # (+ today's few probes and retransmissions)
    assert len(probes) >= birthday.PROBES_PER_PEER_MINUTE


def test_fan_out_budget_holds_under_a_misbehaving_introducer() -> None:
    sim = Sim(relay=True, alt=True, seed=3)
    sim.add("a", EASY)
    sim.add("b", HARD, hard=True)
    sim.run(2.0)
    sim.drop = lambda src, dst, data: {src.host, dst.host} == {EASY, HARD}
    opened: list[int] = []
    session = sim.nodes["b"].session
    real_actions = session.actions

    def counting() -> list:  # type: ignore[type-arg]
        out = real_actions()
        opened.extend(a.sock for a in out if isinstance(a, OpenSocket))
        return out

    session.actions = counting  # type: ignore[method-assign]
    plan = wire.FanOutPlan(sockets=256, rate=2000.0, resend=0.05, life=5.0)
    _forged(sim, "b", "a", [plan] * 8, every=2.0)
    assert birthday.SOCKETS_PER_PEER_MINUTE <= len(opened) <= birthday.SOCKETS_PER_PEER_MINUTE + 10
    sim.run(6.0)
    assert len(sim.nodes["b"].sockets) <= 2  # every fan-out socket closed at its attempt's end


def test_a_plan_out_of_range_is_malformed() -> None:
    info = PeerInfo("b", Addr("10.0.2.1", 1), Addr("10.0.2.1", 1), bytes(32))
    go = wire.PunchGo(peer=info, attempt=1, at=0.0, plan=wire.SprayPlan(probes=1024, rate=2000.0, life=1.0))
    data = wire.encode(go).replace(b'["spray",1024', b'["spray",100000')
    try:
        wire.decode(data)
    except wire.WireError:
        pass
    else:
        raise AssertionError("a spray of 100,000 probes was accepted")


def test_broker_relays_a_pair_whose_birthday_attempt_failed() -> None:
    broker = PunchBroker()
    key = bytes(32)
    ea = PeerInfo("a", Addr("10.0.1.1", 2000), Addr("192.168.0.2", 2000), key)
    hb = PeerInfo("b", Addr("10.0.2.1", 3000), Addr("192.168.1.2", 3000), key)
    a = Side(ea, 0.01, ea.pub, ea.priv, "independent")
    b = Side(hb, 0.01, hb.pub, hb.priv, "dependent")

    def plans(goes: list[tuple[wire.Message, Addr]]) -> set[str]:
        return {type(go.plan).__name__ for go, _ in goes if isinstance(go, wire.PunchGo)}

    first = broker.request(a, b, 1, 100.0, relay=True)
    assert plans(first) == {"SprayPlan", "FanOutPlan"}
    assert {dst for _, dst in first} == {ea.pub, hb.pub}  # both registered addresses, at once
    assert plans(broker.request(a, b, 1, 100.5, relay=True)) == {"SprayPlan", "FanOutPlan"}  # a lost go: again
    # asked again after the attempt's life: it failed (the conntrack trap): relayed, and remembered
    assert plans(broker.request(a, b, 2, 103.0, relay=True)) == {"RelayPlan"}
    assert broker.birthday_failed == 1
    assert plans(broker.request(b, a, 3, 103.0 + FAILED_MEMORY / 2, relay=True)) == {"RelayPlan"}
    assert plans(broker.request(a, b, 4, 104.0 + FAILED_MEMORY, relay=True)) == {"SprayPlan", "FanOutPlan"}
    # without a relay the failed pair alternates: today's punch (the "hard" side may be a port-preserving
    # NAT that showed the server's second port another port once), then a birthday attempt again
    other = PunchBroker()
    other.request(a, b, 1, 100.0)
    assert plans(other.request(a, b, 2, 103.0)) == {"SprayPlan", "FanOutPlan"}  # (asked again: failed)
    assert other.birthday_failed == 1
    scheduled = other.request(a, b, 3, 103.5)
    assert plans(scheduled) == {"NoneType"} and {dst for _, dst in scheduled} == {ea.pub, hb.pub}
    assert plans(other.request(a, b, 4, 104.0)) == {"SprayPlan", "FanOutPlan"}
    assert plans(other.request(a, b, 5, 104.0 + FAILED_MEMORY)) == {"SprayPlan", "FanOutPlan"}  # forgotten


def test_easy_pairs_keep_todays_punch() -> None:
    sim = Sim(relay=True, alt=True, seed=7)
    a = sim.add("a", EASY)
    sim.add("b", "10.0.4.1")
    sim.run(2.0)
    a.session.chat("b", "hi", sim.now)
    sim.run(2.0)
    goes = [wire.decode(d) for s, _, d in sim.sent if s == SERVER and b'"punch_go"' in d]
    assert goes and all(isinstance(g, wire.PunchGo) and g.plan is None for g in goes)
    assert a.session.path_kind("b") == "direct"
    sends = [x for x in sim.sent if x[0].host == EASY and x[1].host == "10.0.4.1"]
    assert len(sends) < 20
    assert not any(isinstance(x, Send) for x in [])  # (Send imported for the type of actions)


def test_a_side_without_nat_keeps_todays_punch_with_a_hard_side() -> None:
    sim = Sim(relay=True, alt=True, seed=7)
    a = sim.add("a", EASY, nat=False)  # a public host: its private address is its public one
    sim.add("b", HARD, hard=True)
    sim.run(2.0)
    a.session.chat("b", "hi", sim.now)
    sim.run(2.0)
    goes = [wire.decode(d) for s, _, d in sim.sent if s == SERVER and b'"punch_go"' in d]
    assert goes and all(isinstance(g, wire.PunchGo) and g.plan is None for g in goes)
    assert a.session.path_kind("b") == "direct"
    assert len(sim.nodes["b"].sockets) <= 2  # no fan-out
