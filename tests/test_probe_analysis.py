"""The probes' pure conclusions (natchat/proto/probe/analysis.py): a lifetime bracket from test outcomes,
the RFC 4787 classification from what the server's two ports saw, and the sentences report.py makes
of them. No prober, no network: outcomes are written by hand."""

from __future__ import annotations

import pytest

from natchat.proto.probe import analysis, report
from natchat.proto.probe.analysis import (
    MAPPING_BEHAVIOURS,
    NOT_PORT_DEPENDENT,
    PORT_DEPENDENT,
    Bracket,
    Finding,
    Seen,
    bracket,
    classify_filtering,
    classify_mapping,
    finding,
    longest_survived,
)
from natchat.proto.wire import Addr


def outcomes(*seen: Seen) -> list[tuple[float, Seen]]:
    """Idle times 1 s, 2 s, ... with these outcomes."""
    return [(float(i + 1), s) for i, s in enumerate(seen)]


# --- bracketing -------------------------------------------------------------------------------------------


def test_an_expiry_confirmed_by_the_next_idle_time_is_the_answer() -> None:
    found = bracket(outcomes("survived", "survived", "expired", "expired", "pending"), confirm=1)
    assert found == Bracket(2.0, 3.0, ((1.0, "survived"), (2.0, "survived"), (3.0, "expired")))


def test_an_expiry_waits_for_its_confirmation() -> None:
    assert bracket(outcomes("survived", "expired", "pending"), confirm=1) is None
    assert bracket(outcomes("survived", "expired", "expired", "pending"), confirm=2) is None
    assert bracket(outcomes("survived", "expired", "pending"), confirm=0) == Bracket(
        1.0, 2.0, ((1.0, "survived"), (2.0, "expired"))
    )


def test_an_expiry_below_a_survivor_was_a_lost_datagram() -> None:
    found = bracket(outcomes("survived", "expired", "survived", "expired", "expired"), confirm=1)
    assert found is not None
    assert (found.survived, found.expired) == (3.0, 4.0)
    assert found.results == ((1.0, "survived"), (2.0, "lost"), (3.0, "survived"), (4.0, "expired"))


def test_lost_tests_neither_confirm_nor_contradict() -> None:
    found = bracket(outcomes("lost", "survived", "expired", "lost", "expired"), confirm=1)
    assert found == Bracket(2.0, 3.0, ((1.0, "lost"), (2.0, "survived"), (3.0, "expired")))


def test_a_pending_shorter_test_holds_the_answer_back() -> None:
    assert bracket(outcomes("survived", "pending", "expired", "expired"), confirm=1) is None


def test_the_last_idle_time_expiring_needs_no_confirmation_once_all_are_known() -> None:
    assert bracket(outcomes("survived", "expired"), confirm=1) == Bracket(
        1.0, 2.0, ((1.0, "survived"), (2.0, "expired"))
    )


def test_every_idle_time_surviving_is_longer_than_the_longest() -> None:
    found = bracket(outcomes("survived", "lost", "survived"), confirm=1)
    assert found == Bracket(3.0, None, ((1.0, "survived"), (2.0, "lost"), (3.0, "survived")))
    assert bracket(outcomes("survived", "survived", "pending"), confirm=1) is None


def test_nothing_surviving_and_nothing_answered() -> None:
    assert bracket(outcomes("expired", "expired", "expired"), confirm=1) == Bracket(None, 1.0, ((1.0, "expired"),))
    nothing = bracket(outcomes("lost", "lost"), confirm=1)
    assert nothing == Bracket(None, None, ((1.0, "lost"), (2.0, "lost")))
    lifetime = report.Lifetime(report.Kind.REPLY, nothing.survived, nothing.expired, nothing.results, 1.0)
    assert lifetime.describe(2.0, 1.0) == "unknown: no test got an answer from the server"


def test_longest_survived_so_far_stops_at_the_first_unknown_or_expired() -> None:
    assert longest_survived(outcomes("survived", "lost", "survived", "pending", "survived")) == 3.0
    assert longest_survived(outcomes("survived", "expired", "survived")) == 1.0
    assert longest_survived(outcomes("pending", "survived")) is None
    assert longest_survived([]) is None


# --- classification ---------------------------------------------------------------------------------------

A = Addr("10.0.0.1", 30000)
B = Addr("10.0.0.1", 30001)


def test_mapping_classification() -> None:
    assert classify_mapping(A, A) == NOT_PORT_DEPENDENT == ("endpoint-independent", "address-dependent")
    assert classify_mapping(A, B) == PORT_DEPENDENT == ("address-and-port-dependent",)
    assert classify_mapping(A, None) == classify_mapping(None, A) == MAPPING_BEHAVIOURS
    assert classify_mapping(None, None) == MAPPING_BEHAVIOURS


def test_filtering_classification() -> None:
    assert classify_filtering(True) == NOT_PORT_DEPENDENT
    assert classify_filtering(False) == PORT_DEPENDENT
    assert classify_filtering(None) == analysis.FILTERING_BEHAVIOURS


@pytest.mark.parametrize(
    ("behaviours", "expected"),
    [
        (PORT_DEPENDENT, Finding.PORT_DEPENDENT),
        (NOT_PORT_DEPENDENT, Finding.NOT_PORT_DEPENDENT),
        (MAPPING_BEHAVIOURS, Finding.UNKNOWN),
        (("endpoint-independent",), Finding.UNKNOWN),
    ],
)
def test_finding_names_the_case(behaviours: tuple[str, ...], expected: Finding) -> None:
    assert finding(behaviours) is expected


# --- what report.py says of them --------------------------------------------------------------------------


def test_the_failure_sentences() -> None:
    assert report.no_answer(Addr("127.0.0.1", 10080), 4.0) == (
        "no answer from 127.0.0.1:10080 within 4 s: the server is down, does not answer probes"
        " (natchat serve --no-probe, or not natchat), or UDP is blocked on the way"
    )
    assert report.refused("64 probe sessions running") == "the server refused the probe: 64 probe sessions running"
    assert report.too_large(100, 3600.0, 900, 300.0) == (
        "the server allows 100 tests of at most 3600 s; this run needs 900 of up to 300 s"
        " (use a larger --resolution or a smaller --max)"
    )
    assert report.stopped_answering(4.0) == (
        "the server stopped answering for 4 s during the measurement, so missing probes cannot be told"
        " from expired mappings; try again"
    )
    assert report.only_control_answered(9) == (
        "the server answered the control socket but no datagram from the 9 measurement sockets:"
        " a firewall or the NAT lets only one flow through?"
    )


def test_every_kind_means_something() -> None:
    assert [kind.meaning for kind in report.Kind] == [
        "after one outbound datagram",
        "after one request and its answer",
        "after an exchange lasting over 2 s",
    ]
