"""The events of persistent identities (``identity.py``) a chat session shows: proposed for ``events.py``.

Each has its human line (:meth:`line`, or :meth:`lines`) and its ``--json`` object (:meth:`as_dict`),
like the events of ``events.py``; ``stream`` says where the human line goes (``"err"``: standard error,
as warnings and errors do; ``"out"``: the answer to a command). Fingerprints are computed when an
event is made (``identity.fingerprint`` costs some milliseconds: iterated SHA-512), so make these only
when one is shown.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import ClassVar

from .identity import PeerIdentities, Seen, Status, Verdict, fingerprint, safety_number

Json = dict[str, object]


@dataclass(frozen=True, slots=True)
class IdentityChanged:
    """``peer`` came with another identity than the one pinned for it on ``server``: blocked until
    ``@trust``. Shown once per new identity seen (``PeerIdentities.observe``'s ``warn``)."""

    stream: ClassVar[str] = "err"
    peer: str
    server: str
    pinned: str
    """The pinned identity's fingerprint."""
    seen: str
    """The fingerprint of the identity it came with now."""

    @property
    def message(self) -> str:
        return (
            f"{self.peer}'s identity on {self.server} changed: pinned {self.pinned}, now {self.seen}; "
            f"nothing is sent to or shown from {self.peer}. If its owner confirms the new fingerprint "
            f"(@whois {self.peer}), type @trust {self.peer}"
        )

    def line(self) -> str:
        return f"warning: {self.message}"

    def as_dict(self) -> Json:
        return {
            "event": "warning",
            "code": "identity_changed",
            "peer": self.peer,
            "server": self.server,
            "pinned": self.pinned,
            "seen": self.seen,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class KeyReplayed:
    """``peer``'s details were an older signed key of its pinned identity than one already seen: a
    replayed registration, refused."""

    stream: ClassVar[str] = "err"
    peer: str
    server: str

    @property
    def message(self) -> str:
        return (
            f"refused {self.peer}'s details from {self.server}: a key its identity signed before the newest "
            f"one seen (a replayed registration)"
        )

    def line(self) -> str:
        return f"warning: {self.message}"

    def as_dict(self) -> Json:
        return {
            "event": "warning",
            "code": "replayed_key",
            "peer": self.peer,
            "server": self.server,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class BadSignature:
    """``peer``'s details carry a session key its identity did not sign (forged, or altered on the way):
    refused as a bad seal is."""

    stream: ClassVar[str] = "err"
    peer: str

    @property
    def message(self) -> str:
        return f"rejected {self.peer}'s details: its key is not signed by the identity they name"

    def line(self) -> str:
        return f"warning: {self.message}"

    def as_dict(self) -> Json:
        return {"event": "warning", "code": "bad_signature", "peer": self.peer, "message": self.message}


def refused_event(seen: Seen, server: str) -> IdentityChanged | KeyReplayed | BadSignature:
    """The warning for details :meth:`PeerIdentities.observe` refused (``seen.usable`` is False)."""
    if seen.status is Status.CHANGED:
        assert seen.pinned is not None
        return IdentityChanged(
            seen.peer_id, server, fingerprint(seen.pinned.identity_key), fingerprint(seen.identity_key)
        )
    if seen.status is Status.REPLAYED:
        return KeyReplayed(seen.peer_id, server)
    if seen.status is Status.BAD_SIGNATURE:
        return BadSignature(seen.peer_id)
    raise ValueError(f"{seen.peer_id}'s details were not refused ({seen.status.value})")


@dataclass(frozen=True, slots=True)
class SendBlocked:
    """``@chat``/``@all`` to a peer whose identity is blocked: nothing sent (an error, like ``unknown_peer``)."""

    stream: ClassVar[str] = "err"
    peer: str
    status: Status

    @property
    def message(self) -> str:
        if self.status is Status.CHANGED:
            return (
                f"{self.peer}'s identity changed; nothing sent. Compare fingerprints (@whois {self.peer}), "
                f"then @trust {self.peer} to accept it"
            )
        return f"{self.peer}'s details were refused ({_WHY[self.status]}); nothing sent"

    def line(self) -> str:
        return f"error: {self.message}"

    def as_dict(self) -> Json:
        code = "identity_changed" if self.status is Status.CHANGED else self.status.value
        return {"event": "error", "code": code, "peer": self.peer, "message": self.message}


_WHY = {
    Status.REPLAYED: "an old signed key, replayed",
    Status.BAD_SIGNATURE: "its key is not signed by its identity",
    Status.CHANGED: "its identity changed",
}


@dataclass(frozen=True, slots=True)
class WhoisReport:
    """The answer to ``@whois peer``: its fingerprint, the pair's safety number, and whether the identity
    is pinned, new (first contact, pinned now), changed (with the pinned fingerprint), refused, or not
    pinned (``--ephemeral``). ``fingerprint`` and ``safety`` are None when no signed details are known."""

    stream: ClassVar[str] = "out"
    peer: str
    server: str
    status: Status
    fingerprint: str | None = None
    safety: str | None = None
    pinned: str | None = None
    """The pinned fingerprint, when it differs from ``fingerprint`` (CHANGED)."""

    def lines(self) -> list[str]:
        if self.status is Status.UNKNOWN or self.fingerprint is None:
            return [f"{self.peer}: identity not known yet (no signed details from {self.server})"]
        state = {
            Status.PINNED: f"pinned for {self.server}",
            Status.NEW: f"new: first contact on {self.server}, pinned now",
            Status.CHANGED: f"CHANGED on {self.server}, blocked until @trust {self.peer}",
            Status.REPLAYED: f"pinned for {self.server}; its last details were an old key, replayed and refused",
            Status.BAD_SIGNATURE: "its last details were not signed by its identity and were refused",
            Status.UNPINNED: "not pinned (--ephemeral)",
        }[self.status]
        lines = [f"{self.peer}: identity {self.fingerprint} ({state})"]
        if self.pinned is not None:
            lines.append(f"{self.peer}: pinned identity was {self.pinned}")
        if self.safety is not None:
            lines.append(f"safety number with {self.peer}: {self.safety}")
        return lines

    def line(self) -> str:
        return "\n".join(self.lines())

    def as_dict(self) -> Json:
        return {
            "event": "whois",
            "peer": self.peer,
            "server": self.server,
            "status": self.status.value,
            "fingerprint": self.fingerprint,
            "safety_number": self.safety,
            "pinned": self.pinned,
        }


def whois(ids: PeerIdentities, peer_id: str, my_id: str, my_identity_key: bytes) -> WhoisReport:
    """``@whois peer_id`` from what ``ids`` has seen (the session looks the peer up first if it has not)."""
    seen = ids.seen(peer_id)
    if seen is None:
        return WhoisReport(peer_id, ids.server, Status.UNKNOWN)
    pinned = None
    if seen.status is Status.CHANGED and seen.pinned is not None:
        pinned = fingerprint(seen.pinned.identity_key)
    safety = None
    if seen.status is not Status.BAD_SIGNATURE:
        safety = safety_number(my_id, my_identity_key, peer_id, seen.identity_key)
    return WhoisReport(peer_id, ids.server, seen.status, fingerprint(seen.identity_key), safety, pinned)


@dataclass(frozen=True, slots=True)
class Trusted:
    """``@trust peer`` pinned the identity it was blocked for; messages flow again."""

    stream: ClassVar[str] = "out"
    peer: str
    server: str
    fingerprint: str

    def line(self) -> str:
        return f"{self.peer} on {self.server} is now pinned as {self.fingerprint}; messages to and from it flow again"

    def as_dict(self) -> Json:
        return {"event": "trusted", "peer": self.peer, "server": self.server, "fingerprint": self.fingerprint}


@dataclass(frozen=True, slots=True)
class NothingToTrust:
    """``@trust peer`` when nothing about it is blocked (or nothing can be pinned)."""

    stream: ClassVar[str] = "err"
    peer: str
    status: Status

    @property
    def message(self) -> str:
        why = {
            Status.UNKNOWN: "no signed details from it yet",
            Status.NEW: "its identity is pinned already",
            Status.PINNED: "its identity is pinned already",
            Status.BAD_SIGNATURE: "its last details were not signed by its identity; that cannot be trusted",
            Status.UNPINNED: "nothing is pinned with --ephemeral",
        }.get(self.status, "nothing is blocked")
        return f"nothing to trust for {self.peer}: {why}"

    def line(self) -> str:
        return f"error: {self.message}"

    def as_dict(self) -> Json:
        return {"event": "error", "code": "nothing_to_trust", "peer": self.peer, "message": self.message}


def trust(ids: PeerIdentities, peer_id: str) -> tuple[Trusted | NothingToTrust, Seen | None]:
    """``@trust peer_id``: the event to show, and the now usable details (None if nothing changed)."""
    before = ids.seen(peer_id)
    trusted = ids.trust(peer_id)
    if trusted is None:
        return NothingToTrust(peer_id, Status.UNKNOWN if before is None else before.status), None
    return Trusted(peer_id, ids.server, fingerprint(trusted.identity_key)), trusted


CHANGED_MARK = " [identity changed]"


def show_list_line(line: str, judged: Status | Verdict | None) -> str:
    """An ``@show_list`` line (``client2 10.0.0.1:53002``), marked when the peer's identity is not the one
    pinned: ``judged`` is what the session saw of it (``PeerIdentities.seen(peer).status``), or what the
    pin book says of an identity key the list carries (``PeerIdentities.listed``), or None (nothing
    known). Unchanged otherwise, so the assignment's lines stay exact for peers as pinned."""
    return line + CHANGED_MARK if judged in (Status.CHANGED, Verdict.CHANGED) else line


@dataclass(frozen=True, slots=True)
class OwnIdentity:
    """``natchat id``: one's own fingerprint and where the key is (None: in memory only)."""

    stream: ClassVar[str] = "out"
    fingerprint: str
    key: bytes
    path: str | None
    created: bool

    @classmethod
    def of(cls, identity_key: bytes, path: str | None, *, created: bool) -> OwnIdentity:
        return cls(fingerprint(identity_key), identity_key, path, created)

    def lines(self) -> list[str]:
        where = "in memory only (--ephemeral)" if self.path is None else self.path
        return [
            f"fingerprint {self.fingerprint}",
            f"identity key {where}" + (" (created now)" if self.created else ""),
        ]

    def as_dict(self) -> Json:
        return {
            "event": "identity",
            "fingerprint": self.fingerprint,
            "key": base64.b64encode(self.key).decode(),
            "path": self.path,
            "created": self.created,
        }
