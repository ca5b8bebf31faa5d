"""The registry: who is registered, in what order, until when, and the versioned log of changes.

Owns: the entries (in registration order), the expiry order (least recently heard first: a refresh
is O(1), and the next deadline is the oldest entry's), the index by public address, the session
tokens (it makes them with the ``token_factory`` it was given), the version number and the last
:data:`DELTA_LOG` changes (``wire.change``). Every mutation that changes the list commits the next
version and returns the change it logged (``wire.change``), for the caller to pass on (the list fan-out).

May not touch: the outgoing queue, events, rate limits, the relay or punching state. It never decides
who may register (the server's rules do) and never reads a clock: time is passed in.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import islice

from . import wire
from .wire import Addr, PeerInfo

DELTA_LOG = 4096
"""How many recent changes the server keeps to answer a client that missed some."""


@dataclass(slots=True)
class Entry:
    """One registered client."""

    info: PeerInfo
    token: str
    last_seen: float
    rtt: float = 0.0  # as the client last reported it
    shown_at: float = float("-inf")  # when it last looked up everyone (``@show_list``)
    mapping: str | None = None  # its mapping kind as registered (``wire.Mapping``; None: unknown)
    spray: bool = True  # it takes part in birthday attempts (``register.spray``)


class Registry:
    def __init__(self, *, timeout: float, token_factory: Callable[[], str]) -> None:
        self.timeout = timeout
        self._new_token = token_factory
        self._entries: dict[str, Entry] = {}  # in registration order
        self._expiry: OrderedDict[str, None] = OrderedDict()  # least recently heard first
        self._by_addr: dict[Addr, str] = {}
        self._log: deque[str] = deque(maxlen=DELTA_LOG)  # the last changes, up to ``version``
        self.version = 0
        self.get: Callable[[str], Entry | None] = self._entries.get
        """The entry of a registered client ID, or None (the dictionary's own ``get``: it is on the
        path of every datagram)."""

    # --- reading ------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def knows_addr(self, addr: Addr) -> bool:
        """Whether ``addr`` is some registered client's public address."""
        return addr in self._by_addr

    def peers(self) -> list[PeerInfo]:
        """Everyone, in registration order."""
        return [e.info for e in self._entries.values()]

    def ids(self) -> list[str]:
        """Everyone's ID, in registration order."""
        return list(self._entries)

    def addresses(self) -> list[Addr]:
        """Everyone's public address, in registration order."""
        return [e.info.pub for e in self._entries.values()]

    def addressed(self, data: bytes) -> list[tuple[bytes, Addr]]:
        """``data`` to everyone's public address, in registration order: a fan-out's O(N) step, in
        one pass (it is the whole cost of a join storm's deltas)."""
        return [(data, e.info.pub) for e in self._entries.values()]

    def token(self, client_id: str) -> str | None:
        """``client_id``'s session token (for tests and benchmarks that play its clients)."""
        entry = self._entries.get(client_id)
        return None if entry is None else entry.token

    def sizes(self) -> dict[str, int]:
        """How much each table holds (entries, expiry, by_addr, log): what must stay bounded."""
        return {
            "entries": len(self._entries),
            "expiry": len(self._expiry),
            "by_addr": len(self._by_addr),
            "log": len(self._log),
        }

    def next_deadline(self) -> float | None:
        """When the least recently heard client would disappear."""
        if not self._expiry:
            return None
        return self._entries[next(iter(self._expiry))].last_seen + self.timeout

    def changes_since(self, since: int) -> list[str] | None:
        """The changes after version ``since``, oldest first; None if the log no longer reaches back
        that far, or for ``since`` 0 ("everything"): then only the whole list will do."""
        if since >= self.version:
            return []
        first = self.version - len(self._log) + 1  # the version of ``_log[0]``
        if since == 0 or since < first - 1:
            return None
        newest = list(islice(reversed(self._log), self.version - since))  # O(changes), not O(log)
        newest.reverse()
        return newest

    # --- changing -----------------------------------------------------------------------------------

    def add(self, info: PeerInfo, now: float) -> tuple[Entry, str]:
        """A new registration, with a new token: the entry, and the change committed."""
        entry = Entry(info, self._new_token(), now)  # (as preload does: this is a join storm's path)
        self._entries[info.id] = entry
        self._expiry[info.id] = None
        self._by_addr[info.pub] = info.id
        self.version += 1
        change = wire.change(info.id, gone=False)
        self._log.append(change)
        return entry, change

    def preload(self, info: PeerInfo, token: str, now: float) -> Entry:
        """Add an entry as :meth:`add` does, with ``token``, but commit no change: nobody is told.
        For benchmarks that start with a full server (``bench/serve.py``)."""
        entry = Entry(info, token, now)
        self._entries[info.id] = entry
        self._expiry[info.id] = None
        self._by_addr[info.pub] = info.id
        return entry

    def touch(self, entry: Entry, now: float) -> None:
        """``entry`` was heard from at ``now``: it is now the last to expire."""
        entry.last_seen = now
        self._expiry.move_to_end(entry.info.id)

    def update(
        self, entry: Entry, pub: Addr, priv: Addr, key: bytes | None = None, signed: PeerInfo | None = None
    ) -> tuple[Addr, str]:
        """The entry moved (or, with ``key``, a client restarted on its socket with a new key, and with
        ``signed``, the identity of that registration): its old public address, and the change committed."""
        old = entry.info
        if self._by_addr.get(old.pub) == old.id:
            del self._by_addr[old.pub]
        ident = old if signed is None else signed
        entry.info = PeerInfo(old.id, pub, priv, old.key if key is None else key, ident.signed)
        self._by_addr[pub] = old.id
        self.version += 1
        change = wire.change(old.id, gone=False)
        self._log.append(change)
        return old.pub, change

    def remove(self, client_id: str) -> tuple[Entry, str]:
        """Remove a registered client: its entry, and the change committed."""
        entry = self._entries.pop(client_id)
        del self._expiry[client_id]
        if self._by_addr.get(entry.info.pub) == client_id:
            del self._by_addr[entry.info.pub]
        self.version += 1
        change = wire.change(client_id, gone=True)
        self._log.append(change)
        return entry, change

    def expire(self, now: float) -> Iterator[tuple[Entry, str]]:
        """Remove, one by one as the caller iterates, every client silent for ``timeout`` at ``now``
        (each commits its change, as :meth:`remove` does)."""
        expiry, entries, timeout = self._expiry, self._entries, self.timeout
        while expiry:
            client_id = next(iter(expiry))
            if entries[client_id].last_seen + timeout > now:
                return
            yield self.remove(client_id)
