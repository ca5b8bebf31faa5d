"""The punch broker: it tells two peers when to punch toward each other, and from where.

Owns: the punching rendezvous on fresh sockets (the source address and private address each side
asked from, until both have, or for ``PUNCH_RENDEZVOUS_TTL``), the start time ``at`` and the sweep of
start-time offsets from one attempt to the next.

May not touch: the registry (the caller authenticates the requester, finds the peer and passes both
in), the outgoing queue (it returns the messages to send) and the clock (time is passed in).

The strategy per pair (:func:`~natchat.proto.birthday.choose`, from the mapping kinds the two
registered) is decided in :meth:`PunchBroker.request` before anything else: today's scheduled punch (the
rendezvous on fresh sockets included), a birthday attempt (both go's at once, to both registered
addresses, with the ``spray`` and ``fan_out`` plans), or the relay at once (``["relay"]`` to both). A
pair whose birthday attempt failed (it asks again after the attempt's life: the conntrack trap of the
``-trap`` NATs, ``docs/PROTOCOL.md``) is remembered for :data:`FAILED_MEMORY` seconds and relayed, or,
by an introducer without a relay, given today's punch on every other attempt (:meth:`PunchBroker.plan`).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from . import birthday, wire
from .birthday import MappingKind, Role, Strategy
from .wire import Addr, PeerInfo

PUNCH_RENDEZVOUS_TTL = 10.0
"""How long a half-joined punching attempt waits for the other peer."""

PUNCH_LEAD_MARGIN = 0.02
"""Seconds added to the slower peer's round-trip time to schedule a punch (``PunchGo.at``)."""

PUNCH_SWEEP_STEP = 10e-6
PUNCH_SWEEP_STEPS = 12
PUNCH_SWEEP_OUTER_STEP = 20e-6
PUNCH_SWEEP_REACH = 1e-3
"""Successive attempts move the two peers' start times apart: three attempts in four by 0, +-10, +-20
... +-120 microseconds (the inner sweep), every fourth by +-140, +-160 ... +-1000 (the outer one).

Between nearby trap NATs the two first probes must leave within microseconds of each other, and what
counts is their way through both NATs, not only the moment of sending. Traced in Mininet (both peers'
sends against one clock, 30 pairs, ``docs/PROTOCOL.md``): after a sync (``Registration.sync``) the
peers' clock estimates differed by -90 to +165 us, much the same from attempt to attempt, yet at about
the same difference one pair lost 6 attempts in 7 where others won at once. So the inner sweep moves in
steps of 10 us around the estimate; the outer one reaches 1 ms, where an estimate from registration
alone was off (by up to 1 ms); a sweep that stopped at 320 us left such a pair to fail for good.
"""


def sweep_offset(attempt: int) -> float:
    """The start-time difference (first peer minus second, by ID order) for punching attempt ``attempt``."""
    if attempt % 4 == 0:
        inner = PUNCH_SWEEP_STEPS * PUNCH_SWEEP_STEP
        outer = round((PUNCH_SWEEP_REACH - inner) / PUNCH_SWEEP_OUTER_STEP)  # magnitudes beyond the inner
        index = (attempt // 4 - 1) % (2 * outer)
        magnitude = inner + (index // 2 + 1) * PUNCH_SWEEP_OUTER_STEP
        return -magnitude if index % 2 else magnitude
    index = (attempt - attempt // 4 - 1) % (2 * PUNCH_SWEEP_STEPS + 1)
    magnitude = (index + 1) // 2
    return (magnitude if index % 2 else -magnitude) * PUNCH_SWEEP_STEP


FAILED_MEMORY = 120.0
"""Seconds a pair whose birthday attempt failed is relayed at once instead of sprayed again."""
FAILED_WITHIN = 10.0
"""A pair that asks again within this many seconds after its birthday attempt's end had it fail (a pair
that found its path asks again only when that path dies, later)."""
BIRTHDAY_PAIRS = 4096
"""At most this many pairs' birthday attempts are remembered (the oldest is forgotten first)."""

PARAMS = birthday.Params()
"""The counts and pacing of every birthday attempt this broker schedules."""


def _kind(mapping: str | None) -> MappingKind:
    try:
        return MappingKind(mapping) if mapping is not None else MappingKind.UNKNOWN
    except ValueError:
        return MappingKind.UNKNOWN


@dataclass(frozen=True, slots=True)
class Side:
    """One peer of a punching attempt, as the server knows it now: its registered ``info``, the
    round-trip time it last reported, where it asks from (its public and private address), its mapping
    kind as registered and whether it takes part in birthday attempts."""

    info: PeerInfo
    rtt: float
    pub: Addr
    priv: Addr
    mapping: str | None = None
    spray: bool = True


@dataclass(slots=True)
class _Birthday:
    """The last birthday attempt of a pair: when it ends, and until when the pair is relayed instead."""

    ends: float
    failed_until: float = float("-inf")


@dataclass(slots=True)
class _Rendezvous:
    """A punching attempt on fresh sockets: the source address each side asked from."""

    addrs: dict[str, Addr] = field(default_factory=dict)
    privs: dict[str, Addr] = field(default_factory=dict)
    expires: float = 0.0


Outgoing = list[tuple[wire.Message, Addr]]


class PunchBroker:
    def __init__(self) -> None:
        self._rendezvous: OrderedDict[tuple[str, str, int], _Rendezvous] = OrderedDict()
        self._birthdays: OrderedDict[tuple[str, str], _Birthday] = OrderedDict()
        self.birthday_failed = 0
        """Birthday attempts that ended without a path (the pair asked again)."""

    def plan(self, me: Side, them: Side, now: float, *, relay: bool, attempt: int) -> birthday.Plan:
        """The strategy for the pair, from their registered kinds (and a failed birthday attempt).

        A pair whose birthday attempt failed is relayed for :data:`FAILED_MEMORY` seconds if this
        introducer relays; if not, its odd attempts are today's punch and its even ones birthday attempts
        again. A "hard" side may be a port-preserving NAT (Linux ``MASQUERADE`` without
        ``--random-fully``) that gave the server's second port another public port because the first was
        taken by an older conntrack entry: seen in Mininet, a cone client registered ``dependent`` and
        its pair, sprayed again and again between trap NATs, never met (CI, 2026-12-02)."""
        same_host = me.info.pub.host == them.info.pub.host
        if me.info.pub == me.info.priv or them.info.pub == them.info.priv:
            return birthday.Plan(Strategy.SCHEDULED)  # a side with no NAT: today's punch reaches it at once
        plan = birthday.choose(
            _kind(me.mapping),
            _kind(them.mapping),
            a_willing=me.spray,
            b_willing=them.spray,
            relay=relay,
            same_host=same_host,
        )
        if plan.strategy is not Strategy.BIRTHDAY:
            return plan
        key = (min(me.info.id, them.info.id), max(me.info.id, them.info.id))
        last = self._birthdays.get(key)
        if last is not None and last.ends <= now < last.ends + FAILED_WITHIN and last.failed_until < now:
            last.failed_until = now + FAILED_MEMORY  # asked again after the attempt's end: it failed
            self.birthday_failed += 1
        if last is not None and now < last.failed_until:
            if relay:
                return birthday.Plan(Strategy.RELAY)
            if attempt % 2:
                return birthday.Plan(Strategy.SCHEDULED)
        return plan

    def request(self, me: Side, peer: Side, attempt: int, now: float, *, relay: bool = False) -> Outgoing:
        """``me`` asks to punch to ``peer`` (registered, not ``me``; ``peer``'s addresses are its
        registered ones): what to send whom. ``relay``: this introducer relays."""
        plan = self.plan(me, peer, now, relay=relay, attempt=attempt)
        if plan.strategy is Strategy.RELAY:
            return self._relay(me, peer, attempt, now)
        if plan.strategy is Strategy.BIRTHDAY:
            assert plan.hard is not None
            return self._birthday(me, peer, plan, attempt, now)
        return self._scheduled(me, peer.info, peer.rtt, attempt, now)

    def _scheduled(self, me: Side, peer: PeerInfo, peer_rtt: float, attempt: int, now: float) -> Outgoing:
        """Today's punch."""
        if me.pub == me.info.pub:
            # From the registered socket: both sides punch from the sockets they registered with, which
            # the server already knows. Tell both now, in the same breath, so their first datagrams cross.
            return self._goes(me, Side(peer, peer_rtt, peer.pub, peer.priv), attempt, now)
        # Later attempts use fresh sockets on both sides; wait until both have spoken from theirs.
        low, high = sorted((me.info.id, peer.id))
        key = (low, high, attempt)
        rv = self._rendezvous.get(key)
        if rv is None:
            rv = self._rendezvous[key] = _Rendezvous(expires=now + PUNCH_RENDEZVOUS_TTL)
        rv.addrs[me.info.id] = me.pub
        rv.privs[me.info.id] = me.priv
        if len(rv.addrs) < 2:  # (again, on every retransmission, in case the invitation was lost)
            return [(wire.PunchInvite(peer=me.info.id, attempt=attempt), peer.pub)]
        del self._rendezvous[key]
        other = Side(peer, peer_rtt, rv.addrs[peer.id], rv.privs[peer.id])
        return self._goes(me, other, attempt, now)

    def _goes(self, a: Side, b: Side, attempt: int, now: float) -> Outgoing:
        """Tell each side the other's addresses and the moment to start (``a`` asked last).

        Both first probes must cross between the NATs: name one moment for both, late enough for
        both go's to arrive (a round trip of the slower peer, plus a margin) and for this server to
        be idle again, so that neither peer waits for a CPU at that moment; then move the two apart
        by this attempt's sweep offset."""
        at = now + max(a.rtt, b.rtt) + PUNCH_LEAD_MARGIN
        half = sweep_offset(attempt) / 2
        at_of = {min(a.info.id, b.info.id): at + half, max(a.info.id, b.info.id): at - half}
        goes: Outgoing = []
        for to, about in ((a, b), (b, a)):
            i = about.info
            peer = PeerInfo(i.id, about.pub, about.priv, i.key, i.signed)  # (identity included)
            go = wire.PunchGo(peer=peer, attempt=attempt, at=at_of[to.info.id], rtt=max(a.rtt, b.rtt))
            goes.append((go, to.pub))
        return goes

    def _relay(self, me: Side, peer: Side, attempt: int, now: float) -> Outgoing:
        """``["relay"]`` to both registered addresses: no punch."""
        goes: Outgoing = []
        for to, about in ((me, peer), (peer, me)):
            go = wire.PunchGo(peer=about.info, attempt=attempt, at=now, plan=wire.RelayPlan())
            goes.append((go, to.info.pub))
        return goes

    def _birthday(self, me: Side, peer: Side, plan: birthday.Plan, attempt: int, now: float) -> Outgoing:
        """Both go's at once, to both registered addresses: the hard side fans out from ``at``, the easy
        side sprays from :meth:`~natchat.proto.birthday.Params.spray_at`."""
        p = PARAMS
        at = now + max(me.rtt, peer.rtt) + PUNCH_LEAD_MARGIN
        life = p.life
        key = (min(me.info.id, peer.info.id), max(me.info.id, peer.info.id))
        record = self._birthdays.pop(key, None) or _Birthday(ends=0.0)
        record.ends = at + life - 0.1  # (a client asks again at its end: a little early is safe)
        self._birthdays[key] = record
        while len(self._birthdays) > BIRTHDAY_PAIRS:
            self._birthdays.popitem(last=False)
        goes: Outgoing = []
        for side, (to, about) in zip((birthday.Side.A, birthday.Side.B), ((me, peer), (peer, me)), strict=True):
            go_plan: wire.Plan
            if plan.role(side) is Role.FAN_OUT:
                go_plan = wire.FanOutPlan(sockets=p.sockets, rate=p.open_rate, resend=p.resend, life=life)
                start = at
            else:
                go_plan = wire.SprayPlan(probes=p.probes, rate=p.spray_rate, life=life - (p.spray_at(at) - at))
                start = p.spray_at(at)
            go = wire.PunchGo(peer=about.info, attempt=attempt, at=start, plan=go_plan)
            goes.append((go, to.info.pub))
        return goes

    def get_timer(self) -> float | None:
        """When the oldest half-joined rendezvous expires."""
        return next(iter(self._rendezvous.values())).expires if self._rendezvous else None

    def handle_timer(self, now: float) -> None:
        while self._rendezvous:
            key, rv = next(iter(self._rendezvous.items()))
            if rv.expires > now:
                break
            del self._rendezvous[key]

    def expiries(self) -> list[float]:
        """When each waiting rendezvous expires, oldest first (what must stay bounded)."""
        return [rv.expires for rv in self._rendezvous.values()]
