"""The punch broker: it tells two peers when to punch toward each other, and from where.

Owns: the punching rendezvous on fresh sockets (the source address and private address each side
asked from, until both have, or for ``PUNCH_RENDEZVOUS_TTL``), the start time ``at`` and the sweep of
start-time offsets from one attempt to the next.

May not touch: the registry (the caller authenticates the requester, finds the peer and passes both
in), the outgoing queue (it returns the messages to send) and the clock (time is passed in).

Where the go's are built (:meth:`PunchBroker._goes`) is the one place a second punching strategy,
chosen per pair, would plug in: it decides what each side is told and when.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from . import wire
from .wire import Addr, PeerInfo

PUNCH_RENDEZVOUS_TTL = 10.0
"""How long a half-joined punching attempt waits for the other peer."""

PUNCH_LEAD_MARGIN = 0.02
"""Seconds added to the slower peer's round-trip time to schedule a punch (``PunchGo.at``)."""

PUNCH_SWEEP_STEP = 40e-6
PUNCH_SWEEP_STEPS = 8
"""Successive attempts move the two peers' start times apart by 0, +-40, +-80 ... +-320 microseconds.

Between nearby NATs the two first probes must cross within tens of microseconds. The peers' estimates
of the server's clock are good to about a hundred microseconds, and the error is much the same from one
attempt to the next; sweeping the difference turns a systematic miss into a hit within a few attempts.
"""


def sweep_offset(attempt: int) -> float:
    """The start-time difference (first peer minus second, by ID order) for punching attempt ``attempt``."""
    index = (attempt - 1) % (2 * PUNCH_SWEEP_STEPS + 1)
    magnitude = (index + 1) // 2
    return (magnitude if index % 2 else -magnitude) * PUNCH_SWEEP_STEP


@dataclass(frozen=True, slots=True)
class Side:
    """One peer of a punching attempt, as the server knows it now: its registered ``info``, the
    round-trip time it last reported, and where it asks from (its public and private address)."""

    info: PeerInfo
    rtt: float
    pub: Addr
    priv: Addr


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

    def request(self, me: Side, peer: PeerInfo, peer_rtt: float, attempt: int, now: float) -> Outgoing:
        """``me`` asks to punch to ``peer`` (registered, not ``me``): what to send whom."""
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
            peer = PeerInfo(about.info.id, about.pub, about.priv, about.info.key)
            goes.append((wire.PunchGo(peer=peer, attempt=attempt, at=at_of[to.info.id]), to.pub))
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
