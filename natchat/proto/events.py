"""What the sans-I/O objects tell their shells to show the user.

Each event has its exact human line (:meth:`line`, ``None`` for events the assignment's output does
not show) and its machine form (:meth:`as_dict`, one JSON object per event with ``--json``; the
fields are documented in ``docs/EVENTS.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .identity_events import (
    CHANGED_MARK,
    BadSignature,
    IdentityChanged,
    KeyReplayed,
    NothingToTrust,
    SendBlocked,
    Trusted,
    WhoisReport,
)
from .wire import Addr, PeerInfo

Json = dict[str, object]


def peer_json(peer: PeerInfo) -> Json:
    return {"id": peer.id, "public": str(peer.pub), "private": str(peer.priv)}


# --- server -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegisteredEvent:
    peer: PeerInfo

    def line(self) -> str:
        return f"{self.peer.id} {self.peer.pub}"

    def as_dict(self) -> Json:
        return {"event": "registered", **peer_json(self.peer)}


@dataclass(frozen=True, slots=True)
class Deregistered:
    peer: PeerInfo

    def line(self) -> str:
        return f"{self.peer.id} is deregistered {self.peer.pub}"

    def as_dict(self) -> Json:
        return {"event": "deregistered", **peer_json(self.peer)}


@dataclass(frozen=True, slots=True)
class Disappeared:
    peer: PeerInfo

    def line(self) -> str:
        return f"{self.peer.id} is disappeared {self.peer.pub}"

    def as_dict(self) -> Json:
        return {"event": "disappeared", **peer_json(self.peer)}


@dataclass(frozen=True, slots=True)
class Moved:
    """A session's NAT mapping changed; same client, new public address."""

    peer: PeerInfo
    old: Addr

    def line(self) -> str:
        return f"{self.peer.id} moved {self.old} -> {self.peer.pub}"

    def as_dict(self) -> Json:
        return {"event": "moved", **peer_json(self.peer), "was": str(self.old)}


@dataclass(frozen=True, slots=True)
class Dropped:
    """A datagram refused (counted); shown only when asked to be verbose."""

    addr: Addr
    code: str
    reason: str

    def line(self) -> str:
        return f"dropped datagram from {self.addr}: {self.code}: {self.reason}"

    def as_dict(self) -> Json:
        return {"event": "error", "code": self.code, "message": self.reason, "from": str(self.addr)}


@dataclass(frozen=True, slots=True)
class RelayStarted:
    """The midPeer relayed a first datagram from ``src`` to ``dst`` (shown once per pair and direction)."""

    src: str
    dst: str

    def line(self) -> str:
        return f"relaying {self.src} -> {self.dst}"

    def as_dict(self) -> Json:
        return {"event": "relay", "from": self.src, "to": self.dst}


ServerEvent = RegisteredEvent | Deregistered | Disappeared | Moved | Dropped | RelayStarted


# --- client -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Joined:
    """The server accepted us (``again``: after losing it)."""

    id: str
    pub: Addr
    again: bool

    def line(self) -> str:
        if self.again:
            return f"registered again with the server as {self.pub}"
        return f"registered; public address {self.pub}"

    def as_dict(self) -> Json:
        return {"event": "registered", "id": self.id, "public": str(self.pub), "again": self.again}


@dataclass(frozen=True, slots=True)
class ServerLost:
    reason: str

    def line(self) -> str:
        return f"{self.reason}; registering again"

    def as_dict(self) -> Json:
        return {"event": "error", "code": "server_lost", "message": self.line()}


@dataclass(frozen=True, slots=True)
class Refused:
    """The server refused us for good (e.g. the ID is taken): the client must stop."""

    code: str
    msg: str

    def line(self) -> str:
        return f"error: {self.msg}"

    def as_dict(self) -> Json:
        return {"event": "error", "code": self.code, "message": self.msg, "fatal": True}


@dataclass(frozen=True, slots=True)
class ChatReceived:
    """A message from ``src``; ``group``: it was sent to everyone (``@all``)."""

    src: str
    text: str
    group: bool = False

    def line(self) -> str:
        return f"From {self.src} to all [{self.text}]" if self.group else f"From {self.src} [{self.text}]"

    def as_dict(self) -> Json:
        return {"event": "message", "from": self.src, "text": self.text, "to_all": self.group}


@dataclass(frozen=True, slots=True)
class DeliveryFailed:
    dst: str
    text: str
    reason: str

    def line(self) -> str:
        return f"could not deliver to {self.dst}: {self.reason} [{self.text}]"

    def as_dict(self) -> Json:
        return {"event": "error", "code": "undeliverable", "to": self.dst, "text": self.text, "message": self.reason}


@dataclass(frozen=True, slots=True)
class PathUp:
    """A direct path to ``peer`` answered (shown only when asked to be verbose)."""

    peer: str
    addr: Addr
    attempt: int
    probes: int = 0
    """Probes the winning birthday attempt sent (0: a scheduled punch, or none of ours)."""
    sockets: int = 0
    """Fresh sockets the winning birthday attempt opened (its fan-out)."""

    def line(self) -> str:
        how = f"attempt {self.attempt}" if self.attempt else "the peer reached us first"
        return f"path to {self.peer} is up via {self.addr} ({how})"

    def as_dict(self) -> Json:
        return {
            "event": "path",
            "peer": self.peer,
            "address": str(self.addr),
            "attempt": self.attempt,
            "probes": self.probes,
            "sockets": self.sockets,
        }


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the user should know that changes nothing they asked for (e.g. the midPeer is silent)."""

    code: str
    message: str

    def line(self) -> str:
        return self.message

    def as_dict(self) -> Json:
        return {"event": "notice", "code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True)
class PathChanged:
    """Messages to ``peer`` now go another way: ``relay`` (no direct path answered), or ``direct`` or
    ``lan`` again after relaying (``addr`` is the peer's address, or the midPeer's for ``relay``)."""

    peer: str
    path: str
    addr: Addr

    def line(self) -> str:
        if self.path == "relay":
            return f"no direct path to {self.peer} yet; relaying through the midPeer {self.addr}"
        return f"path to {self.peer} is {self.path} now, via {self.addr}"

    def as_dict(self) -> Json:
        return {"event": "path_changed", "peer": self.peer, "path": self.path, "address": str(self.addr)}


@dataclass(frozen=True, slots=True)
class PathReport:
    """The answer to ``@path``: how messages to ``peer`` go (``lan``, ``direct``, ``relay`` or ``none``)
    and the round-trip time just measured over that path (None: no answer, or no path to measure)."""

    peer: str
    path: str
    addr: Addr | None
    rtt: float | None

    def line(self) -> str:
        if self.path == "none" or self.addr is None:
            return f"{self.peer}: no path yet (nothing sent to it)"
        via = f"via the midPeer {self.addr}" if self.path == "relay" else f"via {self.addr}"
        rtt = f"rtt {self.rtt * 1000:.1f} ms" if self.rtt is not None else "no answer within 2 s"
        return f"{self.peer}: {self.path} {via}, {rtt}"

    def as_dict(self) -> Json:
        return {
            "event": "path_report",
            "peer": self.peer,
            "path": self.path,
            "address": None if self.addr is None else str(self.addr),
            "rtt_ms": None if self.rtt is None else round(self.rtt * 1000, 3),
        }


@dataclass(frozen=True, slots=True)
class ListChanged:
    """The peer list changed: who joined (or moved: its addresses or key changed) and who left, and how
    many are in the list now. O(changes), not O(list): in a join storm every client gets every change."""

    joined: tuple[str, ...]
    left: tuple[str, ...]
    count: int

    def line(self) -> None:
        return None  # the assignment's client shows the list only when asked (@show_list)

    def as_dict(self) -> Json:
        return {"event": "list", "joined": list(self.joined), "left": list(self.left), "count": self.count}


@dataclass(frozen=True, slots=True)
class ListShown:
    """The answer to ``@show_list``: every registered client (this one included) with its addresses, in
    registration order, as the server had them."""

    peers: tuple[PeerInfo, ...]
    changed: frozenset[str] = frozenset()
    """Peers whose identity is not the one pinned (marked; every other line stays the assignment's)."""

    def lines(self) -> list[str]:
        return [f"{p.id} {p.pub}" + (CHANGED_MARK if p.id in self.changed else "") for p in self.peers]

    def as_dict(self) -> Json:
        peers = [peer_json(p) | ({"identity": "changed"} if p.id in self.changed else {}) for p in self.peers]
        return {"event": "show_list", "peers": peers}


@dataclass(frozen=True, slots=True)
class Rejected:
    """A datagram that names ``peer`` as its sender but is not sealed with ``peer``'s key (forged, or
    altered on the way): dropped. Shown once a minute per peer at most."""

    peer: str
    code: str = "bad_seal"

    @property
    def message(self) -> str:
        return f"rejected a datagram claiming to be from {self.peer}: it is not sealed with {self.peer}'s key"

    def line(self) -> str:
        return f"warning: {self.message}"

    def as_dict(self) -> Json:
        return {"event": "warning", "code": self.code, "peer": self.peer, "message": self.message}


@dataclass(frozen=True, slots=True)
class Left:
    """We deregistered (or gave up trying); the client may exit."""

    acknowledged: bool

    def line(self) -> None:
        return None

    def as_dict(self) -> Json:
        return {"event": "left", "acknowledged": self.acknowledged}


ClientEvent = (
    Joined
    | ServerLost
    | Refused
    | ChatReceived
    | DeliveryFailed
    | Notice
    | PathUp
    | PathChanged
    | PathReport
    | ListChanged
    | ListShown
    | Rejected
    | Left
    | IdentityChanged
    | KeyReplayed
    | BadSignature
    | SendBlocked
    | WhoisReport
    | Trusted
    | NothingToTrust
)
