"""Reliable, ordered delivery of one peer's chat messages: the sending and the receiving half of a stream.

Messages to a peer are numbered per *stream* (a random number the sender picks, messages from 1), kept
until acknowledged, retransmitted with backoff, and given up on after ``deliver_within`` seconds,
together with everything queued behind them (order must hold); the sender then starts a new stream. The
receiver shows each message once and in order, and remembers the streams it saw replaced, so that a
replayed datagram of an ended stream is not shown again. ``docs/PROTOCOL.md`` (*Reliable delivery*).

Owns: numbering, the outbox, retransmission times and deadlines (:class:`SendStream`); the stream being
received, held out-of-order messages and retired streams (:class:`ReceiveStream`). May not: know which
path a datagram takes, seal anything, or send: the link asks what is due and sends it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

RETIRED_STREAMS = 16
"""Ended incoming streams remembered per peer, so that a replayed datagram of one is not shown again."""


@dataclass(frozen=True, slots=True)
class StreamConfig:
    deliver_within: float = 10.0
    retransmit_first: float = 0.3
    retransmit_max: float = 2.0
    window: int = 32


@dataclass(slots=True)
class Outgoing:
    seq: int
    text: str
    give_up_at: float
    group: bool = False
    sent_at: float | None = None
    """First sent on the current path (None: not yet, or to be sent again at once)."""
    next_tx: float = 0.0
    interval: float = 0.0


class SendStream:
    def __init__(self, stream: int, config: StreamConfig) -> None:
        self.stream = stream
        self.config = config
        self.next_seq = 1
        self.outbox: dict[int, Outgoing] = {}
        """Unacknowledged messages, in seq order."""

    @property
    def pending(self) -> bool:
        return bool(self.outbox)

    @property
    def base(self) -> int:
        """The lowest seq not seen acknowledged (everything before it was shown)."""
        return next(iter(self.outbox), self.next_seq)

    def queue(self, text: str, group: bool, now: float) -> int:
        seq = self.next_seq
        self.next_seq += 1
        self.outbox[seq] = Outgoing(seq, text, now + self.config.deliver_within, group)
        return seq

    def due(self, now: float) -> list[Outgoing]:
        """What to (re)transmit now, at most ``window`` messages in flight; each is rescheduled."""
        due = []
        for out in list(self.outbox.values())[: self.config.window]:
            if out.sent_at is None:
                out.sent_at, out.interval = now, self.config.retransmit_first
            elif now < out.next_tx:
                continue
            else:
                out.interval = min(out.interval * 2, self.config.retransmit_max)
            out.next_tx = now + out.interval
            due.append(out)
        return due

    def on_ack(self, stream: int, seq: int) -> None:
        if stream == self.stream:
            self.outbox.pop(seq, None)

    def send_again(self) -> None:
        """Everything unacknowledged goes again with the next :meth:`due`, as if new (a new path)."""
        for out in self.outbox.values():
            out.sent_at = None

    def hurry(self, now: float) -> None:
        """Everything unacknowledged is due now (a better path just came up)."""
        for out in self.outbox.values():
            out.next_tx = now

    def expired(self, now: float) -> bool:
        return any(now >= out.give_up_at for out in self.outbox.values())

    def fail_all(self, new_stream: int) -> list[Outgoing]:
        """Give up on everything queued (order must hold) and start stream ``new_stream``."""
        failed = list(self.outbox.values())
        self.outbox.clear()
        self.stream = new_stream
        self.next_seq = 1
        return failed

    def oldest_unacked(self) -> float | None:
        """When the oldest message in flight was first sent on this path (None: nothing in flight)."""
        return min((out.sent_at for out in self.outbox.values() if out.sent_at is not None), default=None)

    def timers(self, *, sending: bool) -> list[float]:
        """Deadlines, and (``sending``: a path carries the stream) retransmission times."""
        timers = [out.give_up_at for out in self.outbox.values()]
        if sending:
            timers.extend(out.next_tx for out in self.outbox.values() if out.sent_at is not None)
        return timers


@dataclass(slots=True)
class ReceiveStream:
    window: int = 32
    stream: int | None = None
    next: int = 1
    held: dict[int, tuple[str, bool]] = field(default_factory=dict)  # seq -> (text, sent to all)
    ended: deque[int] = field(default_factory=lambda: deque(maxlen=RETIRED_STREAMS))  # streams replaced

    def on_chat(self, stream: int, base: int, seq: int, text: str, group: bool) -> list[tuple[str, bool]] | None:
        """Take message ``seq`` of ``stream``: what is now shown in order, ``(text, group)`` each, and it is
        to be acknowledged; None if it is dropped unacknowledged (a replay, or too far ahead to hold)."""
        if stream in self.ended:
            return None  # a stream the sender has ended: a replay (or very late); never shown again
        if self.stream != stream:  # a new stream (or we lost our state): it resumes at the sender's base
            if self.stream is not None:
                self.ended.append(self.stream)
            self.stream, self.next, self.held = stream, base, {}
        elif base > self.next:  # the sender saw everything before base acknowledged: shown already
            self.held = {s: t for s, t in self.held.items() if s >= base}
            self.next = base
        if seq >= self.next + 4 * self.window:
            return None  # too far ahead to hold: not acknowledged, so it will come again
        if seq >= self.next:
            self.held[seq] = (text, group)
        shown = []
        while self.next in self.held:
            shown.append(self.held.pop(self.next))
            self.next += 1
        return shown
