"""Everything between this session and one peer: the direct path, the relay policy, the two streams and
the ``@path`` ping, tied together.

The units do not know each other; the link asks each what it needs and tells the others what follows:
an attempt that ended is followed by the next one while messages wait (or, when relayed, later and less
often); messages with no path after ``relay_after`` go through the relay; a path that comes up takes the
unacknowledged messages at once; one that dies is punched again. Every datagram from the peer, whether it
came directly or through the relay, arrives here opened (:meth:`PeerLink.receive`).

Owns: the per-peer units and how they interact. May not: look up keys or details (it asks the session
through :class:`LinkContext`), build anything but peer-to-peer datagrams, or touch other peers' links.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol, TypeVar

from . import birthday, wire
from .events import ChatReceived, ClientEvent, DeliveryFailed, PathChanged, PathReport, PathUp
from .hardpunch import BirthdayAttempt
from .punch import DirectPath, Phase, Step
from .relaypolicy import RelayConfig, RelayPolicy
from .sockets import MAIN, SocketPool
from .stream import ReceiveStream, SendStream, StreamConfig
from .wire import Addr, PeerInfo

_S = TypeVar("_S", wire.Probe, wire.Chat, wire.ChatAck)


@dataclass(frozen=True, slots=True)
class Direct:
    """A datagram that arrived on socket ``sock`` from ``addr``."""

    sock: int
    addr: Addr


@dataclass(frozen=True, slots=True)
class Relayed:
    """A datagram the introducer relayed from ``src`` (it checked the sender's token)."""

    src: str


Via = Direct | Relayed
Held = tuple[wire.Sealed, Via]
"""A datagram from a peer kept until its key is looked up, and the way it came."""


@dataclass(frozen=True, slots=True)
class LinkConfig:
    stream: StreamConfig
    relay: RelayConfig
    probe_interval: float = 0.1
    path_dead_after: float = 2.0
    ping_timeout: float = 2.0
    deliver_within: float = 10.0
    spray: bool = True
    """Take part in birthday attempts (false with ``--no-spray``)."""


class LinkContext(Protocol):
    """The session, as a link sees it."""

    id: str
    pool: SocketPool
    spray_budget: birthday.WindowBudget
    fan_out_budget: birthday.WindowBudget

    @property
    def relay_server(self) -> Addr:
        """Where relayed datagrams go (the introducer)."""

    @property
    def has_midpeer(self) -> bool: ...

    @property
    def relay_ready(self) -> bool: ...

    @property
    def intro_token(self) -> str | None: ...

    @property
    def attempt_time(self) -> float: ...

    def attempt_time_for(self, pair_rtt: float) -> float: ...

    def details(self, peer: str) -> PeerInfo | None: ...
    def need(self, peer: str, now: float) -> None: ...
    def seal(self, msg: _S, plaintext: bytes = b"") -> _S | None: ...
    def ask(self, sock: int, peer: str, attempt: int) -> None: ...
    def send(self, sock: int, msg: wire.Message, addr: Addr) -> None: ...
    def send_raw(self, sock: int, data: bytes, addr: Addr, not_before: float | None) -> None: ...
    def send_relayed(self, peer: str, msg: wire.Message) -> None: ...
    def emit(self, event: ClientEvent) -> None: ...
    def drop(self) -> None: ...


class PeerLink:
    def __init__(self, peer: str, ctx: LinkContext, config: LinkConfig, rng: random.Random) -> None:
        self.peer = peer
        self._ctx = ctx
        self.config = config
        self._rng = rng
        self.tx = SendStream(rng.randrange(1, 2**53), config.stream)
        self.rx = ReceiveStream(config.stream.window)
        self.relay = RelayPolicy(config.relay)
        self.path = DirectPath(
            peer, ctx.pool, self, probe_interval=config.probe_interval, dead_after=config.path_dead_after
        )
        self.ping = 0  # an @path measurement in flight (its nonce), and when it left
        self.ping_sent = 0.0
        self.birthday: BirthdayAttempt | None = None
        """The birthday attempt under way (a go with a spray or fan-out plan), if any."""
        self._pinned: tuple[int, float] | None = None  # (socket, until): a birthday win the path keeps

    # --- the path port (what the direct path asks for) ---------------------------------------------

    def ask(self, sock: int, attempt: int) -> None:
        self._ctx.ask(sock, self.peer, attempt)

    def probe(self, sock: int, attempt: int, candidates: list[Addr], at: float, first: bool) -> None:
        sealed = self._ctx.seal(wire.Probe(src=self._ctx.id, dst=self.peer, attempt=attempt, n=b"", tag=b""))
        if sealed is None:
            self._ctx.need(self.peer, at)  # (only after a midPeer's go: keys come from the server)
            return
        probe = wire.encode(sealed)
        for addr in candidates:
            self._ctx.send_raw(sock, probe, addr, at if first else None)

    # --- what the session asks ---------------------------------------------------------------------

    def kind(self) -> str:
        """How messages go now: ``lan``, ``direct``, ``relay`` or ``none``."""
        if self.path.up:
            info = self._ctx.details(self.peer)
            return "lan" if info is not None and self.path.addr == info.priv != info.pub else "direct"
        return "relay" if self.relay.relayed else "none"

    def get_timers(self) -> list[float]:
        path, relay = self.path, self.relay
        oldest = self.tx.oldest_unacked()
        timers = self.tx.timers(sending=path.up or relay.relayed)
        timers += path.timers(oldest)
        timers += relay.timers(idle=path.phase is Phase.IDLE)
        if self.birthday is not None and (bday := self.birthday.get_timer()) is not None:
            timers.append(bday)
        if (fallback := self._fallback_at()) is not None:
            timers.append(fallback)
        if self.ping:
            timers.append(self.ping_sent + self.config.ping_timeout)
        return timers

    # --- what the session tells it -----------------------------------------------------------------

    def chat(self, text: str, group: bool, now: float) -> None:
        self.tx.queue(text, group, now)
        self.relay.last_used = now
        if self.path.up or self.relay.relayed:
            self.pump(now)
        elif self.config.relay.mode == "relay":
            if self._ctx.relay_ready:
                self._go_relay(now)
        elif self.path.phase is Phase.IDLE:
            self._start(now, fresh=False)

    def go(
        self,
        attempt: int,
        sock: int,
        candidates: list[Addr],
        start: float,
        now: float,
        *,
        plan: wire.Plan | None = None,
        target: Addr | None = None,
        pair_rtt: float = 0.0,
    ) -> None:
        """The introducer's ``punch_go``: today's punch (``plan`` None), this side's part of a birthday
        attempt toward ``target`` (the peer's registered public address), or the relay at once.
        ``pair_rtt``: the go's ``rtt``, the slower peer's round trip to the server."""
        if plan is None:
            self.path.go(attempt, sock, candidates, start, now, self._ctx.attempt_time_for(pair_rtt))
            return
        if self.path.up or attempt < self.path.attempt or (attempt == self.path.attempt and self.path.quiet):
            return  # the path works, or a stale or duplicate go
        if isinstance(plan, wire.RelayPlan):
            self._stop_birthday()
            self.path.go(attempt, sock, [], start, now, self._ctx.attempt_time, life=self._ctx.attempt_time)
            relay_now = self.config.relay.mode != "direct" and self._ctx.relay_ready and not self.relay.relayed
            if self.tx.pending and relay_now:
                self._go_relay(now)
            return
        self._stop_birthday()
        life = min(plan.life, birthday.MAX_LIFE)
        self.path.go(attempt, sock, [], start, now, self._ctx.attempt_time, life=life)
        if not self.config.spray or target is None:
            return  # --no-spray: nothing is sprayed or fanned out, whatever the introducer asks
        sealed = self._ctx.seal(wire.Probe(src=self._ctx.id, dst=self.peer, attempt=attempt, n=b"", tag=b""))
        if sealed is None:
            self._ctx.need(self.peer, now)
            return
        self.birthday = BirthdayAttempt(
            self.peer,
            attempt,
            plan,
            sock=sock,
            target=target,
            start=start,
            probe=wire.encode(sealed),
            pool=self._ctx.pool,
            send=lambda s, data, addr: self._ctx.send_raw(s, data, addr, None),
            spray_budget=self._ctx.spray_budget,
            fan_out_budget=self._ctx.fan_out_budget,
            rng=self._rng,
        )
        self.birthday.handle_timer(now)

    def _stop_birthday(self) -> None:
        if self.birthday is not None:
            self.birthday.stop()
            self.birthday = None

    def invited(self, attempt: int, now: float) -> None:
        self.path.invited(attempt, now, self._ctx.attempt_time)

    def socket_opened(self, sock: int, now: float) -> None:
        self.path.opened(sock, now, self._ctx.attempt_time)

    def measure(self, now: float) -> None:
        """``@path``: a ping over the current path (the session reports "none" when there is none)."""
        self.ping = self._rng.randrange(1, 2**53)
        self.ping_sent = now
        probe = wire.Probe(
            src=self._ctx.id, dst=self.peer, attempt=max(1, self.path.attempt), ping=self.ping, n=b"", tag=b""
        )
        self._to_peer(self._ctx.seal(probe))

    def receive(self, msg: wire.Sealed, plain: bytes, via: Via, now: float) -> None:
        """A datagram from the peer, opened (``plain``: a chat's text), directly or through the relay."""
        if isinstance(via, Direct):
            if isinstance(msg, wire.Probe):
                self.path.attempt = max(self.path.attempt, msg.attempt)
            self._heard(via, now)
        elif isinstance(msg, wire.Chat) and not self.relay.relayed and not self.path.up:
            self._go_relay(now)  # the peer found no direct path: answer the same way
        match msg:
            case wire.Probe():
                self._on_probe(msg, via, now)
            case wire.Chat():
                self._on_chat(msg, plain, via, now)
            case wire.ChatAck(stream=stream, seq=seq):
                self.tx.on_ack(stream, seq)
        self.pump(now)

    def handle_timer(self, now: float) -> None:
        if self.tx.expired(now):
            self.fail_all(self._failure_reason(), now)
        if self.ping and now >= self.ping_sent + self.config.ping_timeout:
            self._report(None)
        if (fallback := self._fallback_at()) is not None and now >= fallback:
            self._go_relay(now)
        if self.birthday is not None:
            self.birthday.handle_timer(now)
            if self.birthday.done:
                self.birthday = None
        phase = self.path.phase
        step = self.path.handle_timer(now, self.tx.oldest_unacked())
        if step is Step.ENDED:
            if not self.relay.attempt_failed(now):  # relayed: the relay carries on; direct again later
                if self.tx.pending:
                    self._start(now, fresh=True)
                else:
                    self.relay.stop_looking()
        elif step is Step.DEAD:  # the path stopped answering (NAT mapping gone?): punch again
            self.relay.stop_looking()
            self.tx.send_again()
            self._start(now, fresh=False)
            return
        elif phase is Phase.IDLE and self.relay.direct_due(now):
            self._start(now, fresh=True)  # in the background: the relay goes on
        self.pump(now)

    def fail_all(self, reason: str, now: float) -> None:
        """Give up on everything queued for the peer (order must hold) and start a new stream."""
        for out in self.tx.fail_all(self._rng.randrange(1, 2**53)):
            self._ctx.emit(DeliveryFailed(self.peer, out.text, reason))
        if not self.path.up:
            self._stop_birthday()
            self.path.give_up()
            self.relay.stop_looking()

    def pump(self, now: float) -> None:
        """(Re)transmit what is due on the current path."""
        if not self.path.up and not (self.relay.relayed and self._ctx.intro_token is not None):
            return
        if self._ctx.details(self.peer) is None:
            self._ctx.need(self.peer, now)
            return  # its key first (looked up: the session pumps again)
        base = self.tx.base
        for out in self.tx.due(now):
            msg = wire.Chat(
                src=self._ctx.id,
                dst=self.peer,
                stream=self.tx.stream,
                base=base,
                seq=out.seq,
                group=out.group,
                n=b"",
                box=b"",
            )
            self._to_peer(self._ctx.seal(msg, out.text.encode()))

    def close(self) -> None:
        self._stop_birthday()
        self.path.close()

    # --- rules --------------------------------------------------------------------------------------

    def _start(self, now: float, *, fresh: bool) -> None:
        self.relay.looking(now)
        self.path.start(now, self._ctx.attempt_time, fresh=fresh)

    def _fallback_at(self) -> float | None:
        return self.relay.fallback_at(up=self.path.up, pending=self.tx.pending, ready=self._ctx.relay_ready)

    def _failure_reason(self) -> str:
        within = f"within {self.config.deliver_within:g} s"
        if self.path.up or self.relay.relayed:
            return f"no answer {within}"
        mode = self.config.relay.mode
        if mode == "relay":
            offers = "midPeer" if self._ctx.has_midpeer else "server"
            return f"no relay (--relay-only, and the {offers} offers none) {within}"
        if mode == "direct":
            return f"no direct path {within} (--direct-only: not relayed)"
        return f"no direct path {within}"

    def _go_relay(self, now: float) -> None:
        """No direct path: send the messages through the relay from now on."""
        self.relay.relay(now, idle=self.path.phase is Phase.IDLE)
        self.tx.send_again()  # (re)send each at once, through the relay
        self._ctx.emit(PathChanged(self.peer, "relay", self._ctx.relay_server))
        self.pump(now)

    def _heard(self, via: Direct, now: float) -> None:
        pinned = self._pinned is not None and now < self._pinned[1] and self.path.up
        if pinned and (via.sock, via.addr) != (self.path.sock, self.path.addr):
            return  # a late probe of the won birthday attempt, from a socket the peer has closed
        probes = sockets = 0
        bday = self.birthday
        if bday is not None and (via.sock == MAIN or bday.owns(via.sock)):
            self.birthday = None
            bday.won(via.sock)  # the spray stops; every other fan-out socket closes at once
            probes, sockets = bday.probes_sent, bday.sockets_opened
            self._pinned = (via.sock, now + self.config.path_dead_after)
        if not self.path.heard(via.sock, via.addr, now):
            return
        self._ctx.emit(PathUp(self.peer, via.addr, self.path.attempt, probes, sockets))
        if self.relay.direct():  # off the relay: what it has not seen acknowledged goes direct at once
            self.tx.hurry(now)
            self._ctx.emit(PathChanged(self.peer, self.kind(), via.addr))

    def _reply(self, via: Via, answer: wire.Message | None) -> None:
        if answer is None:
            return
        if isinstance(via, Direct):
            self._ctx.send(via.sock, answer, via.addr)
        else:
            self._ctx.send_relayed(self.peer, answer)

    def _to_peer(self, msg: wire.Message | None) -> None:
        """Send ``msg`` over the current path: direct if up, else through the relay."""
        if msg is None:
            return  # could not be sealed
        if self.path.up:
            assert self.path.addr is not None
            self._ctx.send(self.path.sock, msg, self.path.addr)
        else:
            self._ctx.send_relayed(self.peer, msg)

    def _on_probe(self, msg: wire.Probe, via: Via, now: float) -> None:
        if not msg.ack:
            answer = wire.Probe(
                src=self._ctx.id, dst=self.peer, attempt=msg.attempt, ack=True, ping=msg.ping, n=b"", tag=b""
            )
            self._reply(via, self._ctx.seal(answer))
        elif msg.ping and msg.ping == self.ping:
            self._report(now - self.ping_sent)

    def _on_chat(self, msg: wire.Chat, plain: bytes, via: Via, now: float) -> None:
        """Show messages once each and in order; acknowledge only what was shown or is held for showing."""
        try:
            text = plain.decode()
        except UnicodeDecodeError:
            text = ""
        if not 0 < len(text) <= wire.MAX_TEXT_CHARS:
            self._ctx.drop()  # sealed by the peer, but no text: not acknowledged either
            return
        self.relay.last_used = now
        shown = self.rx.on_chat(msg.stream, msg.base, msg.seq, text, msg.group)
        if shown is None:
            self._ctx.drop()  # a replay of an ended stream, or too far ahead to hold: not acknowledged
            return
        ack = wire.ChatAck(src=self._ctx.id, dst=self.peer, stream=msg.stream, seq=msg.seq, n=b"", tag=b"")
        self._reply(via, self._ctx.seal(ack))
        for text_shown, group in shown:
            self._ctx.emit(ChatReceived(self.peer, text_shown, group))

    def _report(self, rtt: float | None) -> None:
        kind = self.kind()
        addr = self._ctx.relay_server if kind == "relay" else self.path.addr
        self._ctx.emit(PathReport(self.peer, kind, addr, rtt))
        self.ping = 0
