"""The list fan-out and the server's outgoing queue.

Owns: the queue of datagrams waiting for the shell (everything the server sends goes through it, in
the order sent), the burst counter (one burst: what accumulates between two calls of :meth:`take`),
the changes committed but not yet sent to everyone (batched by the shell's send clock), and the
peer-list pages encoded for the last snapshot (shared by the newcomers of one burst).

May not touch: the registry. What it needs of it comes in as arguments (the version, the IDs, the
addresses, the changes since some version); it decides nothing about who is registered.

Every client must learn every change, so in a join storm it is the number of datagrams that counts.
Changes wait until the shell asks for more to send, so all that are made while it is still sending
the last fan-out travel together, as many as fit in one datagram: an idle server sends each change at
once, a busy one batches them, as busy as it is (the shell's sending is the clock). A delta goes to
every client registered when it leaves, newcomers included (they may so get changes their list
already has) and a moved client at its new address; clients skip what they have by version.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import repeat
from typing import TypeVar

from . import wire
from .wire import Addr

PAGES_REUSE = 64
"""How many changes old the encoded pages may be when a newcomer shares them (the rest goes as
deltas after them)."""

_DELTA_OVERHEAD = wire.encoded_size(wire.ListDelta(ver=2**53, changes=""))


class ListFanout:
    def __init__(self) -> None:
        self._out: list[tuple[bytes, Addr]] = []
        self._burst = 0  # bumped by every take(): pages cached in this burst are still in _out
        self._pages: tuple[int, list[bytes], int] | None = None  # (version, encoded pages, burst)
        self._pending: list[str] = []  # changes committed but not sent to everyone yet
        self._pending_ver = 0  # the version of _pending[0]
        self._pending_size = 0  # their bytes, with a space each
        self.unsent = 0
        """How many committed changes are not queued yet (they go with the next :meth:`take`): a
        registry at version ``v`` has queued its deltas up to ``v - unsent``."""
        self._delta_budget = wire.MAX_DATAGRAM - _DELTA_OVERHEAD

    # --- the queue ----------------------------------------------------------------------------------

    def send(self, msg: wire.Message, addr: Addr) -> None:
        self._out.append((wire.encode(msg), addr))

    def send_data(self, data: bytes, addr: Addr) -> None:
        self._out.append((data, addr))

    def take(self) -> list[tuple[bytes, Addr]]:
        """Everything queued, which ends the burst. Flush the changes not sent yet (``unsent``, :meth:`flush`) first."""
        out, self._out = self._out, []
        self._burst += 1
        return out

    # --- changes to everyone ------------------------------------------------------------------------

    def record(self, version: int, change: str) -> bytes | None:
        """Batch ``change``, committed as ``version``. If the batch was already a datagram's worth,
        that delta is returned first, encoded: it must go to everyone now (:meth:`broadcast`)."""
        size = len(change) + 1  # and a space (IDs are ASCII)
        full = None
        if self._pending and self._pending_size + size > self._delta_budget:
            full = self.flush()
        if not self._pending:
            self._pending_ver = version
        self._pending.append(change)
        self._pending_size += size
        self.unsent += 1
        return full

    def flush(self) -> bytes:
        """The pending changes as one delta, encoded once (they are no longer pending)."""
        data = wire.encode(wire.ListDelta(ver=self._pending_ver, changes=" ".join(self._pending)))
        self._pending, self._pending_size, self.unsent = [], 0, 0
        return data

    def broadcast(self, datagrams: list[tuple[bytes, Addr]]) -> None:
        """Queue a delta to everyone (``Registry.addressed``): once per datagram of changes."""
        self._out.extend(datagrams)

    # --- one client's list --------------------------------------------------------------------------

    def send_changes(self, since: int, changes: list[str], addr: Addr) -> None:
        """Send ``addr`` the ``changes`` after version ``since`` as deltas (``sync``)."""
        ver = since + 1
        for batch in pack(changes, _DELTA_OVERHEAD):
            self.send(wire.ListDelta(ver=ver, changes=" ".join(batch)), addr)
            ver += len(batch)

    def pages_version(self, version: int) -> int | None:
        """The version of the pages encoded in this burst, if they may still be shared at
        ``version``; None if a snapshot must encode the list again."""
        cached = self._pages
        if cached is not None and version - cached[0] <= PAGES_REUSE and cached[2] == self._burst:
            return cached[0]
        return None

    def send_snapshot(self, version: int, ids: list[str] | None, addr: Addr) -> int:
        """Send ``addr`` the whole list as pages: the list ``ids`` at ``version``, or, with ``ids``
        None, the pages of this burst (:meth:`pages_version` must have said they may be shared).
        Returns the version of the pages sent: the changes since must follow (:meth:`send_changes`).

        In a burst of registrations (before the shell takes the datagrams), newcomers share the pages
        encoded for the first of them: encoding the whole list once per newcomer would cost O(N) each."""
        if ids is None:
            assert self._pages is not None and self._pages[2] == self._burst
            ver, pages, _ = self._pages
        else:
            overhead = wire.encoded_size(wire.ListPage(ver=version, index=100_000, count=100_000, peers=""))
            batches = list(pack(ids, overhead)) or [[]]
            pages = [
                wire.encode(wire.ListPage(ver=version, index=i, count=len(batches), peers=" ".join(batch)))
                for i, batch in enumerate(batches)
            ]
            ver = version
            self._pages = (ver, pages, self._burst)
        self._out.extend(zip(pages, repeat(addr)))
        return ver


_T = TypeVar("_T")


def pack(items: list[_T], overhead: int) -> Iterator[list[_T]]:
    """Split ``items`` into runs whose JSON, plus ``overhead`` bytes, fits in one datagram."""
    budget = wire.MAX_DATAGRAM - overhead
    batch: list[_T] = []
    size = 0
    for item in items:
        # an ID (or change), and the space between (IdList, ChangeList); anything else: its JSON and a comma
        item_size = len(item) + 1 if isinstance(item, str) else wire.encoded_size(item) + 1
        if batch and size + item_size > budget:
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += item_size
    if batch:
        yield batch
