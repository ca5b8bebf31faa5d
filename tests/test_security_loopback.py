"""Security as real processes on loopback: the pre-shared secret as a user meets it, and a flood from
one address while five clients keep alive and chat."""

from __future__ import annotations

import os
import re
import socket

import pytest
import trio

from .procs import ProcGroup
from .test_cli_loopback import HOST, Chat, show_list

FLOOD_DATAGRAMS = 200_000
FLOOD_SECONDS = 8.0


@pytest.fixture
def chat(procs: ProcGroup) -> Chat:
    return Chat(procs)


async def test_secret_lets_in_only_clients_that_know_it(procs: ProcGroup, chat: Chat) -> None:
    await chat.serve("--secret", "s3cret")
    (ok,) = await chat.join(["ok"], "--secret", "s3cret")
    missing = await chat.start_client("missing")
    await missing.expect_line(
        "error: the server requires a secret: give it with --secret or NATCHAT_SECRET", "err", within=10
    )
    assert await missing.wait(within=5) == 1
    wrong = await chat.start_client("wrong", "--secret", "guess")
    await wrong.expect_line("error: wrong secret: the server refused the registration", "err", within=10)
    assert await wrong.wait(within=5) == 1
    env = await procs.start("env", chat.join_args("env"), env={**os.environ, "NATCHAT_SECRET": "s3cret"})
    await env.expect_line(re.compile(r"registered; public address .*"), "err", within=10)
    await ok.send("@chat env hello")
    await env.expect_line("From ok [hello]", within=10)
    assert [cid for cid, _ in chat.registry()] == ["ok", "env"]


async def test_a_flood_from_one_address_does_not_stop_five_clients(procs: ProcGroup, chat: Chat) -> None:
    server = await chat.serve("--timeout", "3")
    clients = await chat.join([f"c{i}" for i in range(5)], "--keepalive", "0.5")
    sent = 0
    async with trio.open_nursery() as nursery:

        async def flood() -> None:
            nonlocal sent
            garbage = b'{"t":"keepalive","id":"c0","token":"ffffffffffffffffffffffffffffffff","ver":0,"rtt":0,"v":3}'
            with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, trio.move_on_after(FLOOD_SECONDS):
                await sock.bind((HOST, 0))
                target = (HOST, chat.port)
                while sent < FLOOD_DATAGRAMS:  # bounded in count and in time
                    try:
                        await sock.sendto(garbage, target)
                    except OSError:
                        await trio.sleep(0.001)
                    sent += 1
                    if sent % 256 == 0:
                        await trio.lowlevel.checkpoint()

        nursery.start_soon(flood)
        await trio.sleep(1.0)  # the flood is on: chat in the middle of it
        for i, client in enumerate(clients):
            await client.send(f"@chat c{(i + 1) % 5} during the flood {i}")
        for i, client in enumerate(clients):
            await client.expect_line(f"From c{(i - 1) % 5} [during the flood {(i - 1) % 5}]", within=FLOOD_SECONDS)
    assert sent > 10_000
    # nobody disappeared (the timeout is 3 s, the flood lasted longer), and every list is whole
    assert not [line for line in server.lines() if "disappeared" in line], procs.transcript()
    assert len(chat.registry()) == 5
    for client in clients:
        assert await show_list(client) == chat.registry()  # all five, in the server's order
