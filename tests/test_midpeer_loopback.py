"""The midPeer as real processes on loopback: ``serve --midpeer``, standalone ``natchat midpeer``,
``join --midpeer``, ``--relay-only``, ``--direct-only`` and ``@path``, checked by what a user sees.

Loopback always has a direct path, so the relay is forced with ``--relay-only`` here; the automatic
fallback and the upgrade back to direct are proven on real NATs in tests/mininet/test_midpeer.py and,
with explicit time, in tests/test_proto_midpeer.py.
"""

from __future__ import annotations

import re

import pytest

from .procs import ProcGroup, free_udp_port
from .test_cli_loopback import HOST, NATCHAT, Chat


@pytest.fixture
def chat(procs: ProcGroup) -> Chat:
    return Chat(procs)


PATH_LINE = re.compile(r"(\S+): (lan|direct|relay) via (?:the midPeer )?(\S+), rtt ([0-9.]+) ms")


async def test_standalone_midpeer_relays_and_path_says_so(procs: ProcGroup, chat: Chat) -> None:
    server = await chat.serve()
    port = free_udp_port()
    midpeer = await procs.start("midpeer", [*NATCHAT, "midpeer", "--host", HOST, "--port", str(port)])
    await midpeer.expect_line(re.compile(r"natchat midPeer on UDP .*"), "err", within=10)
    where = f"{HOST}:{port}"
    a, b = await chat.join(["a", "b"], "--midpeer", where)
    await a.send("@chat b hello through the midPeer")
    await b.expect_line("From a [hello through the midPeer]", within=10)  # direct: loopback has a path
    assert not [line for line in midpeer.lines() if line.startswith("relaying")]
    c = await chat.start_client("c", "--midpeer", where, "--relay-only")
    await c.expect_line(re.compile(r"registered; .*"), "err", within=10)
    await c.send("@chat b relayed")
    await b.expect_line("From c [relayed]", within=10)
    await midpeer.expect_line("relaying c -> b", within=5)
    await c.send("@path b")
    match = await c.expect_line(PATH_LINE, within=5)
    assert (match[1], match[2], match[3]) == ("b", "relay", where)
    # the server introduced nobody and relayed nothing; the midPeer keeps no list of its own
    assert not [line for line in server.lines() if line.startswith("relaying")]
    await a.send("@path b")
    match = await a.expect_line(PATH_LINE, within=5)
    assert (match[1], match[2]) == ("b", "direct")


async def test_serve_midpeer_relays_for_relay_only_clients(procs: ProcGroup, chat: Chat) -> None:
    server = await chat.serve("--midpeer")
    await server.expect_line(re.compile(r"natchat server with midPeer relay on UDP .*"), "err", within=10)
    a, b = await chat.join(["a", "b"], "--relay-only")
    await a.send("@chat b one")
    await b.expect_line("From a [one]", within=10)
    await server.expect_line("relaying a -> b", within=5)
    await b.send("@chat a two")
    await a.expect_line("From b [two]", within=10)
    await server.expect_line("relaying b -> a", within=5)
    await a.expect_line(
        re.compile(rf"no direct path to b yet; relaying through the midPeer {re.escape(chat.server_addr)}"),
        "err",
        within=5,
    )


async def test_path_without_a_path_and_usage_errors(procs: ProcGroup, chat: Chat) -> None:
    await chat.serve("--midpeer")
    a, _ = await chat.join(["a", "b"])
    await a.send("@path b")
    await a.expect_line("b: no path yet (nothing sent to it)", within=5)
    await a.send("@path")
    await a.expect_line("usage: @path <client id>", "err", within=5)
    await a.send("@path nobody")
    await a.expect_line("error: nobody is not in the list (see @show_list)", "err", within=5)
    await a.send("@path a")
    await a.expect_line("error: a is you; ask about another client", "err", within=5)


async def test_direct_only_and_relay_only_exclude_each_other(procs: ProcGroup, chat: Chat) -> None:
    proc = await procs.start("client", chat.join_args("a", "--direct-only", "--relay-only"))
    await proc.expect_line("error: --direct-only and --relay-only exclude each other", "err", within=10)
    assert await proc.wait(within=10) == 2


async def test_bad_midpeer_address_is_a_usage_error(procs: ProcGroup, chat: Chat) -> None:
    proc = await procs.start("client", chat.join_args("a", "--midpeer", "not a host:99999"))
    await proc.expect_line(re.compile(r"error: --midpeer: .+"), "err", within=10)
    assert await proc.wait(within=10) == 2
