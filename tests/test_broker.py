"""The punch broker alone: start times, sweep offsets and the rendezvous on fresh sockets."""

from __future__ import annotations

from natchat.proto import wire
from natchat.proto.broker import PUNCH_LEAD_MARGIN, PUNCH_RENDEZVOUS_TTL, PunchBroker, Side, sweep_offset
from natchat.proto.wire import Addr, PeerInfo

A = PeerInfo("a", Addr("10.0.0.1", 1000), Addr("192.168.1.2", 1), b"a" * 32)
B = PeerInfo("b", Addr("10.0.0.2", 1000), Addr("192.168.1.3", 1), b"b" * 32)


def test_from_registered_sockets_both_are_told_at_once_with_one_moment() -> None:
    broker = PunchBroker()
    goes = broker.request(Side(A, 0.1, A.pub, A.priv), Side(B, 0.3, B.pub, B.priv), 2, 50.0)
    at = 50.0 + 0.3 + PUNCH_LEAD_MARGIN
    half = sweep_offset(2) / 2
    assert goes == [
        (wire.PunchGo(peer=B, attempt=2, at=at + half, rtt=0.3), A.pub),  # "a" < "b": a starts at + half
        (wire.PunchGo(peer=A, attempt=2, at=at - half, rtt=0.3), B.pub),  # (both told the slower round trip)
    ]
    assert broker.get_timer() is None


def test_fresh_sockets_wait_for_both_then_swap_them() -> None:
    broker = PunchBroker()
    a_fresh, b_fresh = Addr("10.0.0.1", 2000), Addr("10.0.0.2", 2000)
    first = broker.request(Side(A, 0.0, a_fresh, Addr("192.168.1.2", 7)), Side(B, 0.0, B.pub, B.priv), 3, 1.0)
    assert first == [(wire.PunchInvite(peer="a", attempt=3), B.pub)]
    assert broker.expiries() == [1.0 + PUNCH_RENDEZVOUS_TTL] == [broker.get_timer()]
    goes = broker.request(Side(B, 0.0, b_fresh, Addr("192.168.1.3", 8)), Side(A, 0.0, A.pub, A.priv), 3, 2.0)
    assert [(go.peer, dst) for go, dst in goes] == [  # type: ignore[union-attr]
        (PeerInfo("a", a_fresh, Addr("192.168.1.2", 7), A.key), b_fresh),
        (PeerInfo("b", b_fresh, Addr("192.168.1.3", 8), B.key), a_fresh),
    ]
    assert broker.expiries() == []


def test_a_half_joined_rendezvous_expires() -> None:
    broker = PunchBroker()
    broker.request(Side(A, 0.0, Addr("10.0.0.1", 2000), A.priv), Side(B, 0.0, B.pub, B.priv), 3, 0.0)
    broker.handle_timer(PUNCH_RENDEZVOUS_TTL - 0.001)
    assert len(broker.expiries()) == 1
    broker.handle_timer(PUNCH_RENDEZVOUS_TTL)
    assert broker.expiries() == [] and broker.get_timer() is None


def test_the_sweep_alternates_and_wraps() -> None:
    offsets = [sweep_offset(n) for n in range(1, 19)]
    assert offsets[0] == 0.0 and offsets[1] == -offsets[2] != 0.0 and offsets[4] == offsets[1] * 2
