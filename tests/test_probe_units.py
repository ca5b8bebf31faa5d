"""The prober's units alone (natchat/proto/probe/plumbing.py, lifetimes.py, prober.py's Heartbeat and
Classification), driven by hand: what each sends, schedules and concludes. tests/test_probe.py runs them
together against a model NAT."""

from __future__ import annotations

from natchat.proto.actions import CloseSocket, OpenSocket, Send
from natchat.proto.probe import Hold, Kind, MapQuery, ProbeConfig, decode
from natchat.proto.probe.lifetimes import FIRST_SOCKET, LifetimeTests
from natchat.proto.probe.plumbing import CONTROL, FILTER, MAP, Outbox, Timers
from natchat.proto.probe.prober import Classification, Heartbeat
from natchat.proto.wire import Addr

SERVER = Addr("10.0.0.3", 10080)
ALT_PORT = 10079
SID = "0" * 32


def test_timers_fire_once_earliest_first_and_a_reschedule_replaces() -> None:
    timers = Timers()
    timers.schedule(5, 2.0)
    timers.schedule(-1, 1.0)
    timers.schedule(7, 1.0)
    timers.schedule(5, 3.0)  # replaces 2.0
    timers.cancel(7)
    assert timers.next() == 1.0
    assert timers.pop_due(2.5) == -1
    assert timers.pop_due(2.5) is None
    assert timers.next() == 3.0
    assert timers.pop_due(3.0) == 5
    assert timers.pop_due(10.0) is None and timers.next() is None


def test_equal_deadlines_come_out_smaller_key_first() -> None:
    timers = Timers()
    for key in (3, -2, 0, -5):
        timers.schedule(key, 1.0)
    assert [timers.pop_due(1.0) for _ in range(4)] == [-5, -2, 0, 3]


def test_outbox_keeps_order_and_closes_each_socket_once() -> None:
    out = Outbox(SERVER)
    out.open(4)
    out.open(2)
    out.send(2, b"x")
    out.send(2, b"y", Addr(SERVER.host, ALT_PORT))
    out.close(4)
    out.close(4)
    assert out.take() == [
        OpenSocket(4),
        OpenSocket(2),
        Send(2, b"x", SERVER),
        Send(2, b"y", Addr(SERVER.host, ALT_PORT)),
        CloseSocket(4),
    ]
    out.open(9)
    out.close_all()
    assert out.take() == [OpenSocket(9), CloseSocket(2), CloseSocket(9)]
    assert out.take() == []


def test_heartbeat_proves_the_server_alive_until_the_answered_pings_send_time() -> None:
    beat = Heartbeat()
    first, second = beat.ping(1.0), beat.ping(1.5)
    assert beat.expects(first) and beat.expects(second) and not beat.expects(3)
    beat.pong(second, 1.6)
    assert (beat.alive_until, beat.last_pong) == (1.5, 1.6)
    assert not beat.expects(first)  # older pings are settled by a newer answer
    assert beat.alive_until == 1.5


def make_classification() -> tuple[Classification, Timers, Outbox]:
    timers, out = Timers(), Outbox(SERVER)
    classes = Classification(ProbeConfig(tries=2, filter_tries=2), SERVER, timers, out)
    classes.begin(SID, ALT_PORT, retry=0.5, grace=0.5)
    return classes, timers, out


def test_mapping_question_goes_to_both_ports_until_both_answer() -> None:
    classes, timers, out = make_classification()
    classes.on_map_timer(0.0)
    sent = out.take()
    assert [(a.sock, a.addr.port) for a in sent if isinstance(a, Send)] == [(MAP, SERVER.port), (MAP, ALT_PORT)]
    assert isinstance(decode(sent[0].data), MapQuery)  # type: ignore[union-attr]
    classes.mapped("main", Addr("10.0.0.1", 30000))
    classes.on_map_timer(0.5)  # only the port that has not answered is asked again
    assert [a.addr.port for a in out.take() if isinstance(a, Send)] == [ALT_PORT]
    classes.mapped("alt", Addr("10.0.0.1", 30001))
    assert classes.map_done and timers.pop_due(100.0) is None  # its retry is cancelled
    assert classes.seen == {"main": Addr("10.0.0.1", 30000), "alt": Addr("10.0.0.1", 30001)}


def test_mapping_question_gives_up_after_its_tries() -> None:
    classes, _, out = make_classification()
    for now in (0.0, 0.5, 1.0):
        classes.on_map_timer(now)
    assert len(out.take()) == 4 and classes.map_done and classes.seen == {}


def test_filtering_is_port_dependent_only_after_rounds_without_the_alt_datagram() -> None:
    classes, timers, out = make_classification()
    classes.on_filter_timer(0.0)
    assert [a.sock for a in out.take() if isinstance(a, Send)] == [FILTER]
    classes.filter_mapped(1, 0.1)  # the main port answered; the alt port's datagram gets 0.5 s
    assert timers.next() == 0.6
    classes.on_filter_timer(0.6)  # round 1 without it: ask again
    classes.filter_mapped(2, 0.7)
    classes.on_filter_timer(1.2)  # round 2 of 2
    assert classes.filter_done and classes.got_in is False and classes.done is False


def test_filtering_open_when_the_alt_datagram_gets_in() -> None:
    classes, _, _ = make_classification()
    classes.on_filter_timer(0.0)
    classes.from_alt()
    assert classes.filter_done and classes.got_in is True


def make_tests(kinds: tuple[Kind, ...], max_idle: float) -> tuple[LifetimeTests, Timers, Outbox, Heartbeat]:
    timers, out, beat = Timers(), Outbox(SERVER), Heartbeat()
    config = ProbeConfig(kinds=kinds, max_idle=max_idle, confirm=1)
    tests = LifetimeTests(config, config.grid(), timers, out, beat)
    tests.begin(SID, rtt=0.02, started=0.0)
    return tests, timers, out, beat


def test_lifetime_tests_open_a_socket_each_and_hold_on_it() -> None:
    tests, timers, out, _ = make_tests((Kind.REPLY,), 3)
    assert tests.on_pace(0.0) is False  # three tests fit in one tick
    assert out.take() == [OpenSocket(FIRST_SOCKET), OpenSocket(FIRST_SOCKET + 1), OpenSocket(FIRST_SOCKET + 2)]
    tests.socket_opened(FIRST_SOCKET, 0.0)
    (send,) = out.take()
    assert isinstance(send, Send) and send.sock == FIRST_SOCKET
    hold = decode(send.data)
    assert isinstance(hold, Hold) and (hold.idx, hold.delay, hold.echo) == (0, 1.0, True)
    assert timers.next() == 0.5  # the retransmission


def test_an_armed_test_that_times_out_asks_for_a_ping_and_counts_once_the_server_is_proven_alive() -> None:
    tests, _, out, beat = make_tests((Kind.REPLY,), 2)
    tests.on_pace(0.0)
    for sock in (FIRST_SOCKET, FIRST_SOCKET + 1):
        tests.socket_opened(sock, 0.0)
        tests.echo(sock, sock - FIRST_SOCKET, 1, 0.05)
    out.take()
    assert tests.on_timer(0, 1.55) is True  # deadline: 0.05 + 1 s idle + 0.5 s grace
    assert tests.on_timer(1, 2.55) is True
    tests.evaluate_all(2.55)
    assert not tests.answered()  # the server may have died: not yet an expiry
    n = beat.ping(2.6)
    beat.pong(n, 2.7)
    tests.evaluate_all(2.7)
    assert tests.answered() and not tests.all_lost()
    (lifetime,) = tests.results()
    assert (lifetime.kind, lifetime.survived, lifetime.expired) == (Kind.REPLY, None, 1.0)
    sent = out.take()
    assert CloseSocket(FIRST_SOCKET) in sent and any(isinstance(a, Send) and a.sock == CONTROL for a in sent)
