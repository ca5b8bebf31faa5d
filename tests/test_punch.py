"""DirectPath alone (natchat/proto/punch.py) with a fake PathPort and a real SocketPool: the phase table,
the sockets it opens and closes, asking, probing and the path's end. A manual ``now``, exact timers."""

from __future__ import annotations

import pytest

from natchat.proto.actions import Action, CloseSocket, OpenSocket
from natchat.proto.punch import ASK_RETRY, TRANSITIONS, DirectPath, IllegalTransition, Phase, Step, candidates
from natchat.proto.sockets import MAIN, SocketPool
from natchat.proto.wire import Addr

PEER_PUB = Addr("198.51.100.2", 4000)
PEER_PRIV = Addr("10.0.0.2", 5000)
ATTEMPT_TIME = 2.0


class FakePort:
    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def ask(self, sock: int, attempt: int) -> None:
        self.calls.append(("ask", sock, attempt))

    def probe(self, sock: int, attempt: int, candidates: list[Addr], at: float, first: bool) -> None:
        self.calls.append(("probe", sock, attempt, tuple(candidates), at, first))


def make() -> tuple[DirectPath, FakePort, list[Action]]:
    actions: list[Action] = []
    pool = SocketPool(Addr("10.0.0.1", 6000), actions.append)
    port = FakePort()
    return DirectPath("b", pool, port, probe_interval=0.25, dead_after=4.0), port, actions


def test_the_transition_table() -> None:
    I, O, A, P, U = Phase.IDLE, Phase.OPENING, Phase.ASKING, Phase.PROBING, Phase.UP  # noqa: E741
    expected = {
        (I, Step.START_MAIN): A, (O, Step.START_MAIN): A, (A, Step.START_MAIN): A, (P, Step.START_MAIN): A,
        (I, Step.START_FRESH): O, (O, Step.START_FRESH): O, (A, Step.START_FRESH): O,
        (P, Step.START_FRESH): O, (U, Step.START_FRESH): O,
        (I, Step.GO): P, (O, Step.GO): P, (A, Step.GO): P, (P, Step.GO): P, (U, Step.GO): P,
        (I, Step.HEARD): U, (O, Step.HEARD): U, (A, Step.HEARD): U, (P, Step.HEARD): U,
        (A, Step.ENDED): I, (P, Step.ENDED): I,
        (I, Step.GIVE_UP): I, (O, Step.GIVE_UP): I, (A, Step.GIVE_UP): I, (P, Step.GIVE_UP): I,
        (O, Step.OPENED): A,
        (U, Step.DEAD): I,
    }  # fmt: skip
    assert expected == TRANSITIONS


def test_an_illegal_step_raises() -> None:
    path, _, _ = make()
    path.heard(MAIN, PEER_PUB, 0.0)
    assert path.phase is Phase.UP
    with pytest.raises(IllegalTransition, match=r"^b: start from the registered socket while up$"):
        path.start(1.0, ATTEMPT_TIME, fresh=False)


def test_start_from_main_asks_at_once_and_opens_nothing() -> None:
    path, port, actions = make()
    path.start(10.0, ATTEMPT_TIME, fresh=False)
    assert (path.phase, path.sock, path.attempt) == (Phase.ASKING, MAIN, 1)
    assert port.calls == [("ask", MAIN, 1)] and actions == []
    assert path.timers(None) == [10.0 + ASK_RETRY]


def test_start_fresh_opens_a_socket_then_asks_from_it() -> None:
    path, port, actions = make()
    path.start(0.0, ATTEMPT_TIME, fresh=True)
    assert (path.phase, path.sock, path.attempt) == (Phase.OPENING, 1, 1)
    assert actions == [OpenSocket(1)] and port.calls == []
    path.opened(2, 0.1, ATTEMPT_TIME)  # not its socket: nothing
    assert path.phase is Phase.OPENING
    path.opened(1, 0.1, ATTEMPT_TIME)
    assert path.phase is Phase.ASKING and port.calls == [("ask", 1, 1)]
    assert path.timers(None) == [0.1 + ASK_RETRY]
    path.start(1.0, ATTEMPT_TIME, fresh=True)  # again fresh: a new socket, the old one closed after
    assert actions == [OpenSocket(1), OpenSocket(2), CloseSocket(1)] and path.sock == 2 and path.attempt == 2
    path.start(2.0, ATTEMPT_TIME, fresh=False)  # from MAIN: the fresh one closed
    assert actions[3:] == [CloseSocket(2)] and path.sock == MAIN and path.attempt == 3
    path.close()
    assert actions[4:] == []  # MAIN is never closed


def test_ask_is_retried_every_half_second_until_the_attempt_ends() -> None:
    assert ASK_RETRY == 0.5
    path, port, _ = make()
    path.start(0.0, ATTEMPT_TIME, fresh=False)
    assert path.handle_timer(0.4, None) is None and port.calls == [("ask", MAIN, 1)]
    assert path.handle_timer(0.5, None) is None and port.calls[1:] == [("ask", MAIN, 1)]
    assert path.timers(None) == [1.0]
    assert path.handle_timer(2.0, None) is Step.ENDED
    assert path.phase is Phase.IDLE and path.timers(None) == [] and len(port.calls) == 2


def test_go_probes_from_start_then_every_probe_interval() -> None:
    path, port, _ = make()
    path.start(0.0, ATTEMPT_TIME, fresh=False)
    path.go(1, MAIN, [PEER_PUB], 0.5, 0.2, ATTEMPT_TIME)
    assert path.phase is Phase.PROBING
    assert port.calls[1:] == [("probe", MAIN, 1, (PEER_PUB,), 0.5, True)]
    assert path.attempt_ends == 2.5  # max(0 + 2, 0.5 + 2)
    assert path.timers(None) == [0.75]
    assert path.handle_timer(0.75, None) is None
    assert port.calls[2:] == [("probe", MAIN, 1, (PEER_PUB,), 0.75, False)]
    assert path.timers(None) == [1.0]


def test_stale_and_duplicate_go_are_ignored() -> None:
    path, port, _ = make()
    path.start(0.0, ATTEMPT_TIME, fresh=False)
    path.start(0.0, ATTEMPT_TIME, fresh=False)  # attempt 2
    port.calls.clear()
    path.go(1, MAIN, [PEER_PUB], 0.1, 0.1, ATTEMPT_TIME)
    assert path.phase is Phase.ASKING and port.calls == []
    path.go(2, MAIN, [PEER_PUB], 0.1, 0.1, ATTEMPT_TIME)
    path.go(2, MAIN, [PEER_PRIV], 0.2, 0.2, ATTEMPT_TIME)
    assert port.calls == [("probe", MAIN, 2, (PEER_PUB,), 0.1, True)]
    assert path.candidates == [PEER_PUB]


def test_go_on_another_socket_moves_there_and_closes_the_fresh_one() -> None:
    path, _, actions = make()
    path.start(0.0, ATTEMPT_TIME, fresh=True)
    path.go(4, MAIN, [PEER_PUB], 0.1, 0.1, ATTEMPT_TIME)
    assert actions == [OpenSocket(1), CloseSocket(1)] and path.sock == MAIN and path.attempt == 4


def test_go_while_up_and_working_answers_toward_the_candidates_and_keeps_the_path() -> None:
    path, port, _ = make()
    assert path.heard(MAIN, PEER_PUB, 1.0)
    path.go(3, MAIN, [PEER_PRIV, PEER_PUB], 1.5, 2.0, ATTEMPT_TIME)
    assert path.phase is Phase.UP and path.attempt == 3
    assert port.calls == [("probe", MAIN, 3, (PEER_PRIV, PEER_PUB), 2.0, False)]
    path.go(4, MAIN, [PEER_PUB], 5.0, 5.0, ATTEMPT_TIME)  # heard 4 s ago: not working any more
    assert path.phase is Phase.PROBING


def test_heard_brings_the_path_up_once() -> None:
    path, _, actions = make()
    path.start(0.0, ATTEMPT_TIME, fresh=True)
    path.opened(1, 0.0, ATTEMPT_TIME)
    assert path.heard(1, PEER_PUB, 0.5)
    assert (path.phase, path.sock, path.addr, path.last_heard) == (Phase.UP, 1, PEER_PUB, 0.5)
    assert not path.heard(1, PEER_PUB, 0.6) and path.last_heard == 0.6
    assert not path.heard(1, PEER_PRIV, 0.7) and path.addr == PEER_PRIV  # moved: still up
    assert not path.heard(MAIN, PEER_PUB, 0.8)  # moved to MAIN: the fresh socket closed
    assert path.sock == MAIN and actions == [OpenSocket(1), CloseSocket(1)]
    assert path.up


def test_an_up_path_without_answers_is_dead() -> None:
    path, _, _ = make()
    path.heard(MAIN, PEER_PUB, 3.0)
    assert path.timers(None) == [] and path.handle_timer(100.0, None) is None  # nothing in flight
    assert path.dead_at(5.0) == 9.0 and path.dead_at(1.0) == 7.0
    assert path.timers(5.0) == [9.0]
    assert path.handle_timer(8.9, 5.0) is None and path.up
    assert path.handle_timer(9.0, 5.0) is Step.DEAD and path.phase is Phase.IDLE


def test_invited_starts_the_peers_attempt_fresh_or_asks_again() -> None:
    path, port, actions = make()
    path.invited(3, 0.0, ATTEMPT_TIME)
    assert (path.phase, path.attempt, actions) == (Phase.OPENING, 3, [OpenSocket(1)])
    path.opened(1, 0.1, ATTEMPT_TIME)
    path.invited(3, 0.2, ATTEMPT_TIME)  # the same attempt while asking: our request may be lost
    assert port.calls == [("ask", 1, 3), ("ask", 1, 3)]
    path.invited(2, 0.3, ATTEMPT_TIME)  # older: nothing
    assert len(port.calls) == 2 and path.attempt == 3


def test_give_up_leaves_an_up_path_up() -> None:
    path, _, _ = make()
    path.start(0.0, ATTEMPT_TIME, fresh=True)
    path.give_up()
    assert path.phase is Phase.IDLE
    path.heard(MAIN, PEER_PUB, 1.0)
    path.give_up()
    assert path.up


def test_candidates_same_nat_private_first_else_public_only() -> None:
    mine_same = Addr("198.51.100.2", 9999)
    mine_other = Addr("203.0.113.7", 4000)
    assert candidates(PEER_PUB, PEER_PRIV, mine_same) == [PEER_PRIV, PEER_PUB]
    assert candidates(PEER_PUB, PEER_PRIV, mine_other) == [PEER_PUB]
    assert candidates(PEER_PUB, PEER_PRIV, None) == [PEER_PUB]
    assert candidates(PEER_PUB, PEER_PUB, mine_same) == [PEER_PUB]  # no duplicate
