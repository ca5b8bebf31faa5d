"""The mapping probe without sockets: the prober and the responder on a hand-driven network with a model
of a Linux NAT (conntrack's UDP rules) and a manual clock. Minutes of idle time pass in milliseconds.

The model is only good for testing the probe's logic; that the probe measures *real* NATs correctly is
proven in Mininet (tests/mininet/test_probe.py).
"""

from __future__ import annotations

import heapq
import itertools
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import msgspec
import pytest

from natchat.proto import probe
from natchat.proto.actions import CloseSocket, OpenSocket, Send
from natchat.proto.probe import (
    Kind,
    MappingProber,
    ProbeConfig,
    ProbeFailed,
    ProbeResponder,
    Report,
)
from natchat.proto.wire import Addr, WireError

SERVER_IP = "10.0.0.3"
MAIN = Addr(SERVER_IP, 10080)
ALT = Addr(SERVER_IP, 10079)
INSIDE_IP = "192.168.1.2"
PUBLIC_IP = "10.0.0.1"
START = 1000.0


# --- a NAT, modelled on Linux conntrack -----------------------------------------------------------------


@dataclass
class Flow:
    inside: Addr
    remote: Addr
    public: Addr
    created: float
    expires: float
    replied: bool = False


class FakeNat:
    """Linux's UDP conntrack rules: a packet refreshes its flow with ``timeout``, or with ``stream`` once
    the flow has seen a reply and is older than 2 s (the reply that first marks it refreshes with
    ``timeout``). ``mapping``: "independent" (one public port per inside address), "dependent" (a new one
    per flow) or "none" (no NAT, nothing expires). ``filtering``: "port" (only replies to a flow get in)
    or "open" (anything sent to a live public port gets in)."""

    def __init__(
        self,
        *,
        timeout: float = 30.5,
        stream: float = 120.5,
        mapping: Literal["independent", "dependent", "none"] = "independent",
        filtering: Literal["port", "open"] = "port",
    ) -> None:
        self.timeout, self.stream = timeout, stream
        self.mapping, self.filtering = mapping, filtering
        self.flows: dict[tuple[Addr, Addr], Flow] = {}
        self.ports: dict[Addr, int] = {}
        self._next_port = itertools.count(30000)

    def _refresh(self, flow: Flow, now: float) -> None:
        stream = flow.replied and now - flow.created > 2.0
        flow.expires = now + (self.stream if stream else self.timeout)

    def _alive(self, flow: Flow | None, now: float) -> bool:
        return flow is not None and now < flow.expires

    def outbound(self, src: Addr, dst: Addr, now: float) -> Addr:
        if self.mapping == "none":
            return src
        flow = self.flows.get((src, dst))
        if not self._alive(flow, now):
            if self.mapping == "independent":
                port = self.ports.setdefault(src, next(self._next_port))
            else:
                port = next(self._next_port)
            flow = self.flows[(src, dst)] = Flow(src, dst, Addr(PUBLIC_IP, port), now, now)
        assert flow is not None
        self._refresh(flow, now)
        return flow.public

    def inbound(self, src: Addr, dst: Addr, now: float) -> Addr | None:
        if self.mapping == "none":
            return dst
        for flow in self.flows.values():
            if flow.public == dst and flow.remote == src and self._alive(flow, now):
                self._refresh(flow, now)
                flow.replied = True
                return flow.inside
        if self.filtering == "open":
            for flow in self.flows.values():
                if flow.public == dst and self._alive(flow, now):
                    return flow.inside
        return None


# --- the network ------------------------------------------------------------------------------------------

Drop = Callable[[Addr, Addr, bytes], bool]


@dataclass
class Trace:
    """Every datagram the prober sent: (time, socket, destination, message type)."""

    sent: list[tuple[float, int, Addr, str]] = field(default_factory=list)

    def by_socket(self, sock: int) -> list[tuple[float, int, Addr, str]]:
        return [s for s in self.sent if s[1] == sock]


class Net:
    """The prober behind ``nat``, the responder at MAIN/ALT, ``delay`` seconds from the NAT to the server
    each way (the client sits at the NAT); ``drop`` loses datagrams on purpose."""

    def __init__(
        self,
        nat: FakeNat,
        config: ProbeConfig | None = None,
        *,
        delay: float = 0.01,
        server_up: bool = True,
        drop: Drop | None = None,
        responder: ProbeResponder | None = None,
    ) -> None:
        self.now = START
        self.nat = nat
        self.delay = delay
        self.server_up = server_up
        self.drop: Drop = drop or (lambda src, dst, data: False)
        self.prober = MappingProber(MAIN, config or ProbeConfig())
        sids = itertools.count(1)
        self.responder = responder or ProbeResponder(alt_port=ALT.port, sid_factory=lambda: f"{next(sids):032x}")
        self.sockets: dict[int, Addr] = {}
        self.closed: set[int] = set()
        self.trace = Trace()
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    def _at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._events, (when, next(self._seq), action))

    def _prober_actions(self) -> None:
        while actions := self.prober.actions():
            for action in actions:
                match action:
                    case OpenSocket(sock=sock):
                        self.sockets[sock] = Addr(INSIDE_IP, 40000 + sock)
                        self.prober.socket_opened(sock, self.sockets[sock], self.now)
                    case CloseSocket(sock=sock):
                        self.closed.add(sock)
                    case Send(sock=sock, data=data, addr=dst):
                        assert sock not in self.closed, "sent on a closed socket"
                        self.trace.sent.append((self.now, sock, dst, str(probe.decode(data).__struct_config__.tag)))
                        self._from_prober(self.sockets[sock], dst, data)

    def _from_prober(self, inside: Addr, dst: Addr, data: bytes) -> None:
        public = self.nat.outbound(inside, dst, self.now)
        if self.drop(public, dst, data) or not self.server_up or dst not in (MAIN, ALT):
            return
        via: probe.Via = "main" if dst == MAIN else "alt"

        def arrive() -> None:
            self.responder.receive_datagram(data, public, via, self.now)
            self._responder_out()

        self._at(self.now + self.delay, arrive)

    def _responder_out(self) -> None:
        for data, dst, via in self.responder.datagrams_to_send():
            src = MAIN if via == "main" else ALT
            if self.drop(src, dst, data):
                continue

            def arrive(data: bytes = data, dst: Addr = dst, src: Addr = src) -> None:
                inside = self.nat.inbound(src, dst, self.now)
                sock = next((s for s, a in self.sockets.items() if a == inside and s not in self.closed), None)
                if sock is not None:
                    self.prober.receive_datagram(data, sock, src, self.now)

            self._at(self.now + self.delay, arrive)

    def run(self, limit: float = 2000.0) -> None:
        """Run until the prober has finished (or ``limit`` simulated seconds have passed)."""
        self.prober.start(self.now)
        self._prober_actions()
        while not self.prober.finished and self.now < START + limit:
            timers = [t for t in (self.prober.get_timer(), self.responder.get_timer()) if t is not None]
            if self._events:
                timers.append(self._events[0][0])
            assert timers, "nothing left to happen, yet the prober has not finished"
            self.now = max(self.now, min(timers))
            while self._events and self._events[0][0] <= self.now:
                heapq.heappop(self._events)[2]()
                self._prober_actions()
            if (t := self.responder.get_timer()) is not None and t <= self.now:
                self.responder.handle_timer(self.now)
                self._responder_out()
            if (t := self.prober.get_timer()) is not None and t <= self.now:
                self.prober.handle_timer(self.now)
            self._prober_actions()
        assert self.prober.finished, "the prober did not finish"

    def drain(self) -> None:
        """Deliver what is still in flight after the prober finished (its goodbye)."""
        while self._events:
            when, _, action = heapq.heappop(self._events)
            self.now = max(self.now, when)
            action()

    def report(self) -> Report:
        self.run()
        return self.prober.report()


def lifetime(report: Report, kind: Kind) -> tuple[float | None, float | None]:
    found = next(lt for lt in report.lifetimes if lt.kind is kind)
    return found.survived, found.expired


# --- what a user of a Linux NAT sees ------------------------------------------------------------------------


def test_linux_cone_nat_each_kind_is_bracketed_to_the_second() -> None:
    report = Net(FakeNat(timeout=30.5, stream=120.5)).report()
    assert lifetime(report, Kind.OUTBOUND) == (30.0, 31.0)
    assert lifetime(report, Kind.REPLY) == (30.0, 31.0)  # Linux: one answer is not yet a "stream"
    assert lifetime(report, Kind.STREAM) == (120.0, 121.0)
    assert report.keepalive == 30.0
    assert report.nat is True
    assert report.public.host == PUBLIC_IP
    assert report.mapping == ("endpoint-independent", "address-dependent")
    assert report.filtering == ("address-and-port-dependent",)


def test_the_answer_comes_about_one_lifetime_after_the_start_not_after_the_sum_of_all_waits() -> None:
    config = ProbeConfig()
    report = Net(FakeNat(timeout=30.5, stream=120.5), config).report()
    by_kind = {lt.kind: lt for lt in report.lifetimes}
    # Each answer: the first expired idle time, plus the confirming next one, plus setup and grace.
    slack = (1 + config.confirm) * config.resolution + config.grace + 1.0
    assert 31.0 <= by_kind[Kind.OUTBOUND].answered_after <= 30.5 + slack
    assert 121.0 + config.stream_gap <= by_kind[Kind.STREAM].answered_after <= 120.5 + config.stream_gap + slack
    assert report.elapsed == pytest.approx(by_kind[Kind.STREAM].answered_after)


def test_every_idle_time_starts_within_the_first_second() -> None:
    net = Net(FakeNat(timeout=5.5, stream=8.5), ProbeConfig(max_idle=300))
    net.run()
    first_send: dict[int, float] = {}
    for at, sock, _, _ in net.trace.sent:
        first_send.setdefault(sock, at)
    measured = [at for sock, at in first_send.items() if sock >= 3]
    assert len(measured) == 3 * 300
    assert max(measured) - START < 1.0


def test_symmetric_nat_is_address_and_port_dependent() -> None:
    report = Net(FakeNat(mapping="dependent", timeout=12.5, stream=20.5), ProbeConfig(max_idle=30)).report()
    assert report.mapping == ("address-and-port-dependent",)
    main, alt = report.mapping_seen
    assert main is not None and alt is not None and main.port != alt.port
    assert report.filtering == ("address-and-port-dependent",)
    assert lifetime(report, Kind.OUTBOUND) == (12.0, 13.0)
    assert lifetime(report, Kind.STREAM) == (20.0, 21.0)


def test_open_filtering_cannot_be_told_from_address_dependent_with_one_server_address() -> None:
    report = Net(FakeNat(filtering="open", timeout=6.5, stream=9.5), ProbeConfig(max_idle=20)).report()
    assert report.filtering == ("endpoint-independent", "address-dependent")
    assert report.mapping == ("endpoint-independent", "address-dependent")
    text = "\n".join(report.lines())
    assert "needs a second server address" in text


def test_without_nat_every_idle_time_survives_and_the_answer_is_longer_than_max() -> None:
    report = Net(FakeNat(mapping="none", filtering="open"), ProbeConfig(max_idle=5)).report()
    assert report.nat is False
    for lt in report.lifetimes:
        assert (lt.survived, lt.expired) == (5.0, None)
        assert [outcome for _, outcome in lt.results] == ["survived"] * 5
    text = "\n".join(report.lines())
    assert "longer than 5 s" in text
    assert "keepalive: every 5 s is enough (nothing expired; longer was not tested)" in text
    assert report.to_json()["lifetimes"][0]["longer_than_max"] is True


def test_a_long_round_trip_does_not_lengthen_the_idle_times_tested() -> None:
    """0.8 s round trip: an outbound mapping is idle from the hold passing the NAT until the server's
    datagram reaches it again, a round trip plus the server's wait, so the prober asks for less."""
    report = Net(FakeNat(timeout=10.5, stream=14.5), ProbeConfig(max_idle=20), delay=0.4).report()
    assert report.rtt == pytest.approx(0.8)
    assert lifetime(report, Kind.OUTBOUND) == (10.0, 11.0)
    assert lifetime(report, Kind.REPLY) == (10.0, 11.0)
    assert lifetime(report, Kind.STREAM) == (14.0, 15.0)


def test_only_the_requested_kinds_are_measured() -> None:
    report = Net(FakeNat(timeout=3.5, stream=6.5), ProbeConfig(kinds=(Kind.STREAM,), max_idle=10)).report()
    assert [lt.kind for lt in report.lifetimes] == [Kind.STREAM]
    assert lifetime(report, Kind.STREAM) == (6.0, 7.0)


def test_resolution_sets_the_bracket_width() -> None:
    config = ProbeConfig(kinds=(Kind.OUTBOUND,), max_idle=40, resolution=5)
    report = Net(FakeNat(timeout=22.0), config).report()
    assert lifetime(report, Kind.OUTBOUND) == (20.0, 25.0)
    assert [idle for idle, _ in report.lifetimes[0].results] == [5.0, 10.0, 15.0, 20.0, 25.0]


# --- the measured mappings stay idle ----------------------------------------------------------------------


def test_measured_sockets_send_only_their_setup_and_nothing_else() -> None:
    net = Net(FakeNat(timeout=10.5, stream=15.5), ProbeConfig(max_idle=20))
    net.run()
    measured = [sock for sock in net.sockets if sock >= 3]
    assert len(measured) == 3 * 20
    for sock in measured:
        sent = net.trace.by_socket(sock)
        assert sent, f"socket {sock} sent nothing"
        assert all(dst == MAIN for _, _, dst, _ in sent), "a measured mapping must be made toward the main port"
        assert all(tag == "probe_hold" for _, _, _, tag in sent)
        assert len(sent) in (1, 2), f"socket {sock} sent {len(sent)} datagrams: the mapping was not left idle"
        if len(sent) == 2:  # the stream kind: two exchanges, more than 2 s apart
            assert sent[1][0] - sent[0][0] > 2.0


def test_nothing_is_sent_anywhere_but_the_server() -> None:
    net = Net(FakeNat(timeout=4.5, stream=6.5), ProbeConfig(max_idle=10))
    net.run()
    assert {dst for _, _, dst, _ in net.trace.sent} <= {MAIN, ALT}
    assert {dst for _, sock, dst, _ in net.trace.sent if sock != MappingProber.MAP} == {MAIN}


def test_every_socket_is_closed_at_the_end_and_the_session_ended() -> None:
    net = Net(FakeNat(timeout=4.5, stream=6.5), ProbeConfig(max_idle=10))
    net.run()
    assert set(net.sockets) == net.closed
    assert net.responder.sessions() == 1
    net.drain()
    assert net.responder.sessions() == 0  # probe_bye arrived


# --- bad conditions ---------------------------------------------------------------------------------------


def test_a_silent_server_is_reported_after_answer_within_seconds() -> None:
    net = Net(FakeNat(), ProbeConfig(answer_within=4.0), server_up=False)
    net.run()
    assert net.prober.error is not None and "no answer from 10.0.0.3:10080 within 4 s" in net.prober.error
    assert net.now == pytest.approx(START + 4.0)
    assert {tag for *_, tag in net.trace.sent} == {"probe_hello"}
    assert 5 <= len(net.trace.sent) <= 10  # retransmitted, boundedly
    with pytest.raises(ProbeFailed, match="no answer"):
        net.prober.report()


def test_a_nat_that_forgets_at_once_is_reported_as_dropping_everything() -> None:
    report = Net(FakeNat(timeout=0.3, stream=0.3), ProbeConfig(max_idle=10)).report()
    for lt in report.lifetimes:
        assert (lt.survived, lt.expired) == (None, 1.0)
    assert report.drops_everything
    text = "\n".join(report.lines())
    assert "shorter than 1 s" in text
    assert "dropped every datagram from the server" in text
    assert report.keepalive is None


def test_a_server_that_dies_during_the_run_is_an_error_not_a_short_lifetime() -> None:
    """From 8 s on nothing reaches or leaves the server: every later test would look expired. The
    heartbeat on the control socket notices, and no lifetime is claimed."""
    net = Net(FakeNat(timeout=20.5, stream=30.5), ProbeConfig(max_idle=40))
    net.drop = lambda src, dst, data: net.now >= START + 8.0
    net.run()
    assert net.prober.error is not None and "stopped answering" in net.prober.error
    assert net.now < START + 8.0 + 5.0
    with pytest.raises(ProbeFailed):
        net.prober.report()


def test_the_control_socket_pings_but_measured_sockets_stay_quiet() -> None:
    net = Net(FakeNat(timeout=4.5, stream=6.5), ProbeConfig(max_idle=10))
    net.run()
    pings = [at for at, sock, _, tag in net.trace.sent if tag == "probe_ping"]
    assert pings and {sock for _, sock, _, tag in net.trace.sent if tag == "probe_ping"} == {MappingProber.CONTROL}
    assert all(b - a <= 0.5 + 1e-9 for a, b in itertools.pairwise(pings))


def test_a_server_that_refuses_is_reported() -> None:
    responder = ProbeResponder(alt_port=ALT.port, max_sessions=0)
    net = Net(FakeNat(), responder=responder)
    net.run()
    assert net.prober.error is not None and "refused" in net.prober.error


def test_a_run_larger_than_the_server_allows_is_refused_with_advice() -> None:
    responder = ProbeResponder(alt_port=ALT.port, max_tests=100)
    net = Net(FakeNat(), ProbeConfig(max_idle=300), responder=responder)
    net.run()
    assert net.prober.error is not None and "--resolution" in net.prober.error


def test_a_firewalled_alt_port_leaves_the_mapping_unknown_but_the_lifetimes_measured() -> None:
    net = Net(FakeNat(timeout=4.5, stream=6.5), ProbeConfig(max_idle=10), drop=lambda src, dst, data: dst == ALT)
    report = net.report()
    assert report.mapping == probe.MAPPING_BEHAVIOURS
    assert "unknown" in "\n".join(report.lines())
    assert lifetime(report, Kind.OUTBOUND) == (4.0, 5.0)


@pytest.mark.parametrize("seed", range(10))
def test_random_loss_moves_the_answer_by_at_most_one_step(seed: int) -> None:
    """10 % of all datagrams lost, both ways: retransmissions, the copies of the due datagram and the
    confirming idle time keep the bracket on the truth, or one step short when every copy to the last
    idle time that survived is lost (about once in a thousand runs, at this loss)."""
    rng = random.Random(seed)
    net = Net(FakeNat(timeout=20.5, stream=30.5), ProbeConfig(max_idle=40), drop=lambda *_: rng.random() < 0.1)
    report = net.report()
    for kind, truth in ((Kind.OUTBOUND, 20.5), (Kind.REPLY, 20.5), (Kind.STREAM, 30.5)):
        survived, expired = lifetime(report, kind)
        assert survived is not None and expired is not None
        assert truth - 1.5 < survived < expired < truth + 1.5
        assert expired - survived <= 3.0


def test_one_lost_probe_is_not_taken_for_an_expired_mapping() -> None:
    """Both copies of the server's datagram to the 10 s outbound test are lost: the next longer idle time
    survives, which shows the mapping was still there; the answer stays right."""
    net = Net(FakeNat(timeout=20.5, stream=30.5), ProbeConfig(kinds=(Kind.OUTBOUND,), max_idle=30))

    def drop(src: Addr, dst: Addr, data: bytes) -> bool:
        msg = probe.decode(data)
        return isinstance(msg, probe.Due) and msg.idx == 9  # the 10th idle time: 10 s

    net.drop = drop
    report = net.report()
    assert lifetime(report, Kind.OUTBOUND) == (20.0, 21.0)
    assert (10.0, "lost") in report.lifetimes[0].results


# --- the responder ----------------------------------------------------------------------------------------

CTL = Addr(PUBLIC_IP, 5000)
MEASURED = Addr(PUBLIC_IP, 5001)


def open_session(responder: ProbeResponder, now: float = 0.0) -> str:
    responder.receive_datagram(probe.encode_padded(probe.Hello(n=1)), CTL, "main", now)
    ((data, dst, via),) = responder.datagrams_to_send()
    welcome = probe.decode(data)
    assert isinstance(welcome, probe.Welcome) and dst == CTL and via == "main"
    assert welcome.pub == CTL and welcome.alt_port == ALT.port
    return welcome.sid


def hold(sid: str, idx: int = 0, *, delay: float | None = 30.0, echo: bool = False, n: int = 1) -> bytes:
    return probe.encode_padded(probe.Hold(sid=sid, idx=idx, n=n, delay=delay, echo=echo))


def test_the_due_datagram_leaves_exactly_delay_after_the_hold_from_the_main_port_in_copies() -> None:
    responder = ProbeResponder(alt_port=ALT.port)
    sid = open_session(responder)
    responder.receive_datagram(hold(sid, 7, delay=30.0), MEASURED, "main", 100.0)
    ((ack, dst, via),) = responder.datagrams_to_send()
    assert dst == CTL and via == "main"  # the measured mapping stays idle: acknowledged on the control socket
    assert probe.decode(ack) == probe.Held(sid=sid, idx=7, n=1, pub=MEASURED)
    assert responder.get_timer() == 130.0
    responder.handle_timer(129.999999)
    assert responder.datagrams_to_send() == []
    responder.handle_timer(130.0)
    out = responder.datagrams_to_send()
    expected = [(probe.Due(sid=sid, idx=7), MEASURED, "main")] * probe.DUE_COPIES
    assert [(probe.decode(d), dst, via) for d, dst, via in out] == expected
    assert probe.DUE_COPIES >= 2  # one lost copy must not read as an expired mapping


def test_an_echo_hold_is_answered_on_the_measured_mapping() -> None:
    responder = ProbeResponder(alt_port=ALT.port)
    sid = open_session(responder)
    responder.receive_datagram(hold(sid, 3, delay=None, echo=True), MEASURED, "main", 1.0)
    ((data, dst, via),) = responder.datagrams_to_send()
    assert (probe.decode(data), dst, via) == (probe.Echo(sid=sid, idx=3, n=1), MEASURED, "main")
    assert responder.get_timer() == 1.0 + probe.SESSION_IDLE  # nothing scheduled: only the session's end


def test_a_retransmitted_hold_restarts_the_wait() -> None:
    responder = ProbeResponder(alt_port=ALT.port)
    sid = open_session(responder)
    responder.receive_datagram(hold(sid, delay=10.0, n=1), MEASURED, "main", 0.0)
    responder.receive_datagram(hold(sid, delay=10.0, n=2), MEASURED, "main", 0.5)
    responder.datagrams_to_send()
    responder.handle_timer(10.0)
    assert responder.datagrams_to_send() == []  # the first schedule was replaced
    responder.handle_timer(10.5)
    assert len(responder.datagrams_to_send()) == probe.DUE_COPIES


def test_cancel_and_bye_stop_what_was_scheduled() -> None:
    responder = ProbeResponder(alt_port=ALT.port)
    sid = open_session(responder)
    for idx in range(4):
        responder.receive_datagram(hold(sid, idx, delay=5.0), MEASURED, "main", 0.0)
    responder.receive_datagram(probe.encode(probe.Cancel(sid=sid, lo=1, hi=2)), CTL, "main", 1.0)
    responder.datagrams_to_send()
    responder.handle_timer(5.0)
    dues = {probe.decode(d).idx for d, _, _ in responder.datagrams_to_send()}  # type: ignore[union-attr]
    assert dues == {0, 3}
    responder.receive_datagram(hold(sid, 9, delay=5.0), MEASURED, "main", 6.0)
    responder.receive_datagram(probe.encode(probe.Bye(sid=sid)), CTL, "main", 7.0)
    responder.datagrams_to_send()
    responder.handle_timer(11.0)
    assert responder.datagrams_to_send() == []
    assert responder.sessions() == 0


def test_the_responder_never_sends_more_than_it_received_to_an_unverified_address() -> None:
    responder = ProbeResponder(alt_port=ALT.port)
    responder.receive_datagram(probe.encode(probe.Hello(n=1)), CTL, "main", 0.0)  # unpadded
    assert responder.datagrams_to_send() == []
    sid = open_session(responder)
    bare = probe.encode(probe.Hold(sid=sid, idx=0, n=1, delay=1.0, echo=True))
    responder.receive_datagram(bare, MEASURED, "main", 0.0)
    assert responder.datagrams_to_send() == []
    responder.handle_timer(2.0)
    assert responder.datagrams_to_send() == []
    assert responder.dropped == 2
    for request in (
        probe.encode_padded(probe.MapQuery(sid=sid, n=1)),
        probe.encode_padded(probe.FilterQuery(sid=sid, n=1)),
        hold(sid, 1, delay=1.0, echo=True),
    ):
        responder.receive_datagram(request, MEASURED, "main", 3.0)
        responder.handle_timer(4.0)
        sent = sum(len(d) for d, dst, _ in responder.datagrams_to_send() if dst == MEASURED)
        assert 0 < sent <= len(request)


def test_filter_query_is_answered_from_both_ports_and_map_query_from_the_port_asked() -> None:
    responder = ProbeResponder(alt_port=ALT.port)
    sid = open_session(responder)
    responder.receive_datagram(probe.encode_padded(probe.FilterQuery(sid=sid, n=2)), MEASURED, "main", 0.0)
    out = [(probe.decode(d), dst, via) for d, dst, via in responder.datagrams_to_send()]
    assert out == [
        (probe.Mapped(sid=sid, n=2, pub=MEASURED), MEASURED, "main"),
        (probe.FromAlt(sid=sid, n=2), MEASURED, "alt"),
    ]
    responder.receive_datagram(probe.encode_padded(probe.MapQuery(sid=sid, n=1)), MEASURED, "alt", 0.0)
    ((data, dst, via),) = responder.datagrams_to_send()
    assert (probe.decode(data), dst, via) == (probe.Mapped(sid=sid, n=1, pub=MEASURED), MEASURED, "alt")


def test_requests_for_unknown_sessions_and_on_the_wrong_port_are_ignored() -> None:
    responder = ProbeResponder(alt_port=ALT.port)
    sid = open_session(responder)
    other = "f" * 32
    for data, via in (
        (hold(other), "main"),
        (probe.encode_padded(probe.MapQuery(sid=other, n=1)), "main"),
        (hold(sid), "alt"),  # a mapping must be made toward the main port
        (probe.encode_padded(probe.Hello(n=1)), "alt"),
        (b"garbage", "main"),
    ):
        responder.receive_datagram(data, MEASURED, via, 0.0)  # type: ignore[arg-type]
    assert responder.datagrams_to_send() == []
    assert responder.dropped == 5


def test_sessions_and_tests_are_bounded() -> None:
    responder = ProbeResponder(alt_port=ALT.port, max_sessions=2, max_tests=3)
    sid = open_session(responder)
    for idx in range(5):
        responder.receive_datagram(hold(sid, idx), MEASURED, "main", 0.0)
    assert len(responder.datagrams_to_send()) == 3
    for port in (6000, 6001):
        responder.receive_datagram(probe.encode_padded(probe.Hello(n=1)), Addr(PUBLIC_IP, port), "main", 0.0)
    answers = [probe.decode(d) for d, _, _ in responder.datagrams_to_send()]
    assert isinstance(answers[0], probe.Welcome)
    assert isinstance(answers[1], probe.Refusal) and answers[1].code == "busy"


def test_pings_are_answered_to_the_control_socket_only() -> None:
    responder = ProbeResponder(alt_port=ALT.port)
    sid = open_session(responder, now=0.0)
    ping = probe.encode(probe.Ping(sid=sid, n=7))
    responder.receive_datagram(ping, MEASURED, "main", 1.0)
    assert responder.datagrams_to_send() == []
    responder.receive_datagram(ping, CTL, "main", 20.0)
    ((data, dst, via),) = responder.datagrams_to_send()
    assert (probe.decode(data), dst, via) == (probe.Pong(sid=sid, n=7), CTL, "main")
    responder.handle_timer(20.0 + probe.SESSION_IDLE - 0.001)  # a ping keeps the session
    assert responder.sessions() == 1


def test_a_retransmitted_hello_gets_the_same_session() -> None:
    responder = ProbeResponder(alt_port=ALT.port)
    assert open_session(responder) == open_session(responder)
    assert responder.sessions() == 1


def test_an_idle_session_is_forgotten() -> None:
    responder = ProbeResponder(alt_port=ALT.port)
    open_session(responder, now=0.0)
    responder.handle_timer(probe.SESSION_IDLE - 0.001)
    assert responder.sessions() == 1
    responder.handle_timer(probe.SESSION_IDLE)
    assert responder.sessions() == 0


# --- wire -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        probe.encode(probe.Bye(sid="0" * 32)),
        probe.encode_padded(probe.Hello(n=1)),
        b'{"v":1,"t":"probe_hello","n":1,"x":2}',  # routed to the probes, which then refuse it
        b'  {"n":1, "v":2, "t":"probe_anything"}',
    ],
)
def test_probe_messages_are_recognised(data: bytes) -> None:
    assert probe.is_probe_message(data)


@pytest.mark.parametrize(
    "data",
    [
        b'{"t":"probe","v":1,"src":"a","dst":"b","attempt":1,"ack":false}',  # natchat's hole-punching probe
        b'{"t":"register","v":1,"id":"a","priv":["1.2.3.4",5]}',
        b'{"v":1,"t":"probe_hello"',
        b'["probe_hello"]',
        b"\x00\x01\x00\x00\x21\x12\xa4\x42" + bytes(12),  # STUN
        b"\xff\xfe",
        b'{"v":1,"t":"probe_hello","pad":"' + b" " * 1200 + b'"}',
        b"",
    ],
)
def test_other_datagrams_are_not_probe_messages(data: bytes) -> None:
    assert not probe.is_probe_message(data)


@pytest.mark.parametrize(
    "data",
    [
        b'{"v":1,"t":"probe_hello","n":1,"x":2}',
        b'{"v":2,"t":"probe_hello","n":1}',
        b'{"v":1,"t":"probe_hello","n":0}',
        b'{"v":1,"t":"probe_hello","n":1,"pad":"xx"}',
        b'{"v":1,"t":"probe_bye","sid":"NOT-HEX"}',
        b'{"v":1,"t":"probe_hold","sid":"' + b"0" * 32 + b'","idx":1,"n":1,"delay":-1,"echo":false}',
        b'{"v":1,"t":"probe_mapped","sid":"' + b"0" * 32 + b'","n":1,"pub":["1.2.3.4",70000]}',
    ],
)
def test_decoding_is_strict(data: bytes) -> None:
    with pytest.raises(WireError):
        probe.decode(data)


def test_padding_makes_every_request_its_fixed_size() -> None:
    for msg in (
        probe.Hello(n=1),
        probe.Hold(sid="a" * 32, idx=65535, n=1000, delay=3600.0, echo=True),
        probe.MapQuery(sid="a" * 32, n=1),
        probe.FilterQuery(sid="a" * 32, n=1),
    ):
        data = probe.encode_padded(msg)
        assert len(data) == probe.REQUEST_SIZE
        decoded = probe.decode(data)
        assert msgspec.structs.replace(decoded, pad="") == msg


# --- configuration and output ---------------------------------------------------------------------------


def test_grid_covers_max_exactly() -> None:
    assert ProbeConfig(max_idle=2.5, resolution=1).grid() == [1.0, 2.0, 2.5]
    assert ProbeConfig(max_idle=3, resolution=1).grid() == [1.0, 2.0, 3.0]
    assert ProbeConfig(max_idle=0.3, resolution=0.1).grid() == [0.1, 0.2, 0.3]


@pytest.mark.parametrize(
    "kwargs",
    [{"resolution": 0}, {"resolution": 5, "max_idle": 2}, {"kinds": ()}, {"max_idle": 3600, "resolution": 0.1}],
)
def test_bad_configurations_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ProbeConfig(**kwargs)  # type: ignore[arg-type]


def test_human_and_json_output_say_the_same() -> None:
    report = Net(FakeNat(timeout=5.5, stream=8.5), ProbeConfig(max_idle=12)).report()
    text = "\n".join(report.lines())
    assert re.search(r"after one outbound datagram: +between 5 s and 6 s", text)
    assert re.search(r"after an exchange lasting over 2 s: +between 8 s and 9 s", text)
    assert "keepalive: send at least every 5 s" in text
    assert "behind a NAT" in text
    doc = json.loads(json.dumps(report.to_json()))
    assert doc["nat"] is True and doc["keepalive"] == 5.0
    assert [(lt["kind"], lt["survived"], lt["expired"]) for lt in doc["lifetimes"]] == [
        ("outbound", 5.0, 6.0),
        ("reply", 5.0, 6.0),
        ("stream", 8.0, 9.0),
    ]
    assert doc["filtering"] == ["address-and-port-dependent"]
    assert doc["tested"] == {"from": 1.0, "to": 12.0, "step": 1.0, "per_kind": 12}


def test_progress_runs_from_nothing_to_every_kind_answered() -> None:
    net = Net(FakeNat(timeout=5.5, stream=8.5), ProbeConfig(max_idle=12))
    assert net.prober.progress(START).kinds == ()
    net.run()
    final = net.prober.progress(net.now + 100)
    assert all(answered for _, _, answered in final.kinds)
    assert final.elapsed == pytest.approx(net.prober.report().elapsed)
