"""The session's peers: a link to each peer it talks to, and the one way in for everything about peers.

Every datagram from a peer comes through :meth:`Peers.from_peer`, whether it came directly or relayed
(the introducer's ``relayed`` is unwrapped first): it is checked (sent to us, by a listed peer, on a socket
that peer may use), held until the sender's key is known, opened with that key, and handed to the
sender's :class:`~natchat.proto.link.PeerLink`. What the introducer says about peers (``punch_go``,
``punch_invite``, ``error`` about a peer) comes through :meth:`Peers.from_introducer`; what the list says
(who left, whose details changed, the details looked up) through :meth:`Peers.from_list` and
:meth:`Peers.updated`.

Owns: the links, by peer ID (made when a peer is first chatted with or heard from). May not: talk to the
server (lookups and syncs are the roster's), or keep state of its own beyond the links.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from . import wire
from .events import ListChanged, ListShown
from .identity import Seen
from .identity_events import SendBlocked
from .link import Direct, LinkConfig, PeerLink, Relayed, Via
from .peerlist import ListUpdate
from .ports import Ports
from .punch import Phase, candidates
from .sockets import MAIN
from .wire import PeerInfo


class Peers:
    def __init__(self, ctx: Ports, config: LinkConfig, rng: random.Random) -> None:
        self._ctx = ctx
        self._config = config
        self._rng = rng
        self._links: dict[str, PeerLink] = {}

    def __contains__(self, peer: object) -> bool:
        return peer in self._links

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._links))

    def get(self, peer: str) -> PeerLink | None:
        return self._links.get(peer)

    def __getitem__(self, peer: str) -> PeerLink:
        """``peer``'s link, made now if there is none."""
        link = self._links.get(peer)
        if link is None:
            link = self._links[peer] = PeerLink(peer, self._ctx, self._config, self._rng)
        return link

    def get_timers(self) -> list[float]:
        return [t for link in self._links.values() for t in link.get_timers()]

    def handle_timer(self, now: float) -> None:
        for link in list(self._links.values()):
            link.handle_timer(now)

    def close(self) -> None:
        """The session ends: every fresh socket goes."""
        for link in self._links.values():
            link.close()

    def from_list(self, msg: wire.AnyMessage, now: float) -> bool:
        """The server's list messages (and its refusal of a ``@show_list`` for now), through the roster;
        False: not one of them."""
        roster = self._ctx.roster
        match msg:
            case wire.ListPage():
                if (update := roster.on_page(msg)) is not None:
                    self.updated(update, now)
            case wire.ListDelta():
                self.updated(roster.on_delta(msg), now)
            case wire.Details():
                fresh, answer = roster.on_details(msg)
                checked = self._ctx.vetting.checks
                if not checked or msg.q == 0:  # (the lookup of everyone leaves identities out: pins nothing)
                    self.learned(fresh, now)
                if answer is not None:
                    if (update := roster.answered(answer, msg.ver, now)) is not None:
                        self.updated(update, now)
                        if not checked:
                            self.learned(list(answer), now)
                    self._ctx.emit(ListShown(answer))
            case wire.Error(code="too_often", msg=text):
                return roster.too_often(text, now)
            case _:
                return False
        return True

    def updated(self, update: ListUpdate, now: float) -> None:
        """The list changed: peers that left are forgotten, changed details looked up again if in use."""
        changed = ListChanged(update.joined, update.left, update.count)
        if update.snapshot and update.shown:
            self._ctx.emit(changed)
        for gone in update.left:
            self._forget(gone, now)
        if update.snapshot:
            self._ctx.roster.directory.clear()  # anything may have changed in what we missed
        for peer in list(self._links) if update.snapshot else update.changed:
            self._ctx.roster.directory.stale(peer)
            if peer in self._links:
                self._ctx.roster.need(peer, now)
        if not update.snapshot and update.shown:
            self._ctx.emit(changed)
        if update.gap:
            self._ctx.roster.sync(now)  # missed some: ask for the rest

    def learned(self, infos: list[PeerInfo], now: float) -> None:
        """Details from the server: judged (their identity), then handle what waited for them, send what
        waited for the key."""
        usable, blocked = self._ctx.vetting.judged(infos)
        for seen in blocked:
            self._block(seen, now)
        for peer, held in self._ctx.roster.directory.learn(usable):
            for msg, via in held:
                self.from_peer(msg, via, now)  # what arrived before the key
            if (link := self._links.get(peer)) is not None:
                link.pump(now)

    def _block(self, seen: Seen, now: float) -> None:
        """A peer blocked now (its identity is not the one pinned) is forgotten: nothing goes to it, what
        waited for it fails, and nothing it sends is shown."""
        peer = seen.peer_id
        self._ctx.sealer.forget(peer)
        self._ctx.roster.directory.forget(peer)
        if (link := self._links.get(peer)) is not None:
            link.fail_all(SendBlocked(peer, seen.status).message, now)

    def blocked(self, peer: str) -> Seen | None:
        """Why nothing may go to or come from ``peer`` (None: nothing blocks it)."""
        return self._ctx.vetting.blocked(peer)

    def from_introducer(self, msg: wire.AnyMessage, sock: int, now: float) -> None:
        """What the introducer (the server, or the midPeer) sends about peers."""
        roster, intro = self._ctx.roster, self._ctx.intro
        punching = self._ctx.config.path != "relay"  # --relay-only: never punch
        match msg:
            case wire.PunchGo(peer=peer, attempt=attempt, at=at, plan=plan, rtt=rtt) if peer.id in roster:
                if intro is self._ctx.home:
                    self.learned([peer], now)  # from the server: as good as a lookup
                else:
                    roster.need(peer.id, now)  # keys come from the server only, never from a midPeer
                if punching and self.blocked(peer.id) is None:
                    if plan is None:
                        intro.sync(now)  # for this pair's next attempts: the start times rest on it
                    where = candidates(peer.pub, peer.priv, intro.pub)
                    start = intro.local_time(at, now)
                    self[peer.id].go(attempt, sock, where, start, now, plan=plan, target=peer.pub, pair_rtt=rtt)
            case wire.PunchInvite(peer=peer, attempt=attempt) if peer in roster:
                roster.need(peer, now)
                if punching:
                    self[peer].invited(attempt, now)
            case wire.Relayed(src=src, data=data) if src in roster and self._ctx.config.path != "direct":
                try:
                    inner = wire.decode(bytes(data))
                except wire.WireError:
                    self._ctx.drop()
                    return
                self.from_peer(inner, Relayed(src), now)
            case wire.Error(code="unknown_peer", peer=peer):
                if peer is not None:
                    self._unknown_to_introducer(peer, "the midPeer" if intro is self._ctx.mid else "the server", now)
            case _:
                self._ctx.drop()

    def from_peer(self, msg: wire.AnyMessage, via: Via, now: float) -> None:
        """Every datagram from a peer, whether it came directly or through the relay: checked, held until
        its sender's key is known, opened, then handed to the sender's link."""
        if not isinstance(msg, wire.Probe | wire.Chat | wire.ChatAck):
            self._ctx.drop()
            return
        if isinstance(via, Direct) and (
            (via.sock != MAIN and self._ctx.pool.owner(via.sock) != msg.src) or self._ctx.config.path == "relay"
        ):
            self._ctx.drop()  # a fresh socket only ever talks to its peer; --relay-only: nothing direct
            return
        if (
            msg.dst != self._ctx.id
            or msg.src not in self._ctx.roster
            or (isinstance(via, Relayed) and msg.src != via.src)
        ):
            self._ctx.drop()
            return
        if self.blocked(msg.src) is not None:
            self._ctx.drop()  # its identity is not the one pinned: nothing from it is shown
            return
        if self._ctx.roster.directory.hold(msg.src, (msg, via), now):
            return  # until its key is looked up
        info = self._ctx.roster.directory.get(msg.src)
        assert info is not None
        plain, warning = self._ctx.sealer.open(msg, info.key, now)
        if warning is not None:
            self._ctx.emit(warning)
        if plain is not None:  # else: not from the peer it names: it opens no path and gets no answer
            self[msg.src].receive(msg, plain, via, now)

    def _forget(self, peer: str, now: float) -> None:
        """``peer`` left the list: its key, details and path go, and what waited for it fails."""
        self._ctx.sealer.forget(peer)
        self._ctx.roster.directory.forget(peer)
        self._ctx.vetting.forget(peer)
        if (link := self._links.pop(peer, None)) is not None:
            link.fail_all(f"{peer} left", now)
            link.close()

    def _unknown_to_introducer(self, peer: str, introducer: str, now: float) -> None:
        """The introducer does not know ``peer``: what waits for a punch or the relay fails."""
        link = self._links.get(peer)
        if link is not None and (link.path.phase in (Phase.ASKING, Phase.OPENING) or link.relay.relayed):
            link.fail_all(f"not registered with {introducer}", now)
