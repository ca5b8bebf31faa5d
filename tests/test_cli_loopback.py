"""``natchat serve`` and ``natchat join`` as real processes talking over loopback, checked by what a user sees.

Everything binds to 127.0.0.1 only. Every wait is bounded; a failing wait shows the transcript of every
process in the test (see :mod:`tests.procs`). No sleeps to let things settle: tests wait for what the
processes print, or poll ``@show_list`` (a few times a second, within a bound) until lists converge.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import sys
from collections.abc import Sequence

import pytest
import trio

from .procs import Proc, ProcGroup, free_udp_port

NATCHAT = [sys.executable, "-m", "natchat"]
HOST = "127.0.0.1"

REGISTERED = re.compile(r"registered; public address (\S+)")
LIST_LINE = re.compile(r"(\S+) (\S+:\d+)")
CHAT_LINE = re.compile(r"From (\S+) \[(.*)\]")
WRONG = "wrong instruction retype"
END_OF_LIST = "@end_of_list"
"""Not a command: the client answers it with ``wrong instruction retype``, which marks where a list ends."""

Listing = list[tuple[str, str]]


# --- fixtures and helpers -----------------------------------------------------------------------------------


class Chat:
    """A server on a free loopback port and the clients of one test."""

    def __init__(self, procs: ProcGroup) -> None:
        self.procs = procs
        self.port = free_udp_port()
        self.server_addr = f"{HOST}:{self.port}"
        self.server: Proc | None = None
        self.pub: dict[str, str] = {}
        """Each client's public address, as it printed it once registered."""

    async def serve(self, *options: str, name: str = "server") -> Proc:
        self.server = await self.procs.start(
            name, [*NATCHAT, "serve", "--host", HOST, "--port", str(self.port), *options]
        )
        return self.server

    def join_args(self, client_id: str | None, *options: str, port: int = 0) -> list[str]:
        args = [*NATCHAT, "join"] if client_id is None else [*NATCHAT, "join", client_id]
        return [*args, "--server", self.server_addr, "--bind", HOST, "--port", str(port), *options]

    async def start_client(self, client_id: str, *options: str, name: str | None = None, port: int = 0) -> Proc:
        return await self.procs.start(name or client_id, self.join_args(client_id, *options, port=port))

    async def join(
        self, ids: Sequence[str], *options: str, ports: dict[str, int] | None = None, within: float = 10.0
    ) -> list[Proc]:
        """Start clients ``ids`` all at once and wait until each says it is registered."""
        started = [await self.start_client(cid, *options, port=(ports or {}).get(cid, 0)) for cid in ids]
        async with trio.open_nursery() as nursery:
            for cid, proc in zip(ids, started, strict=True):
                nursery.start_soon(self._registered, cid, proc, within)
        return started

    async def _registered(self, client_id: str, proc: Proc, within: float) -> None:
        match = await proc.expect_line(REGISTERED, "err", within=within)
        self.pub[client_id] = match[1]

    def registry(self) -> Listing:
        """The registry as the server's output tells it, in registration order."""
        assert self.server is not None
        return server_registry(self.server)


def server_registry(server: Proc) -> Listing:
    registry: dict[str, str] = {}
    for line in server.lines():
        if m := re.fullmatch(r"(\S+) is (?:deregistered|disappeared) (\S+)", line):
            registry.pop(m[1], None)
        elif m := re.fullmatch(r"(\S+) moved (\S+) -> (\S+)", line):
            registry[m[1]] = m[3]
        elif m := LIST_LINE.fullmatch(line):
            registry[m[1]] = m[2]
    return list(registry.items())


@pytest.fixture
def chat(procs: ProcGroup) -> Chat:
    return Chat(procs)


async def show_list(client: Proc, within: float = 5.0) -> Listing:
    """What ``@show_list`` prints right now, as (id, address) pairs (chat lines in between are skipped)."""
    start = client.mark()
    await client.send("@show_list")
    await client.send(END_OF_LIST)
    await client.expect_line(WRONG, within=within)
    listing: Listing = []
    for line in client.lines()[start : client.position() - 1]:
        if m := LIST_LINE.fullmatch(line):
            listing.append((m[1], m[2]))
        else:
            assert CHAT_LINE.fullmatch(line), f"unexpected line {line!r} in @show_list of {client.name}"
    return listing


async def converge(procs: ProcGroup, clients: Sequence[Proc], expected: Listing, within: float = 10.0) -> None:
    """Poll every client's ``@show_list`` until each equals ``expected``."""
    lists: dict[str, Listing] = {}

    async def one(client: Proc) -> None:
        lists[client.name] = await show_list(client)

    try:
        with trio.fail_after(within):
            while True:
                async with trio.open_nursery() as nursery:
                    for client in clients:
                        nursery.start_soon(one, client)
                if all(listing == expected for listing in lists.values()):
                    return
                await trio.sleep(0.2)  # poll interval, not a settling delay
    except trio.TooSlowError:
        wrong = {name: listing for name, listing in lists.items() if listing != expected}
        raise AssertionError(
            f"lists did not converge within {within} s\nexpected {expected}\nbut {wrong}\n{procs.transcript()}"
        ) from None


async def chat_and_expect(sender: Proc, receiver: Proc, text: str) -> None:
    """``sender`` chats ``text`` to ``receiver``, which must show it (process names are the client IDs)."""
    await sender.send(f"@chat {receiver.name} {text}")
    await receiver.expect_count(f"From {sender.name} [{text}]", 1, within=10)


def chat_lines(client: Proc) -> list[str]:
    return [line for line in client.lines() if CHAT_LINE.fullmatch(line)]


# --- 1. registration and lists --------------------------------------------------------------------------------

IDS5 = [f"client{k}" for k in range(1, 6)]


async def test_five_clients_register_and_lists_match_the_server(procs: ProcGroup, chat: Chat) -> None:
    server = await chat.serve()
    # explicit local ports, so the address the server reports can be checked against one known beforehand
    ports = {cid: free_udp_port() for cid in IDS5}
    clients = await chat.join(IDS5, ports=ports)

    for cid in IDS5:
        assert chat.pub[cid] == f"{HOST}:{ports[cid]}", procs.transcript()
    # the server announces each client exactly once, at the (source) address it registered from
    async with trio.open_nursery() as nursery:
        for cid in IDS5:
            nursery.start_soon(lambda cid: server.expect_count(f"{cid} {chat.pub[cid]}", 1, within=5), cid)
    registry = chat.registry()
    assert sorted(registry) == sorted(chat.pub.items()), procs.transcript()
    for cid in IDS5:
        assert server.count(re.compile(rf"{cid} .*")) == 1, procs.transcript()
    # every client lists everyone (itself included) in the server's registration order
    await converge(procs, clients, registry)


# --- 2. chat ------------------------------------------------------------------------------------------------------


async def test_chat_ring_and_order(procs: ProcGroup, chat: Chat) -> None:
    await chat.serve()
    clients = await chat.join(IDS5)
    await converge(procs, clients, chat.registry())

    ring = [(clients[k], clients[(k + 1) % 5]) for k in range(5)]
    for sender, receiver in ring:  # all five at once
        await sender.send(f"@chat {receiver.name} ring from {sender.name}")
    async with trio.open_nursery() as nursery:
        for sender, receiver in ring:
            nursery.start_soon(
                lambda s, r: r.expect_count(f"From {s.name} [ring from {s.name}]", 1, within=10), sender, receiver
            )

    # back to back, on a path that is up (client1 -> client2) and on one that is not yet (client3 -> client1)
    c1, c2, c3 = clients[0], clients[1], clients[2]
    await c1.send("@chat client2 first")
    await c1.send("@chat client2 second")
    await c3.send("@chat client1 one")
    await c3.send("@chat client1 two")
    await c3.send("@chat client1 three")
    await c2.expect_count("From client1 [second]", 1, within=10)
    await c1.expect_count("From client3 [three]", 1, within=10)
    # a last round trip on every path used, so that a late duplicate of anything above would be here by now
    for sender, receiver in [*ring, (c3, c1)]:
        await sender.send(f"@chat {receiver.name} last from {sender.name}")
    for sender, receiver in [*ring, (c3, c1)]:
        await receiver.expect_count(f"From {sender.name} [last from {sender.name}]", 1, within=10)

    expected = {
        "client1": ["From client5 [ring from client5]", "From client3 [one]", "From client3 [two]",
                    "From client3 [three]", "From client5 [last from client5]", "From client3 [last from client3]"],
        "client2": ["From client1 [ring from client1]", "From client1 [first]", "From client1 [second]",
                    "From client1 [last from client1]"],
        "client3": ["From client2 [ring from client2]", "From client2 [last from client2]"],
        "client4": ["From client3 [ring from client3]", "From client3 [last from client3]"],
        "client5": ["From client4 [ring from client4]", "From client4 [last from client4]"],
    }  # fmt: skip
    for client in clients:
        got = chat_lines(client)
        want = expected[client.name]
        # each message shown exactly once, and each sender's messages in the order sent
        assert sorted(got) == sorted(want), procs.transcript()
        for prefix in {f"From {line.split()[1]} " for line in want}:
            in_order = [line for line in want if line.startswith(prefix)]
            assert [line for line in got if line.startswith(prefix)] == in_order, procs.transcript()
        assert "could not deliver" not in client.text("err"), procs.transcript()


# --- 3. @exit --------------------------------------------------------------------------------------------------------


async def test_exit_deregisters_and_lists_update(procs: ProcGroup, chat: Chat) -> None:
    server = await chat.serve()
    clients = await chat.join(IDS5)
    before = chat.registry()
    await converge(procs, clients, before)

    leaving = [clients[1], clients[3]]
    exited_within: dict[str, float] = {}

    async def leave(client: Proc) -> None:
        await client.send("@exit")
        sent = trio.current_time()
        status = await client.wait(within=5)
        exited_within[client.name] = trio.current_time() - sent
        assert status == 0, procs.transcript()

    async with trio.open_nursery() as nursery:
        for client in leaving:
            nursery.start_soon(leave, client)
    for client in leaving:
        await server.expect_count(f"{client.name} is deregistered {chat.pub[client.name]}", 1, within=5)
        assert exited_within[client.name] <= 1.0, f"{exited_within}\n{procs.transcript()}"

    staying = [c for c in clients if c not in leaving]
    expected = [(cid, addr) for cid, addr in before if cid not in ("client2", "client4")]
    assert chat.registry() == expected, procs.transcript()
    await converge(procs, staying, expected)


# --- 4. a client that dies -------------------------------------------------------------------------------------


async def test_killed_client_disappears(procs: ProcGroup, chat: Chat) -> None:
    timeout = 2.0
    server = await chat.serve("--timeout", str(timeout))
    clients = await chat.join(["client1", "client2", "client3"], "--keepalive", "0.5")
    joined = trio.current_time()
    before = chat.registry()
    await converge(procs, clients, before)

    victim = clients[1]
    victim.kill()
    killed = trio.current_time()
    await server.expect_line(f"client2 is disappeared {chat.pub['client2']}", within=timeout + 8)
    elapsed = trio.current_time() - killed
    # it was last heard at most a keepalive (0.5 s) before it died
    assert timeout / 2 <= elapsed <= timeout + 1.0, f"disappeared after {elapsed:.2f} s\n{procs.transcript()}"
    assert await victim.wait(within=5) == -signal.SIGKILL

    staying = [clients[0], clients[2]]
    expected = [(cid, addr) for cid, addr in before if cid != "client2"]
    await converge(procs, staying, expected)
    # the living ones keep themselves alive: still there well over a timeout after they registered
    await trio.sleep_until(joined + 2 * timeout)  # (time must pass for this to mean anything)
    assert chat.registry() == expected, procs.transcript()
    assert server.count(re.compile(r".* is (disappeared|deregistered) .*")) == 1, procs.transcript()


# --- 5. garbage at the server --------------------------------------------------------------------------------


def _register(client_id: str, **extra: object) -> dict[str, object]:
    return {"v": 3, "t": "register", "id": client_id, "priv": [HOST, 40000], **extra}


def _json(obj: object) -> bytes:
    return json.dumps(obj).encode()


def malformed_datagrams() -> dict[str, bytes]:
    """Each would register a distinctive ID if the server took it for valid, where that is possible."""
    oversize = _json(_register("oversize"))
    oversize = oversize[:-1] + b" " * (1500 - len(oversize)) + b"}"
    assert len(oversize) == 1500
    return {
        "not UTF-8": b'{"v":3,"t":"register","id":"latin","priv":["127.0.0.1",40000],"x":"\xff\xfe"}',
        "binary": bytes(range(256)),
        "empty": b"",
        "invalid JSON": b'{"v":3,"t":"register","id":"broken",',
        "not an object": b"[1, 2, 3]",
        "unknown type": _json({"v": 3, "t": "hello", "id": "unknowntype"}),
        "no type": _json({"v": 3, "id": "notype", "priv": [HOST, 40000]}),
        "missing field": _json({"v": 3, "t": "register", "id": "nopriv"}),
        "unknown field": _json(_register("extrafield", extra=1)),
        "oversize": oversize,
        "ID with a space": _json(_register("a b")),
        "ID of 40 characters": _json(_register("x" * 40)),
        "empty ID": _json(_register("")),
        "wrong version": _json({**_register("version1"), "v": 1}),
        "no version": _json({k: v for k, v in _register("noversion").items() if k != "v"}),
        "address not an IP": _json(_register("badpriv", priv=["example.com", 40000])),
        "port out of range": _json(_register("badport", priv=[HOST, 70000])),
        "a message for clients": _json({"v": 3, "t": "alive", "ver": 0, "pub": [HOST, 1]}),
    }


async def test_malformed_datagrams_are_dropped_silently(procs: ProcGroup, chat: Chat) -> None:
    server = await chat.serve("--verbose")
    clients = await chat.join(["client1", "client2"])
    before = chat.registry()
    await converge(procs, clients, before)

    bad = malformed_datagrams()
    with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        await sock.bind((HOST, 0))
        me = "{}:{}".format(*sock.getsockname())
        for data in bad.values():
            await sock.sendto(data, (HOST, chat.port))
        # the server drops every one of them (verbose mode says so) ...
        dropped = re.compile(rf"dropped datagram from {re.escape(me)}: (malformed|unexpected): .*")
        await server.expect_count(dropped, len(bad), within=10)
        # ... and answers none: the first reply this socket gets is to a (well-formed) keepalive sent after them
        await sock.sendto(
            _json({"v": 3, "t": "keepalive", "id": "ghost", "token": "0" * 32, "ver": 0, "rtt": 0.0}), (HOST, chat.port)
        )
        with trio.fail_after(5):
            data, source = await sock.recvfrom(4096)
        assert source == (HOST, chat.port)
        reply = json.loads(data)
        assert (reply["t"], reply.get("code")) == ("error", "unknown_session"), reply
        with trio.move_on_after(0.3):  # and nothing after it
            data, _ = await sock.recvfrom(4096)
            raise AssertionError(f"unexpected reply {data!r}")
    assert server.running, procs.transcript()

    # the server still serves: the lists are untouched, chat works, a newcomer can register
    assert chat.registry() == before, procs.transcript()
    await converge(procs, clients, before)
    await chat_and_expect(clients[0], clients[1], "still here")
    (client3,) = await chat.join(["client3"])
    everyone = [*before, ("client3", chat.pub["client3"])]
    assert chat.registry() == everyone, procs.transcript()
    await converge(procs, [*clients, client3], everyone)
    await chat_and_expect(client3, clients[0], "hello newcomer")


# --- 6. a taken ID ------------------------------------------------------------------------------------------------


async def test_duplicate_id_is_refused(procs: ProcGroup, chat: Chat) -> None:
    server = await chat.serve()
    (original,) = await chat.join(["client1"])
    duplicate = await chat.start_client("client1", name="client1-again")

    await duplicate.expect_line(re.compile(r"error: .*\bclient1\b.*"), "err", within=10)
    assert await duplicate.wait(within=5) != 0, procs.transcript()
    assert not REGISTERED.search(duplicate.text("err")), procs.transcript()

    # the original is still registered, at its address, and still works
    assert original.running
    assert server.lines() == [f"client1 {chat.pub['client1']}"], procs.transcript()
    (client2,) = await chat.join(["client2"])
    await converge(procs, [original, client2], [("client1", chat.pub["client1"]), ("client2", chat.pub["client2"])])
    await chat_and_expect(client2, original, "are you the real one")


# --- 7. asking for the ID ---------------------------------------------------------------------------------------


async def test_id_read_from_stdin(procs: ProcGroup, chat: Chat) -> None:
    server = await chat.serve()
    client = await procs.start("client9", chat.join_args(None))
    await client.expect_text("Enter ID : ", within=10)
    await client.send("client9\n@show_list")
    await client.close_stdin()

    pub = (await client.expect_line(REGISTERED, "err", within=10))[1]
    assert await client.wait(within=5) == 0, procs.transcript()
    out = client.text("out")
    assert out.startswith("Enter ID : "), procs.transcript()
    assert out.removeprefix("Enter ID : ").splitlines() == [f"client9 {pub}"], procs.transcript()
    await server.expect_line(f"client9 {pub}", within=5)
    await server.expect_line(f"client9 is deregistered {pub}", within=5)


# --- 8. ways to leave ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["end of input", "SIGINT", "SIGTERM", "SIGHUP"])
async def test_leaving_deregisters(procs: ProcGroup, chat: Chat, how: str) -> None:
    server = await chat.serve()
    client, other = await chat.join(["client1", "client2"])
    await converge(procs, [client, other], chat.registry())

    if how == "end of input":
        await client.close_stdin()
    else:
        client.send_signal(signal.Signals[how])
    asked = trio.current_time()
    await server.expect_line(f"client1 is deregistered {chat.pub['client1']}", within=5)
    assert await client.wait(within=5) == 0, procs.transcript()
    assert trio.current_time() - asked <= 2.0, procs.transcript()
    await converge(procs, [other], [("client2", chat.pub["client2"])])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_server_stops_cleanly_on_a_signal(procs: ProcGroup, chat: Chat, sig: signal.Signals) -> None:
    server = await chat.serve()
    await chat.join(["client1"])  # so it is surely up and serving
    server.send_signal(sig)
    assert await server.wait(within=5) == 0, procs.transcript()
    # nothing on stderr but where it listened: no traceback, no error
    (line,) = server.text("err").splitlines()
    assert re.fullmatch(r"natchat server on UDP \S+:\d+; clients disappear after \S+ s", line), procs.transcript()


# --- 9. bad commands ---------------------------------------------------------------------------------------------


async def test_bad_commands(procs: ProcGroup, chat: Chat) -> None:
    await chat.serve()
    client, other = await chat.join(["client1", "client2"])
    await converge(procs, [client, other], chat.registry())

    start = client.mark()
    await client.send("@chat nobody hi")
    await client.expect_line(re.compile(r"error: .*\bnobody\b.*"), "err", within=5)
    await client.send("hello")
    await client.expect_line(WRONG, within=5)
    assert client.lines()[start:] == [WRONG], procs.transcript()
    # and it goes on working
    assert await show_list(client) == chat.registry()
    await chat_and_expect(client, other, "after the mistakes")
    assert client.running


# --- 10. startup errors ----------------------------------------------------------------------------------------------


async def test_no_server_gives_up(procs: ProcGroup, chat: Chat) -> None:
    client = await procs.start("x", chat.join_args("x", "--register-within", "1"))  # nothing listens on chat.port
    status = await client.wait(within=10)
    assert client.exited_at is not None
    elapsed = client.exited_at - client.started_at
    assert status != 0, procs.transcript()
    assert re.search(rf"^error: .*{re.escape(chat.server_addr)}.*$", client.text("err"), re.M), procs.transcript()
    assert 1.0 <= elapsed <= 3.0, f"gave up after {elapsed:.2f} s\n{procs.transcript()}"


@pytest.mark.parametrize("bad_id", ["a b", "x" * 33, "émile", "a/b"])
async def test_invalid_id_is_a_usage_error(procs: ProcGroup, chat: Chat, bad_id: str) -> None:
    client = await procs.start("bad", chat.join_args(bad_id))
    assert await client.wait(within=10) == 2, procs.transcript()
    assert re.search(rf"^error: .*{re.escape(repr(bad_id))}.*$", client.text("err"), re.M), procs.transcript()


async def test_server_port_in_use(procs: ProcGroup, chat: Chat) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as blocker:
        blocker.bind((HOST, chat.port))
        server = await chat.serve()
        status = await server.wait(within=10)
    assert status != 0, procs.transcript()
    assert re.search(rf"^error: .*{chat.port}.*$", server.text("err"), re.M), procs.transcript()
    assert "Traceback" not in server.text("err"), procs.transcript()


# --- 11. the server restarts ---------------------------------------------------------------------------------


async def test_clients_rejoin_a_restarted_server(procs: ProcGroup, chat: Chat) -> None:
    old = await chat.serve(name="server")
    clients = await chat.join(["client1", "client2", "client3"], "--keepalive", "0.5")
    await converge(procs, clients, chat.registry())
    await chat_and_expect(clients[0], clients[1], "before")

    old.kill()
    assert await old.wait(within=5) == -signal.SIGKILL
    new = await chat.serve(name="server-restarted")
    async with trio.open_nursery() as nursery:
        for client in clients:
            nursery.start_soon(lambda c: c.expect_line(re.compile(r".*registered again.*"), "err", within=15), client)
    await new.expect_count(LIST_LINE, 3, within=5)
    registry = server_registry(new)
    assert sorted(registry) == sorted(chat.pub.items()), procs.transcript()
    await converge(procs, clients, registry)
    await chat_and_expect(clients[0], clients[1], "again")
    await chat_and_expect(clients[1], clients[0], "after")
    await chat_and_expect(clients[2], clients[1], "after too")


async def test_chat_resumes_on_a_path_up_before_the_server_restarted(procs: ProcGroup, chat: Chat) -> None:
    old = await chat.serve(name="server")
    sender, receiver = await chat.join(["client1", "client2"], "--keepalive", "0.5")
    await converge(procs, [sender, receiver], chat.registry())
    await chat_and_expect(sender, receiver, "before")

    # the server restarts, and the receiver happens to register with the new one first
    sender.send_signal(signal.SIGSTOP)
    old.kill()
    await old.wait(within=5)
    new = await chat.serve(name="server-restarted")
    await receiver.expect_line(re.compile(r".*registered again.*"), "err", within=10)
    await new.expect_line(f"client2 {chat.pub['client2']}", within=5)
    sender.send_signal(signal.SIGCONT)
    await sender.expect_line(re.compile(r".*registered again.*"), "err", within=10)
    await converge(procs, [sender, receiver], server_registry(new))

    await sender.send("@chat client2 after")
    await receiver.expect_count("From client1 [after]", 1, within=6)


# --- seed parity: @all, @help, --max-clients, --json ------------------------------------------------


async def test_all_goes_to_everyone_else_marked_as_to_all(procs: ProcGroup, chat: Chat) -> None:
    await chat.serve()
    clients = await chat.join(["client1", "client2", "client3"])
    await converge(procs, clients, chat.registry())
    await clients[0].send("@all hello everyone")
    for receiver in clients[1:]:
        await receiver.expect_count("From client1 to all [hello everyone]", 1, within=10)
    assert chat_lines(clients[0]) == []  # not to itself


async def test_help_lists_every_command(procs: ProcGroup, chat: Chat) -> None:
    await chat.serve()
    (client,) = await chat.join(["client1"])
    start = client.mark()
    await client.send("@help")
    await client.expect_count(re.compile(r"@exit\s+.+"), 1, within=5)
    commands = [line.split()[0] for line in client.lines()[start:]]
    assert commands == ["@show_list", "@chat", "@all", "@path", "@whois", "@trust", "@help", "@exit"], (
        procs.transcript()
    )


async def test_full_server_refuses_with_a_clear_error(procs: ProcGroup, chat: Chat) -> None:
    await chat.serve("--max-clients", "2")
    await chat.join(["client1", "client2"])
    third = await chat.start_client("client3")
    await third.expect_line(re.compile(r"error: the server is full: 2 clients are registered"), "err", within=5)
    assert await third.wait(within=5) != 0
    assert sorted(cid for cid, _ in chat.registry()) == ["client1", "client2"]


async def test_json_event_streams(procs: ProcGroup, chat: Chat) -> None:
    server = await chat.serve("--json")
    a = await chat.start_client("client1", "--json")
    b = await chat.start_client("client2", "--json")

    def events(proc: Proc) -> list[dict[str, object]]:
        return [json.loads(line) for line in proc.lines()]  # every stdout line is one JSON object

    async def expect(proc: Proc, **fields: object) -> dict[str, object]:
        def found() -> dict[str, object] | None:
            return next((e for e in events(proc) if fields.items() <= e.items()), None)

        await procs.wait_until(lambda: found() is not None, 10, f"{proc.name}: an event with {fields}")
        event = found()
        assert event is not None
        return event

    await expect(server, event="registered", id="client1")
    await expect(server, event="registered", id="client2")
    joined = await expect(a, event="registered", id="client1", again=False)
    assert re.fullmatch(r"127\.0\.0\.1:\d+", str(joined["public"]))

    def lists_client2() -> bool:  # in the first snapshot or in a later change
        return any(e["event"] == "list" and "client2" in e["joined"] for e in events(a))  # type: ignore[operator]

    await procs.wait_until(lists_client2, 10, "client1: a list event with client2")
    await a.send("@chat client2 hi in json")
    await expect(b, event="message", **{"from": "client1"}, text="hi in json", to_all=False)
    await a.send("@all to everyone")
    await expect(b, event="message", **{"from": "client1"}, text="to everyone", to_all=True)
    await a.send("@show_list")
    listing = await expect(a, event="show_list")
    assert sorted(p["id"] for p in listing["peers"]) == ["client1", "client2"]  # type: ignore[attr-defined, index]
    assert all(re.fullmatch(r"127\.0\.0\.1:\d+", p["public"]) for p in listing["peers"])  # type: ignore[attr-defined, index]
    await a.send("@nonsense")
    await expect(a, event="error", code="wrong_instruction")
    await a.send("@chat ghost boo")
    await expect(a, event="error", code="unknown_peer")
    await a.send("@exit")
    await expect(server, event="deregistered", id="client1")
    await expect(b, event="list", left=["client1"])
    assert await a.wait(within=5) == 0
    for proc in (server, a, b):
        assert all(isinstance(e.get("event"), str) for e in events(proc))
