"""One registration alone (natchat/proto/registration.py): what each control message does, and the
typed outcomes of its timer."""

from __future__ import annotations

from natchat.proto import wire
from natchat.proto.registration import (
    LEAVE_RETRY,
    Control,
    GaveUp,
    LeaveUnanswered,
    Lost,
    RegConfig,
    Registration,
    RegState,
)
from natchat.proto.wire import Addr

SERVER = Addr("10.0.0.3", 10080)
PRIV = Addr("192.168.1.2", 10081)
PUB = Addr("10.0.0.1", 10081)
TOKEN = "ab" * 16


def reg(**config: object) -> tuple[Registration, list[wire.Message]]:
    sent: list[wire.Message] = []
    r = Registration("me", SERVER, PRIV, RegConfig(**config), sent.append, key=bytes(32))  # type: ignore[arg-type]
    r.start(0.0)
    return r, sent


def registered(now: float = 0.1, relay: bool = False) -> wire.Registered:
    return wire.Registered(id="me", token=TOKEN, pub=PUB, timeout=30.0, now=5.0, relay=relay)


def test_challenge_then_registered() -> None:
    r, sent = reg()
    assert isinstance(sent[-1], wire.Register) and sent[-1].cookie is None
    assert r.on_control(wire.Challenge(cookie="cd" * 16, secret=False), 0.05) is Control.CHALLENGED
    assert isinstance(sent[-1], wire.Register) and sent[-1].cookie == "cd" * 16
    assert r.on_control(registered(), 0.1) is Control.JOINED
    assert r.registered and r.token == TOKEN and r.pub == PUB and not r.again
    assert r.on_control(registered(), 0.2) is Control.STALE  # a duplicate


def test_a_secret_we_do_not_have_gives_up() -> None:
    r, _ = reg()
    assert r.on_control(wire.Challenge(cookie="cd" * 16, secret=True), 0.05) is Control.NEEDS_SECRET
    assert r.state is RegState.GAVE_UP and r.get_timer() == float("inf")


def test_refusals_end_the_attempt_and_unknown_sessions_register_again() -> None:
    r, _ = reg()
    assert r.on_control(wire.Error(code="id_taken", msg="taken"), 0.1) is Control.REFUSED
    assert r.state is RegState.GAVE_UP
    r, sent = reg()
    assert r.on_control(wire.Error(code="bad_token", msg="no"), 0.1) is Control.STALE  # not registered yet
    r.on_control(registered(), 0.1)
    assert r.on_control(wire.Error(code="unknown_session", msg="who?"), 1.0) is Control.FORGOTTEN
    assert r.token is None and r.state is RegState.REGISTERING and isinstance(sent[-1], wire.Register)
    assert r.on_control(wire.Error(code="unknown_peer", msg="x", peer="x"), 1.0) is None  # not about us


def test_alive_and_bye_only_when_waited_for() -> None:
    r, _ = reg()
    alive = wire.Alive(ver=3, pub=PUB, now=6.0)
    assert r.on_control(alive, 0.1) is Control.STALE  # not registered
    r.on_control(registered(), 0.1)
    assert r.on_control(alive, 0.2) is Control.ALIVE
    assert r.on_control(wire.Bye(id="me"), 0.3) is Control.STALE  # not leaving
    assert r.on_control(wire.ListDelta(ver=1, changes="+a"), 0.3) is None


def test_the_timer_says_gave_up_or_lost_in_types() -> None:
    r, _ = reg(register_within=10.0)
    assert r.handle_timer(9.9) is None
    assert r.handle_timer(10.0) == GaveUp()
    r, sent = reg(keepalive=1.0)
    r.on_control(registered(), 0.1)
    lost_at = r.last_heard + r.lost_after
    assert r.get_timer() <= lost_at
    outcome = None
    now = 0.1
    while outcome is None and now < 10:
        now = r.get_timer()
        outcome = r.handle_timer(now)
    assert outcome == Lost(now - 0.1) and outcome.reason == f"no answer from the server for {now - 0.1:.0f} s"
    assert any(isinstance(m, wire.KeepAlive) for m in sent) and r.state is RegState.REGISTERING


def test_leaving_retries_until_bye_or_the_time_given() -> None:
    r, sent = reg()
    r.on_control(registered(), 0.1)
    assert r.leave(1.0, within=0.5)
    assert isinstance(sent[-1], wire.Deregister) and r.get_timer() == 1.0 + LEAVE_RETRY
    assert r.handle_timer(1.0 + LEAVE_RETRY) is None and isinstance(sent[-1], wire.Deregister)
    assert r.on_control(registered(), 1.2) is Control.STALE  # while leaving only the bye counts
    assert r.on_control(wire.Bye(id="me"), 1.3) is Control.BYE and r.state is RegState.LEFT
    r, _ = reg()
    r.on_control(registered(), 0.1)
    r.leave(1.0, within=0.5)
    assert r.handle_timer(1.5) == LeaveUnanswered() and r.state is RegState.LEFT


def test_leave_without_a_session_sends_nothing() -> None:
    r, sent = reg()
    count = len(sent)
    assert not r.leave(1.0, within=0.5) and len(sent) == count
    r.say_goodbye()
    assert len(sent) == count


def _alive(server_now: float) -> wire.Alive:
    return wire.Alive(ver=0, pub=PUB, now=server_now)


def test_a_clock_sync_sends_its_keepalives_one_after_the_others_answer_and_keeps_the_shortest() -> None:
    """The server's clock is ours + 100 s. The registration's sample was slow on the way back (offset
    off by 2 ms); the sync's samples are each sent only once the last is answered, and the shortest
    round trip's offset wins, whatever came before."""
    r, sent = reg()
    r.on_control(wire.Registered(id="me", token=TOKEN, pub=PUB, timeout=30.0, now=100.0), 0.005)
    assert r.clock_offset is not None and abs(r.clock_offset - (100.0 - 0.0025)) < 1e-9  # (sent at 0)
    r.sync(1.0)
    trips = [0.004, 0.001, 0.003, 0.0006, 0.002, 0.003, 0.004, 0.005]  # (0.6 ms, symmetric: exact)
    now, keepalives = 1.0, []
    for i, trip in enumerate(trips):
        r.handle_timer(now)
        new = [m for m in sent if isinstance(m, wire.KeepAlive)]
        assert len(new) == len(keepalives) + 1  # one keepalive out, and nothing more until it is answered
        keepalives = new
        r.handle_timer(now + trip / 2)
        assert len([m for m in sent if isinstance(m, wire.KeepAlive)]) == len(keepalives)
        now += trip
        r.on_control(_alive(now - trip / 2 + 100.0 + (0.0004 if trip > 0.001 else 0.0)), now)
        assert (r.get_timer() <= now + 0.005) is (i < len(trips) - 1)  # the next at once, but after the 8th
        now += 0.005
    assert len(keepalives) == 8  # done: back to the usual keepalives
    assert r.clock_offset is not None and abs(r.clock_offset - 100.0) < 1e-9  # the 0.6 ms round trip's
    r.sync(now + 0.01)  # within 30 s of the last: not again
    r.handle_timer(now + 0.02)
    assert len([m for m in sent if isinstance(m, wire.KeepAlive)]) == 8


def test_a_clock_sync_waits_for_registration_and_a_lost_answer_pauses_it() -> None:
    r, sent = reg()
    r.sync(0.01)  # not registered yet: nothing
    r.on_control(registered(), 0.02)
    r.sync(0.03)
    r.handle_timer(0.03)
    assert len([m for m in sent if isinstance(m, wire.KeepAlive)]) == 1
    r.handle_timer(0.2)  # its answer is lost: nothing more until the usual keepalive, then sooner ones
    assert len([m for m in sent if isinstance(m, wire.KeepAlive)]) == 1
