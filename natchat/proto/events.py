"""What the sans-I/O objects tell their shells to show the user. Each has the exact human line."""

from __future__ import annotations

from dataclasses import dataclass

from .wire import Addr, PeerInfo

# --- server -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegisteredEvent:
    peer: PeerInfo

    def line(self) -> str:
        return f"{self.peer.id} {self.peer.pub}"


@dataclass(frozen=True, slots=True)
class Deregistered:
    peer: PeerInfo

    def line(self) -> str:
        return f"{self.peer.id} is deregistered {self.peer.pub}"


@dataclass(frozen=True, slots=True)
class Disappeared:
    peer: PeerInfo

    def line(self) -> str:
        return f"{self.peer.id} is disappeared {self.peer.pub}"


@dataclass(frozen=True, slots=True)
class Moved:
    """A session's NAT mapping changed; same client, new public address."""

    peer: PeerInfo
    old: Addr

    def line(self) -> str:
        return f"{self.peer.id} moved {self.old} -> {self.peer.pub}"


@dataclass(frozen=True, slots=True)
class Dropped:
    """A datagram refused (counted); shown only when asked to be verbose."""

    addr: Addr
    code: str
    reason: str

    def line(self) -> str:
        return f"dropped datagram from {self.addr}: {self.code}: {self.reason}"


ServerEvent = RegisteredEvent | Deregistered | Disappeared | Moved | Dropped


# --- client -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Joined:
    """The server accepted us (``again``: after losing it)."""

    pub: Addr
    again: bool

    def line(self) -> str:
        if self.again:
            return f"registered again with the server as {self.pub}"
        return f"registered; public address {self.pub}"


@dataclass(frozen=True, slots=True)
class ServerLost:
    reason: str

    def line(self) -> str:
        return f"{self.reason}; registering again"


@dataclass(frozen=True, slots=True)
class Refused:
    """The server refused us for good (e.g. the ID is taken): the client must stop."""

    code: str
    msg: str

    def line(self) -> str:
        return f"error: {self.msg}"


@dataclass(frozen=True, slots=True)
class ChatReceived:
    src: str
    text: str

    def line(self) -> str:
        return f"From {self.src} [{self.text}]"


@dataclass(frozen=True, slots=True)
class DeliveryFailed:
    dst: str
    text: str
    reason: str

    def line(self) -> str:
        return f"could not deliver to {self.dst}: {self.reason} [{self.text}]"


@dataclass(frozen=True, slots=True)
class PathUp:
    """A direct path to ``peer`` answered (shown only when asked to be verbose)."""

    peer: str
    addr: Addr
    attempt: int

    def line(self) -> str:
        how = f"attempt {self.attempt}" if self.attempt else "the peer reached us first"
        return f"path to {self.peer} is up via {self.addr} ({how})"


@dataclass(frozen=True, slots=True)
class Left:
    """We deregistered (or gave up trying); the client may exit."""

    acknowledged: bool


ClientEvent = Joined | ServerLost | Refused | ChatReceived | DeliveryFailed | PathUp | Left
