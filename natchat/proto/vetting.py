"""The session's vetting of its peers' identities: which details it may use, whom it blocks, and the
answers to ``@whois``, ``@trust`` and the marks of ``@show_list``.

Every peer's details the session is about to use (a specific lookup's answer, a ``punch_go``) go through
:meth:`Vetting.judged` first: signed, and new or as pinned (``identity.PeerIdentities.observe``), or
refused and shown once. A session without an identity vets nothing (every method lets all through).

Owns: the session's :class:`~natchat.proto.identity.PeerIdentities` (its table and pin book), its own
identity key, and which ``@whois`` questions wait for a lookup. May not: send, look peers up, or touch
keys and links: it says which peers to block and which to look up, and the session's units act
(``peers.py`` forgets a blocked peer's key and fails what waited for it; the roster looks peers up).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from .events import ClientEvent, ListShown, Notice
from .identity import PeerIdentities, Seen, Status
from .identity_events import refused_event, trust, whois
from .wire import PeerInfo

WhoisAnswer = Literal["shown", "look_up", "unknown_peer"]
"""What ``@whois`` needs next: nothing (the report or a notice is out), a lookup of the peer's details
(answered once they are judged), or the peer is not listed."""


class Vetting:
    def __init__(
        self,
        client_id: str,
        ids: PeerIdentities | None,
        own_identity: bytes | None,
        emit: Callable[[ClientEvent], None],
    ) -> None:
        """``ids``: what the session makes of its peers' identities (None: it checks none);
        ``own_identity``: this session's identity key (``@whois``'s safety number)."""
        self._id = client_id
        self.ids = ids
        self._own = own_identity
        self._emit = emit
        self._whois_wanted: set[str] = set()
        """Peers ``@whois`` asked about before their details were known: answered when they are."""

    @property
    def checks(self) -> bool:
        """The session checks its peers' identities (it has one of its own)."""
        return self.ids is not None

    def judged(self, infos: list[PeerInfo]) -> tuple[list[PeerInfo], list[Seen]]:
        """The details the session may use, and the peers to block now (details refused: changed,
        replayed or badly signed). Each refusal is shown once; waiting ``@whois`` questions are answered."""
        ids = self.ids
        if ids is None:
            return infos, []
        usable, blocked = [], []
        for info in infos:
            # (an issued of 2**63 or more, which the field can hold, never verifies: identity.statement)
            seen, warn = ids.observe(info.id, info.key, info.ident or b"", info.sig or b"", info.issued or 0)
            if warn:
                self._emit(refused_event(seen, ids.server))
            if seen.usable:
                usable.append(info)
            elif ids.blocked(info.id) is not None:
                blocked.append(seen)
            if info.id in self._whois_wanted and self._own is not None:
                self._whois_wanted.discard(info.id)
                self._emit(whois(ids, info.id, self._id, self._own))
        return usable, blocked

    def blocked(self, peer: str) -> Seen | None:
        """Why nothing may go to or come from ``peer`` (None: nothing blocks it)."""
        return None if self.ids is None else self.ids.blocked(peer)

    def forget(self, peer: str) -> None:
        """``peer`` left the list: what this run saw of it goes (its pin stays)."""
        if self.ids is not None:
            self.ids.forget(peer)
        self._whois_wanted.discard(peer)

    def whois(self, peer: str, *, listed: bool) -> WhoisAnswer:
        """``@whois peer`` (``listed``: the peer is in the list): a
        :class:`~natchat.proto.identity_events.WhoisReport` now, or once its details are looked up."""
        ids, own = self.ids, self._own
        if ids is None or own is None:
            self._emit(Notice("no_identity", "this session has no identity: it checks no peer's"))
            return "shown"
        if ids.seen(peer) is None:
            if not listed:
                return "unknown_peer"
            if peer != self._id:
                self._whois_wanted.add(peer)
                return "look_up"
        self._emit(whois(ids, peer, self._id, own))
        return "shown"

    def trust(self, peer: str) -> bool:
        """``@trust peer``: pin the identity it is blocked for; a ``Trusted`` or a ``NothingToTrust``
        follows. True: trusted (look its details up again: messages flow)."""
        if self.ids is None:
            self._emit(Notice("no_identity", "this session has no identity: it pins nothing"))
            return False
        event, trusted = trust(self.ids, peer)
        self._emit(event)
        return trusted is not None

    def marked(self, event: ClientEvent) -> ClientEvent:
        """``event``, with an ``@show_list`` answer marking the peers whose identity changed."""
        if not isinstance(event, ListShown) or (ids := self.ids) is None:
            return event
        changed = frozenset(p.id for p in event.peers if (seen := ids.seen(p.id)) and seen.status is Status.CHANGED)
        return ListShown(event.peers, changed) if changed else event
