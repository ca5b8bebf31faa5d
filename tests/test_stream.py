"""The reliable streams alone (natchat/proto/stream.py): a manual ``now``, exact timers, no Sim.

:class:`SendStream` numbers, windows, retransmits and gives up; :class:`ReceiveStream` shows each
message once and in order, and drops replays of the streams it saw replaced.
"""

from __future__ import annotations

from natchat.proto.stream import RETIRED_STREAMS, ReceiveStream, SendStream, StreamConfig

STREAM = 1000
OTHER = 2000


def seqs(stream: SendStream, now: float) -> list[int]:
    return [out.seq for out in stream.due(now)]


def sender(n: int = 0, now: float = 0.0, **config: float) -> SendStream:
    tx = SendStream(STREAM, StreamConfig(**config))  # type: ignore[arg-type]
    for i in range(n):
        tx.queue(f"m{i + 1}", False, now)
    return tx


# --- SendStream -------------------------------------------------------------------------------------


def test_the_defaults_are_the_documented_ones() -> None:
    assert StreamConfig() == StreamConfig(deliver_within=10.0, retransmit_first=0.3, retransmit_max=2.0, window=32)


def test_queue_numbers_from_one_and_keeps_order_and_deadlines() -> None:
    tx = sender()
    assert not tx.pending and tx.base == 1
    assert [tx.queue("a", False, 5.0), tx.queue("b", True, 6.0), tx.queue("c", False, 7.0)] == [1, 2, 3]
    assert tx.pending and tx.base == 1 and tx.next_seq == 4
    assert [(o.seq, o.text, o.group, o.give_up_at, o.sent_at) for o in tx.outbox.values()] == [
        (1, "a", False, 15.0, None),
        (2, "b", True, 16.0, None),
        (3, "c", False, 17.0, None),
    ]


def test_nothing_is_due_before_it_was_queued_and_each_is_sent_once_until_its_retransmission() -> None:
    tx = sender(2)
    assert seqs(tx, 0.0) == [1, 2]
    assert seqs(tx, 0.0) == []
    assert seqs(tx, 0.29) == []
    assert tx.oldest_unacked() == 0.0


def test_first_retransmission_after_0_3_s_then_doubling_up_to_2_s() -> None:
    tx = sender(1)
    now = 0.0
    assert seqs(tx, now) == [1]
    gaps = []
    for _ in range(6):
        (out,) = tx.outbox.values()
        nxt = out.next_tx
        assert seqs(tx, nxt - 1e-9) == []  # not a moment before
        assert seqs(tx, nxt) == [1]
        gaps.append(round(nxt - now, 9))
        now = nxt
    assert gaps == [0.3, 0.6, 1.2, 2.0, 2.0, 2.0]
    assert tx.outbox[1].sent_at == 0.0  # first sent then: retransmissions do not move it


def test_due_reschedules_at_now_plus_the_interval() -> None:
    tx = sender(1)
    tx.due(10.0)
    assert tx.outbox[1].next_tx == 10.0 + 0.3
    tx.due(11.0)  # late (the shell slept longer): the next gap counts from now
    assert tx.outbox[1].next_tx == 11.0 + 0.6
    assert tx.outbox[1].interval == 0.6


def test_at_most_window_messages_in_flight() -> None:
    tx = sender(40)
    assert seqs(tx, 0.0) == list(range(1, 33))
    tx.on_ack(STREAM, 5)
    assert seqs(tx, 0.1) == [33]  # one slot freed: the next message; the others are not due yet
    assert seqs(tx, 0.1) == []
    for seq in range(1, 8):
        tx.on_ack(STREAM, seq)
    assert seqs(tx, 0.2) == [34, 35, 36, 37, 38, 39]
    assert list(tx.outbox) == list(range(8, 41))


def test_a_small_window() -> None:
    tx = sender(3, window=1)
    assert seqs(tx, 0.0) == [1]
    assert seqs(tx, 0.3) == [1]  # retransmitted, 2 still waits
    tx.on_ack(STREAM, 1)
    assert seqs(tx, 0.31) == [2]


def test_an_ack_of_another_stream_or_an_unknown_seq_changes_nothing() -> None:
    tx = sender(2)
    tx.due(0.0)
    tx.on_ack(OTHER, 1)
    tx.on_ack(STREAM, 7)
    assert list(tx.outbox) == [1, 2] and tx.base == 1
    tx.on_ack(STREAM, 1)
    assert list(tx.outbox) == [2] and tx.base == 2


def test_base_is_the_lowest_unacknowledged_seq_else_the_next_one() -> None:
    tx = sender(3)
    tx.on_ack(STREAM, 2)
    assert tx.base == 1
    tx.on_ack(STREAM, 1)
    assert tx.base == 3
    tx.on_ack(STREAM, 3)
    assert tx.base == 4 and not tx.pending
    assert tx.queue("d", False, 0.0) == 4 and tx.base == 4


def test_send_again_sends_everything_at_once_as_if_new() -> None:
    tx = sender(2)
    tx.due(0.0)
    tx.due(0.3)  # interval 0.6 now
    assert seqs(tx, 0.5) == []
    tx.send_again()
    assert tx.oldest_unacked() is None
    assert seqs(tx, 0.5) == [1, 2]
    assert [(o.sent_at, o.interval, o.next_tx) for o in tx.outbox.values()] == [(0.5, 0.3, 0.5 + 0.3)] * 2


def test_hurry_makes_what_was_sent_due_now() -> None:
    tx = sender(2)
    tx.due(0.0)
    assert seqs(tx, 0.1) == []
    tx.hurry(0.1)
    assert seqs(tx, 0.1) == [1, 2]
    assert tx.outbox[1].sent_at == 0.0  # a retransmission on the same stream: first sent at 0


def test_expired_at_deliver_within_of_the_oldest() -> None:
    tx = sender(deliver_within=5.0)
    tx.queue("a", False, 1.0)
    tx.queue("b", False, 2.0)
    assert not tx.expired(5.999)
    assert tx.expired(6.0)
    tx.on_ack(STREAM, 1)
    assert not tx.expired(6.0) and tx.expired(7.0)


def test_fail_all_returns_everything_in_order_and_starts_the_new_stream_at_seq_1() -> None:
    tx = sender(3)
    tx.due(0.0)
    tx.on_ack(STREAM, 2)
    failed = tx.fail_all(OTHER)
    assert [(o.seq, o.text) for o in failed] == [(1, "m1"), (3, "m3")]
    assert tx.stream == OTHER and not tx.pending and tx.base == 1 and tx.timers(sending=True) == []
    assert tx.queue("again", False, 1.0) == 1
    tx.on_ack(STREAM, 1)  # the old stream's ack of its seq 1 does not acknowledge the new seq 1
    assert list(tx.outbox) == [1]
    tx.on_ack(OTHER, 1)
    assert not tx.pending


def test_timers_are_deadlines_and_with_a_path_retransmissions() -> None:
    tx = sender()
    assert tx.timers(sending=True) == []
    tx.queue("a", False, 0.0)
    tx.queue("b", False, 1.0)
    assert tx.timers(sending=False) == [10.0, 11.0]
    assert tx.timers(sending=True) == [10.0, 11.0]  # nothing sent yet: no retransmission time
    tx.due(2.0)
    assert tx.timers(sending=False) == [10.0, 11.0]
    assert tx.timers(sending=True) == [10.0, 11.0, 2.0 + 0.3, 2.0 + 0.3]


def test_oldest_unacked_is_the_earliest_first_send() -> None:
    tx = sender(1)
    assert tx.oldest_unacked() is None
    tx.due(3.0)
    tx.queue("late", False, 4.0)
    tx.due(4.0)
    assert tx.oldest_unacked() == 3.0
    tx.on_ack(STREAM, 1)
    assert tx.oldest_unacked() == 4.0


# --- ReceiveStream ----------------------------------------------------------------------------------


def test_in_order_messages_are_shown_at_once() -> None:
    rx = ReceiveStream()
    assert rx.on_chat(STREAM, 1, 1, "a", False) == [("a", False)]
    assert rx.on_chat(STREAM, 1, 2, "b", True) == [("b", True)]
    assert rx.next == 3


def test_out_of_order_messages_are_held_then_shown_in_order() -> None:
    rx = ReceiveStream()
    assert rx.on_chat(STREAM, 1, 3, "c", False) == []
    assert rx.on_chat(STREAM, 1, 2, "b", False) == []
    assert rx.on_chat(STREAM, 1, 1, "a", False) == [("a", False), ("b", False), ("c", False)]
    assert rx.held == {}


def test_duplicates_are_acknowledged_but_not_shown_again() -> None:
    rx = ReceiveStream()
    rx.on_chat(STREAM, 1, 1, "a", False)
    assert rx.on_chat(STREAM, 1, 1, "a", False) == []  # shown already: [] means acknowledge
    assert rx.on_chat(STREAM, 1, 3, "c", False) == []
    assert rx.on_chat(STREAM, 1, 3, "c", False) == []  # held already
    assert rx.on_chat(STREAM, 1, 2, "b", False) == [("b", False), ("c", False)]


def test_a_base_jump_skips_what_the_sender_saw_acknowledged() -> None:
    rx = ReceiveStream()
    rx.on_chat(STREAM, 1, 1, "a", False)
    assert rx.on_chat(STREAM, 1, 3, "c", False) == []  # 2 missing
    assert rx.on_chat(STREAM, 1, 6, "f", False) == []
    # the sender saw everything before 5 acknowledged (by this receiver, before it lost track): resume at 5
    assert rx.on_chat(STREAM, 5, 5, "e", False) == [("e", False), ("f", False)]
    assert rx.next == 7 and rx.held == {}


def test_a_new_stream_resumes_at_its_base() -> None:
    rx = ReceiveStream()
    rx.on_chat(STREAM, 1, 1, "a", False)
    rx.on_chat(STREAM, 1, 3, "c", False)  # held, and lost with the stream
    assert rx.on_chat(OTHER, 4, 4, "d", False) == [("d", False)]
    assert rx.stream == OTHER and rx.next == 5 and rx.held == {}
    assert list(rx.ended) == [STREAM]
    assert rx.on_chat(OTHER, 4, 3, "c", False) == []  # below base: acknowledged, not shown


def test_a_receiver_without_state_resumes_at_the_base() -> None:
    rx = ReceiveStream()
    assert rx.on_chat(STREAM, 7, 8, "h", False) == []
    assert rx.on_chat(STREAM, 7, 7, "g", False) == [("g", False), ("h", False)]


def test_a_retired_stream_is_dropped_unacknowledged() -> None:
    rx = ReceiveStream()
    rx.on_chat(STREAM, 1, 1, "a", False)
    rx.on_chat(OTHER, 1, 1, "x", False)
    assert rx.on_chat(STREAM, 1, 2, "b", False) is None
    assert rx.on_chat(STREAM, 1, 1, "a", False) is None
    assert rx.stream == OTHER and rx.next == 2


def test_too_far_ahead_is_not_acknowledged() -> None:
    rx = ReceiveStream(window=4)
    rx.on_chat(STREAM, 1, 1, "a", False)  # next is 2: at most 2 + 16 - 1
    assert rx.on_chat(STREAM, 1, 18, "r", False) is None
    assert rx.on_chat(STREAM, 1, 17, "q", False) == []
    assert rx.held == {17: ("q", False)}
    assert ReceiveStream().on_chat(STREAM, 1, 129, "x", False) is None  # default window 32: 4 x 32
    assert ReceiveStream().on_chat(STREAM, 1, 128, "x", False) == []


def test_sixteen_retired_streams_are_remembered() -> None:
    assert RETIRED_STREAMS == 16
    rx = ReceiveStream()
    streams = list(range(100, 118))  # 18 streams, one after the other
    for s in streams:
        assert rx.on_chat(s, 1, 1, f"s{s}", False) == [(f"s{s}", False)]
    assert list(rx.ended) == streams[1:17]  # the 16 latest retired; the first is forgotten
    assert rx.on_chat(streams[1], 1, 2, "old", False) is None
    assert rx.on_chat(streams[0], 1, 2, "very old", False) == []  # forgotten: a new stream again, at its base 1
    assert rx.stream == streams[0] and rx.next == 1
