"""The relay gate alone: per-sender datagram and byte rates, RelayStarted once a pair, forgetting."""

from __future__ import annotations

from natchat.proto.relaygate import RelayGate, Verdict


def test_first_datagram_of_a_pair_and_direction_is_said_once() -> None:
    gate = RelayGate(10.0, 10_000.0)
    assert gate.admit("a", "b", 100, 0.0) is Verdict.FIRST
    assert gate.admit("a", "b", 100, 0.0) is Verdict.RELAY
    assert gate.admit("b", "a", 100, 0.0) is Verdict.FIRST
    assert gate.relayed == 3 and gate.relaying() == {"a": frozenset({"b"}), "b": frozenset({"a"})}


def test_datagram_rate_bursts_twice_then_refills() -> None:
    gate = RelayGate(10.0, 1e9)
    verdicts = [gate.admit("a", "b", 1, 0.0) for _ in range(25)]
    assert verdicts.count(Verdict.LIMITED) == 5 and gate.limited == 5 and gate.relayed == 20
    assert gate.admit("a", "b", 1, 0.05) is Verdict.LIMITED  # half a datagram refilled
    assert gate.admit("a", "b", 1, 0.1) is Verdict.RELAY


def test_byte_rate_limits_big_datagrams_without_taking_a_datagram() -> None:
    gate = RelayGate(100.0, 1000.0)
    assert gate.admit("a", "b", 1500, 0.0) is Verdict.FIRST
    assert gate.admit("a", "b", 600, 0.0) is Verdict.LIMITED  # 500 bytes left
    assert gate.admit("a", "b", 500, 0.0) is Verdict.RELAY


def test_forgetting_a_client_forgets_it_as_sender_and_receiver() -> None:
    gate = RelayGate(10.0, 10_000.0)
    gate.admit("a", "b", 1, 0.0)
    gate.admit("b", "a", 1, 0.0)
    gate.forget("b")
    assert gate.relaying() == {"a": frozenset()} and gate.metered() == {"a"}
