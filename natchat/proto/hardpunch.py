"""One birthday attempt toward one peer, as its link runs it: the spray (the easy side) or the fan-out
(the hard side) of a ``punch_go`` with a plan (``docs/PROTOCOL.md``, *Birthday punching*).

Owns: the :class:`~natchat.proto.birthday.Spray` or :class:`~natchat.proto.birthday.FanOut`, the fan-out's
sockets (fresh ones from the :class:`~natchat.proto.sockets.SocketPool`, owned by the peer: opened with
``OpenSocket`` and their first probe sent in the same action batch), the one sealed probe every datagram
of the attempt carries, and the attempt's end. The budgets are the session's (one spray budget and one
fan-out budget for all peers, :func:`~natchat.proto.birthday.spray_budget`), passed in. May not: touch
the direct path (the link tells the path the attempt's phase and deadline; the path sends nothing for
it), decide about the relay, or seal (it is given the sealed probe).

The first datagram of the peer that arrives wins (:meth:`BirthdayAttempt.won`): the spray stops, every
fan-out socket but the winner is closed at once (the winner becomes the path's socket).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from . import birthday, wire
from .sockets import SocketPool
from .wire import Addr

SendRaw = Callable[[int, bytes, Addr], None]


class BirthdayAttempt:
    def __init__(
        self,
        peer: str,
        attempt: int,
        plan: wire.SprayPlan | wire.FanOutPlan,
        *,
        sock: int,
        target: Addr,
        start: float,
        probe: bytes,
        pool: SocketPool,
        send: SendRaw,
        spray_budget: birthday.WindowBudget,
        fan_out_budget: birthday.WindowBudget,
        rng: random.Random,
    ) -> None:
        """``sock``: the socket the go arrived on (the spray's); ``target``: the peer's registered public
        address (the fan-out probes it; the spray probes ports of its host)."""
        self.peer = peer
        self.attempt = attempt
        self.target = target
        self._sock = sock
        self._probe = probe
        self._pool = pool
        self._send = send
        life = min(plan.life, birthday.MAX_LIFE)
        self.ends = start + life
        self.spray: birthday.Spray | None = None
        self.fan_out: birthday.FanOut | None = None
        self._socks: dict[int, int] = {}  # fan-out number -> pool socket
        self._numbers: dict[int, int] = {}  # pool socket -> fan-out number
        if isinstance(plan, wire.SprayPlan):
            self.spray = birthday.Spray(
                target.host, rng, start=start, peer=peer, budget=spray_budget, probes=plan.probes, rate=plan.rate
            )
        else:
            self.fan_out = birthday.FanOut(
                start=start,
                peer=peer,
                budget=fan_out_budget,
                count=plan.sockets,
                rate=plan.rate,
                resend=plan.resend,
                life=life,
            )
        self.sockets_opened = 0
        self.done = False

    @property
    def probes_sent(self) -> int:
        unit = self.spray or self.fan_out
        return unit.sent if unit is not None else 0

    def get_timer(self) -> float | None:
        if self.done:
            return None
        unit_timer = self.spray.get_timer() if self.spray is not None else None
        if self.fan_out is not None:
            unit_timer = self.fan_out.get_timer()
        return self.ends if unit_timer is None else min(unit_timer, self.ends)

    def handle_timer(self, now: float) -> None:
        """Send what is due; at the attempt's end, stop and close every socket."""
        if self.done:
            return
        if now >= self.ends:
            self.stop()
            return
        if self.spray is not None:
            for port in self.spray.due(now):
                self._send(self._sock, self._probe, Addr(self.target.host, port))
        if self.fan_out is not None:
            step = self.fan_out.due(now)
            for number in step.open:
                sock = self._pool.open_for(self.peer)
                self._socks[number], self._numbers[sock] = sock, number
                self.sockets_opened += 1
                self._send(sock, self._probe, self.target)
            for number in step.send:
                self._send(self._socks[number], self._probe, self.target)
            self._close(step.close)

    def owns(self, sock: int) -> bool:
        """``sock`` is one of this attempt's open fan-out sockets."""
        return sock in self._numbers

    def won(self, sock: int) -> None:
        """The peer was heard on ``sock``: stop; every fan-out socket but ``sock`` closes at once (``sock``
        is the path's now, not this attempt's)."""
        if self.done:
            return
        self.done = True
        if self.spray is not None:
            self.spray.won()
        if self.fan_out is not None:
            number = self._numbers.pop(sock, None)
            if number is not None:
                self._socks.pop(number, None)
                self._close(self.fan_out.won(number))
            else:
                self._close(self.fan_out.stop())

    def stop(self) -> None:
        """Call the attempt off (its end, the peer left, the session ends): every socket closes."""
        self.done = True
        if self.spray is not None:
            self.spray.stop()
        if self.fan_out is not None:
            self._close(self.fan_out.stop())

    def _close(self, numbers: tuple[int, ...]) -> None:
        for number in numbers:
            sock = self._socks.pop(number, None)
            if sock is not None:
                del self._numbers[sock]
                self._pool.release(sock)
