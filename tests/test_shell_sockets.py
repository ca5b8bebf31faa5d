"""natchat.shell.SocketsShell on real loopback sockets: a socket the owner closes while its opening is
still under way (another flush ran meanwhile: a fan-out socket whose attempt was won at once) stays
closed, and nothing crashes (the shell once died of a KeyError or EBADF there)."""

from __future__ import annotations

import trio
import trio.lowlevel

from natchat.proto.actions import Action, CloseSocket, OpenSocket
from natchat.proto.wire import Addr
from natchat.shell import SocketsShell


class Owner:
    def __init__(self) -> None:
        self.pending: list[Action] = []
        self.opened: list[int] = []

    def actions(self) -> list[Action]:
        out, self.pending = self.pending, []
        return out

    def receive_datagram(self, data: bytes, sock: int, addr: Addr, now: float) -> None:
        pass

    def handle_timer(self, now: float) -> None:
        pass

    def get_timer(self) -> float | None:
        return None

    def socket_opened(self, sock: int, local: Addr, now: float) -> None:
        self.opened.append(sock)


async def test_a_socket_closed_while_it_opens_stays_closed() -> None:
    with trio.fail_after(10):
        owner = Owner()
        async with trio.open_nursery() as nursery:
            shell = SocketsShell(owner, nursery, bind_host="127.0.0.1", local_ip="127.0.0.1")
            for round_ in range(20):
                socks = list(range(1 + 10 * round_, 11 + 10 * round_))
                owner.pending = [OpenSocket(s) for s in socks]
                async with trio.open_nursery() as flushes:
                    flushes.start_soon(shell.flush)
                    await trio.lowlevel.checkpoint()  # the first flush is binding now
                    owner.pending = [CloseSocket(s) for s in socks]
                    flushes.start_soon(shell.flush)
                assert not any(s in shell.sockets for s in socks)
            assert shell.sockets == {}
            nursery.cancel_scope.cancel()
        assert set(owner.opened) <= set(range(1, 201))
