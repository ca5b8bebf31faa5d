"""IPv6 on loopback: a dual-stack server, clients registering and chatting over ``::1``, IPv4 alongside.

Real ``natchat`` processes (see :mod:`tests.procs`); traffic goes to ``::1`` and ``127.0.0.1`` only. The
server listens on ``::`` (its default), which takes both families; IPv6 clients bind ``::`` too (the
default when the server address is IPv6), IPv4 clients ``127.0.0.1``. Every wait is bounded.
"""

from __future__ import annotations

import errno
import re
import socket
import sys

import pytest
import trio

import natchat.net
from natchat.net import bind_listening_udp, sockaddr_for, to_addr
from natchat.proto.wire import Addr

from .procs import Proc, ProcGroup, has_ipv6_loopback

NATCHAT = [sys.executable, "-m", "natchat"]
REGISTERED = re.compile(r"registered; public address (\S+)")
LIST_LINE = re.compile(r"(\S+) (\S+:\d+)")
LISTENING = re.compile(r"natchat server on UDP (\S+); .*")


needs_ipv6 = pytest.mark.skipif(not has_ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)")


def free_dual_stack_port() -> int:
    """A UDP port free on ``::`` for both families right now (bound dual-stack to port 0 and released)."""
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", 0))
        return int(sock.getsockname()[1])


class Room:
    """A server on ``::`` (its default address) and the clients of one test."""

    def __init__(self, procs: ProcGroup) -> None:
        self.procs = procs
        self.port = free_dual_stack_port()
        self.server: Proc | None = None
        self.pub: dict[str, str] = {}

    async def serve(self) -> Proc:
        self.server = await self.procs.start("server", [*NATCHAT, "serve", "--port", str(self.port)])
        await self.server.expect_line(f"natchat server on UDP [::]:{self.port}; clients disappear after 30 s", "err")
        return self.server

    async def join(self, client_id: str, server: str, *options: str) -> Proc:
        """Start a client toward ``server`` (``[::1]`` or ``127.0.0.1``) and wait until it is registered."""
        args = [*NATCHAT, "join", client_id, "--server", f"{server}:{self.port}", "--port", "0", "-v", *options]
        proc = await self.procs.start(client_id, args)
        self.pub[client_id] = (await proc.expect_line(REGISTERED, "err", within=10))[1]
        return proc

    def registry(self) -> list[tuple[str, str]]:
        assert self.server is not None
        return [(m[1], m[2]) for line in self.server.lines() if (m := LIST_LINE.fullmatch(line))]


async def show_list(client: Proc, count: int, within: float = 10.0) -> list[tuple[str, str]]:
    """``@show_list`` until it prints ``count`` entries (polled a few times a second, bounded)."""
    with trio.move_on_after(within):
        while True:
            start = client.mark()
            await client.send("@show_list")
            await client.send("@no_such_command")  # answered "wrong instruction retype": the list has ended
            await client.expect_line("wrong instruction retype")
            lines = client.lines()[start : client.position() - 1]
            listing = [(m[1], m[2]) for line in lines if (m := LIST_LINE.fullmatch(line))]
            if len(listing) == count:
                return listing
            await trio.sleep(0.2)  # poll interval
    raise AssertionError(f"{client.name} never listed {count} clients\n{client.group.transcript()}")


async def chat(sender: Proc, receiver: Proc, text: str) -> None:
    await sender.send(f"@chat {receiver.name} {text}")
    await receiver.expect_count(f"From {sender.name} [{text}]", 1, within=10)


# --- real processes -------------------------------------------------------------------------------------------


@needs_ipv6
async def test_ipv6_clients_register_and_chat_over_ipv6_and_ipv4_works_alongside(procs: ProcGroup) -> None:
    room = Room(procs)
    server = await room.serve()
    six_a = await room.join("six_a", "[::1]")
    six_b = await room.join("six_b", "[::1]")
    four = await room.join("four", "127.0.0.1", "--bind", "127.0.0.1")

    # registered over IPv6 (the server saw ::1), and the IPv4 client as plain IPv4 (not ::ffff:127.0.0.1)
    assert re.fullmatch(r"\[::1\]:\d+", room.pub["six_a"]), procs.transcript()
    assert re.fullmatch(r"\[::1\]:\d+", room.pub["six_b"]), procs.transcript()
    assert re.fullmatch(r"127\.0\.0\.1:\d+", room.pub["four"]), procs.transcript()
    for cid in ("six_a", "six_b", "four"):
        await server.expect_count(f"{cid} {room.pub[cid]}", 1)
    registry = room.registry()
    assert registry == [(cid, room.pub[cid]) for cid in ("six_a", "six_b", "four")], procs.transcript()
    for client in (six_a, six_b, four):
        assert await show_list(client, 3) == registry, procs.transcript()

    # IPv6 peers: the path is IPv6 (the peer's datagrams came from [::1])
    await chat(six_a, six_b, "hello over IPv6")
    await six_a.expect_line(f"path to six_b is up via {room.pub['six_b']} (attempt 1)", "err", within=5)
    await chat(six_b, six_a, "and back")

    # the IPv4-only client and a dual-stack one meet over IPv4: the dual-stack side's probes reach it
    await chat(four, six_a, "from IPv4")
    await four.expect_line(re.compile(r"path to six_a is up via 127\.0\.0\.1:\d+ \(.*\)"), "err", within=5)
    await chat(six_a, four, "to IPv4")

    for client in (six_a, six_b, four):
        await client.send("@exit")
    for client in (six_a, six_b, four):
        assert await client.wait(5) == 0, procs.transcript()
    for cid in ("six_a", "six_b", "four"):
        await server.expect_count(f"{cid} is deregistered {room.pub[cid]}", 1)


@needs_ipv6
async def test_ipv4_only_client_and_ipv6_only_peer_report_no_direct_path(procs: ProcGroup) -> None:
    """No common address family: each side says it could not deliver, and both go on working."""
    room = Room(procs)
    await room.serve()
    six = await room.join("six", "[::1]", "--bind", "::1", "--deliver-within", "1")
    four = await room.join("four", "127.0.0.1", "--bind", "127.0.0.1", "--deliver-within", "1")
    assert await show_list(four, 2) == await show_list(six, 2) == room.registry()

    await four.send("@chat six across families")
    await four.expect_line("could not deliver to six: no direct path within 1 s [across families]", "err")
    await six.send("@chat four the other way")
    await six.expect_line("could not deliver to four: no direct path within 1 s [the other way]", "err")
    assert six.count(re.compile(r"From four .*")) == four.count(re.compile(r"From six .*")) == 0

    # still registered and responsive; leaving works as usual
    assert await show_list(four, 2) == room.registry()
    for client in (six, four):
        await client.send("@exit")
        assert await client.wait(5) == 0, procs.transcript()


# --- the helpers behind it ------------------------------------------------------------------------------------


def test_sockaddr_for_maps_ipv4_on_ipv6_sockets_and_refuses_ipv6_on_ipv4_ones() -> None:
    assert sockaddr_for(socket.AF_INET6, Addr("10.0.0.1", 5)) == ("::ffff:10.0.0.1", 5)
    assert sockaddr_for(socket.AF_INET6, Addr("fd00::3", 5)) == ("fd00::3", 5)
    assert sockaddr_for(socket.AF_INET, Addr("10.0.0.1", 5)) == ("10.0.0.1", 5)
    with pytest.raises(OSError) as caught:
        sockaddr_for(socket.AF_INET, Addr("fd00::3", 5))
    assert caught.value.errno == errno.EAFNOSUPPORT
    # and what comes back in from a dual-stack socket is unmapped again
    assert to_addr(("::ffff:10.0.0.1", 5, 0, 0)) == Addr("10.0.0.1", 5)


async def test_listening_on_all_addresses_falls_back_to_ipv4_without_ipv6(monkeypatch: pytest.MonkeyPatch) -> None:
    real_bind = natchat.net.bind_udp

    async def no_ipv6(host: str, port: int) -> trio.socket.SocketType:
        if ":" in host:
            raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")
        return await real_bind(host, port)

    monkeypatch.setattr(natchat.net, "bind_udp", no_ipv6)
    notes: list[str] = []
    with await bind_listening_udp("::", 0, notes.append) as sock:
        assert sock.family == socket.AF_INET
        assert sock.getsockname()[0] == "0.0.0.0"
    assert notes == [
        "cannot listen on IPv6 (Address family not supported by protocol); listening on IPv4 only (0.0.0.0)"
    ]
    # an IPv6 address asked for by name is not silently replaced
    with pytest.raises(OSError):
        await bind_listening_udp("::1", 0, notes.append)
    assert len(notes) == 1
