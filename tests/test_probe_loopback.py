"""``natchat probe-mapping`` and the server's probe responder over real loopback sockets.

There is no NAT on loopback, so every idle time survives and nothing is filtered: these tests check that
the pieces talk (demultiplexing on the server's port, the second port, the CLI's output and errors), not
NAT behaviour, which tests/test_probe.py (a model) and tests/mininet/test_probe.py (real NATs) cover.
Every wait is bounded by an absolute ``fail_after``; no test asserts how fast anything is.
"""

from __future__ import annotations

import io
import json
import os
import pty
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence

import pytest
import trio

from natchat.net import bind_udp, to_addr
from natchat.probe import ProbeClientConfig, ProgressBar, bind_probe_port, probe_mapping, serve_probes
from natchat.proto import stun, wire
from natchat.proto.probe import Kind, ProbeConfig, ProbeFailed, Progress
from natchat.proto.wire import Addr
from natchat.server import ServerConfig, serve

NATCHAT = [sys.executable, "-m", "natchat"]
HOST = "127.0.0.1"


def _ignore(_: object) -> None:
    pass


@pytest.fixture
async def server(nursery: trio.Nursery) -> AsyncIterator[Addr]:
    yield await nursery.start(serve, ServerConfig(host=HOST, port=0), _ignore)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


async def run_natchat(args: Sequence[str], *, within: float = 60) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(within):
        return await trio.run_process(
            [*NATCHAT, *args], capture_stdout=True, capture_stderr=True, check=False, stdin=b""
        )


async def stun_answer(addr: Addr, *, within: float = 15) -> Addr:
    """Ask ``addr`` for our mapped address over STUN until it answers (a started server does)."""
    with trio.fail_after(within), trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        await sock.bind((HOST, 0))
        txid = os.urandom(12)
        while True:
            await sock.sendto(stun.binding_request(txid), addr.as_tuple())
            with trio.move_on_after(0.2):
                data, _ = await sock.recvfrom(2048)
                value = stun.parse(data).attribute(stun.XOR_MAPPED_ADDRESS)
                assert value is not None
                return stun.decode_xor_address(value, txid)


# --- in-process ---------------------------------------------------------------------------------------------


async def test_probe_without_a_nat_finds_nothing_expiring_and_nothing_filtered(server: Addr) -> None:
    config = ProbeClientConfig(server=server, probe=ProbeConfig(max_idle=2))
    with trio.fail_after(30):
        report = await probe_mapping(config)
    assert report.nat is False
    assert report.public == report.local
    assert report.mapping == ("endpoint-independent", "address-dependent")
    assert report.filtering == ("endpoint-independent", "address-dependent")
    assert [(lt.kind, lt.survived, lt.expired) for lt in report.lifetimes] == [
        (Kind.OUTBOUND, 2.0, None),
        (Kind.REPLY, 2.0, None),
        (Kind.STREAM, 2.0, None),
    ]
    assert report.alt_port != server.port


async def test_progress_is_reported_while_probing_and_once_more_at_the_end(server: Addr) -> None:
    seen: list[Progress] = []
    config = ProbeClientConfig(server=server, probe=ProbeConfig(kinds=(Kind.OUTBOUND,), max_idle=1))
    with trio.fail_after(30):
        await probe_mapping(config, on_progress=seen.append, progress_every=0.05)
    assert len(seen) >= 3
    assert seen[0].kinds == ()  # before the server answered
    assert seen[-1].kinds == ((Kind.OUTBOUND, 1.0, True),)


async def test_a_silent_port_is_a_clear_failure() -> None:
    config = ProbeClientConfig(server=Addr(HOST, free_port()), probe=ProbeConfig(answer_within=1.0))
    with trio.fail_after(30), pytest.raises(ProbeFailed, match=r"no answer from 127\.0\.0\.1:\d+ within 1 s"):
        await probe_mapping(config)


async def test_rendezvous_traffic_still_reaches_the_registry(server: Addr) -> None:
    with trio.fail_after(10), trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        await sock.bind((HOST, 0))
        me = to_addr(sock.getsockname())
        await sock.sendto(wire.encode(wire.Register(id="alice", priv=me, key=bytes(range(32)))), server.as_tuple())
        data, _ = await sock.recvfrom(2048)
        challenge = wire.decode(data)
        assert isinstance(challenge, wire.Challenge)
        again = wire.Register(id="alice", priv=me, key=bytes(range(32)), cookie=challenge.cookie)
        await sock.sendto(wire.encode(again), server.as_tuple())
        data, _ = await sock.recvfrom(2048)
    msg = wire.decode(data)
    assert isinstance(msg, wire.Registered) and msg.pub == me


async def test_the_probe_port_defaults_to_the_main_port_minus_one_and_falls_back_if_taken(
    nursery: trio.Nursery,
) -> None:
    notes: list[str] = []
    for _ in range(20):  # find a main port whose neighbour below is free, and take the neighbour
        main = await bind_udp(HOST, 0)
        port = main.getsockname()[1]
        blocker = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            await blocker.bind((HOST, port - 1))
        except OSError:
            main.close()
            blocker.close()
            continue
        break
    else:
        pytest.skip("no pair of adjacent free UDP ports found")
    with main, blocker:
        alt = await bind_probe_port(main, None, notes.append)
        service = await nursery.start(serve_probes, main, alt)
        assert service.alt_port not in (port - 1, port)
        assert notes == [
            f"probe port {port - 1} is in use; mapping probes use port {service.alt_port} (see --probe-port)"
        ]
        nursery.cancel_scope.cancel()


# --- the command line --------------------------------------------------------------------------------------


async def test_cli_json_answer(server: Addr) -> None:
    result = await run_natchat(["probe-mapping", "--server", str(server), "--max", "1", "--kind", "reply", "--json"])
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b""  # no progress bar when standard error is not a terminal
    doc = json.loads(result.stdout)
    assert doc["server"] == str(server)
    assert doc["nat"] is False
    assert [(lt["kind"], lt["survived"], lt["expired"], lt["longer_than_max"]) for lt in doc["lifetimes"]] == [
        ("reply", 1.0, None, True)
    ]
    assert doc["filtering"] == ["endpoint-independent", "address-dependent"]


async def test_cli_text_answer(server: Addr) -> None:
    result = await run_natchat(["probe-mapping", "--server", str(server), "--max", "1", "--kind", "outbound"])
    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode().splitlines()
    assert lines[0].startswith(f"server {server} (second port ")
    assert "no NAT on the way" in lines[1]
    assert any("after one outbound datagram: longer than 1 s" in line for line in lines)


async def test_cli_shows_a_progress_bar_on_a_terminal(server: Addr) -> None:
    controller, terminal = pty.openpty()
    try:
        with trio.fail_after(60):
            result = await trio.run_process(
                [*NATCHAT, "probe-mapping", "--server", str(server), "--max", "1", "--kind", "outbound"],
                stderr=terminal,
                capture_stdout=True,
                check=False,
                stdin=b"",
            )
        os.set_blocking(controller, False)
        shown = os.read(controller, 65536).decode()
    finally:
        os.close(controller)
        os.close(terminal)
    assert result.returncode == 0
    assert "probing [" in shown and "outbound" in shown
    assert shown.endswith("\r\x1b[K")  # the bar is cleared before the answer is printed
    assert b"probing" not in result.stdout


async def test_cli_unreachable_server_is_one_line_and_status_1() -> None:
    result = await run_natchat(["probe-mapping", "--server", f"{HOST}:{free_port()}", "--max", "1"])
    assert result.returncode == 1
    err = result.stderr.decode().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no answer from 127.0.0.1:")
    assert result.stdout == b""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max", "1", "--resolution", "5"], "resolution"),
        (["--resolution", "0"], "resolution"),
        (["--server", "127.0.0.1:99999"], "--server"),
        (["--kind", "sideways"], "kind"),
    ],
)
async def test_cli_bad_options_are_usage_errors(args: list[str], message: str) -> None:
    result = await run_natchat(["probe-mapping", *args])
    assert result.returncode == 2
    assert message in result.stderr.decode()


async def test_serve_options_probe_port_and_no_probe() -> None:
    port, probe_port = free_port(), free_port()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                run_natchat, ["serve", "--host", HOST, "--port", str(port), "--probe-port", str(probe_port)]
            )
            await stun_answer(Addr(HOST, port))
            result = await run_natchat(["probe-mapping", "--server", f"{HOST}:{port}", "--max", "1", "--json"])
            assert result.returncode == 0, result.stderr.decode()
            assert json.loads(result.stdout)["alt_port"] == probe_port
            nursery.cancel_scope.cancel()
        async with trio.open_nursery() as nursery:
            port = free_port()
            nursery.start_soon(run_natchat, ["serve", "--host", HOST, "--port", str(port), "--no-probe"])
            assert await stun_answer(Addr(HOST, port))  # STUN is answered either way
            result = await run_natchat(["probe-mapping", "--server", f"{HOST}:{port}", "--max", "1"])
            assert result.returncode == 1
            assert "no answer from" in result.stderr.decode()
            nursery.cancel_scope.cancel()


async def test_serve_with_a_taken_probe_port_says_which_port() -> None:
    port = free_port()
    result = await run_natchat(["serve", "--host", HOST, "--port", str(port), "--probe-port", str(port)])
    assert result.returncode == 1
    assert result.stderr.decode().splitlines() == [
        f"error: cannot listen on UDP {HOST}:{port}: probe port {port}: Address already in use"
    ]


def test_progress_bar_draws_and_clears() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream)
    bar.update(Progress(elapsed=30, horizon=120, kinds=((Kind.OUTBOUND, 29.0, False), (Kind.STREAM, 12.0, True))))
    line = stream.getvalue()
    assert line.startswith("\r\x1b[Kprobing [######------------------]")
    assert "outbound >=29 s" in line and "stream 12 s ok" in line
    bar.close()
    assert stream.getvalue().endswith("\r\x1b[K")
