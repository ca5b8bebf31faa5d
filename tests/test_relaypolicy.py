"""RelayPolicy alone (natchat/proto/relaypolicy.py): when messages go through the relay, and when a
relayed peer tries direct again. A manual ``now``, exact timers."""

from __future__ import annotations

from natchat.proto.relaypolicy import INF, RelayConfig, RelayPolicy


def waiting(policy: RelayPolicy) -> float | None:
    return policy.fallback_at(up=False, pending=True, ready=True)


def test_fallback_at_trying_since_plus_relay_after() -> None:
    policy = RelayPolicy(RelayConfig(relay_after=3.0))
    assert waiting(policy) is None  # not looking yet
    policy.looking(2.0)
    policy.looking(2.5)  # still the first time counts
    assert waiting(policy) == 5.0
    policy.stop_looking()
    assert waiting(policy) is None


def test_fallback_at_once_with_relay_only() -> None:
    assert waiting(RelayPolicy(RelayConfig(mode="relay"))) == 0.0


def test_no_fallback_when_up_not_pending_not_ready_or_relayed() -> None:
    policy = RelayPolicy(RelayConfig())
    policy.looking(1.0)
    assert policy.fallback_at(up=True, pending=True, ready=True) is None
    assert policy.fallback_at(up=False, pending=False, ready=True) is None
    assert policy.fallback_at(up=False, pending=True, ready=False) is None
    policy.relay(4.0, idle=False)
    assert waiting(policy) is None


def test_background_attempts_after_1_2_4_up_to_15_s() -> None:
    policy = RelayPolicy(RelayConfig(upgrade_max=15.0, upgrade_for=1000.0))
    policy.last_used = 0.0
    policy.relay(0.0, idle=False)  # an attempt is under way: the next is planned when it ends
    assert policy.next_direct == INF and policy.timers(idle=True) == []
    now, starts = 10.0, []
    for _ in range(7):
        assert policy.attempt_failed(now)
        starts.append(policy.next_direct - now)
        assert policy.timers(idle=True) == [policy.next_direct]
        assert policy.timers(idle=False) == []
        assert not policy.direct_due(policy.next_direct - 0.001)
        now = policy.next_direct
        assert policy.direct_due(now)
        now += 2.0  # the attempt lasts 2 s
    assert starts == [1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0]


def test_relaying_an_idle_path_tries_direct_after_a_second() -> None:
    policy = RelayPolicy(RelayConfig())
    policy.last_used = 0.0
    policy.relay(3.0, idle=True)
    assert policy.relayed and policy.next_direct == 4.0 and policy.timers(idle=True) == [4.0]
    assert policy.direct_due(4.0)


def test_attempt_failed_is_the_links_decision_when_not_relayed() -> None:
    policy = RelayPolicy(RelayConfig())
    assert not policy.attempt_failed(5.0)
    assert policy.next_direct == INF


def test_no_more_attempts_when_nobody_chatted_within_upgrade_for() -> None:
    policy = RelayPolicy(RelayConfig(upgrade_for=120.0))
    policy.last_used = 10.0
    policy.relay(20.0, idle=True)
    assert policy.attempt_failed(129.0) and policy.next_direct == 130.0
    assert policy.timers(idle=True) == []  # 130 is past 10 + 120: no timer for it
    assert not policy.direct_due(130.0)
    assert policy.next_direct == INF  # stopped until somebody chats
    policy.last_used = 200.0
    assert policy.attempt_failed(201.0) and policy.direct_due(policy.next_direct)


def test_direct_clears_the_relay() -> None:
    policy = RelayPolicy(RelayConfig())
    policy.looking(1.0)
    assert not policy.direct()  # was not relayed
    assert policy.trying_since is None
    policy.looking(2.0)
    policy.relay(5.0, idle=True)
    assert policy.direct()
    assert not policy.relayed and policy.next_direct == INF and policy.trying_since is None
    assert policy.timers(idle=True) == [] and not policy.direct_due(100.0)


def test_relay_only_never_tries_direct() -> None:
    """README and docs/PROTOCOL.md: ``--relay-only`` clients never punch. FAILS today: the policy plans a
    background direct attempt a second after relaying, and the link starts it (a punch_req)."""
    policy = RelayPolicy(RelayConfig(mode="relay"))
    policy.last_used = 0.0
    policy.relay(0.0, idle=True)
    assert policy.timers(idle=True) == []
    assert not policy.direct_due(1.0)
