"""Leaving when the terminal closes, on loopback with a real pseudo-terminal.

``tests/test_cli_loopback.py::test_leaving_deregisters`` already proves that end of input, SIGINT (Ctrl-C),
SIGTERM and a SIGHUP sent by hand each deregister a client. What it does not do is close a *terminal*:
here ``natchat join`` runs with a pseudo-terminal as its controlling terminal and its stdin, stdout and
stderr, as in a terminal window; closing the terminal's master side makes the kernel hang up the session
(SIGHUP, and reads and writes on the terminal fail from then on). The server must print the client's
deregistration -- not, after its timeout, a disappearance -- and the other client's list must update.

Which comes first, the signal or the failing read (``EIO``), is the kernel's and the scheduler's choice:
CI once saw the read fail first, and the client crashed. With standard error going to a file instead of
the terminal the read fails every time here, so the test runs both ways. Last, the reader of the
client's output goes away (``natchat join client1 | head -1``): its next line fails with ``EPIPE``, and
it leaves the same way.
"""

from __future__ import annotations

import fcntl
import os
import re
import sys
import termios
from pathlib import Path

import pytest
import trio

from .procs import ProcGroup, free_udp_port
from .test_cli_loopback import REGISTERED, Chat, show_list

NATCHAT = [sys.executable, "-m", "natchat"]
HOST = "127.0.0.1"
TIMEOUT = 2.0  # the server's --timeout: a client that merely went silent would be reported after this


def _terminal_is_stdin() -> None:
    """In the child, before exec: a new session whose controlling terminal is stdin (the pty)."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@pytest.mark.parametrize("log", [False, True], ids=["all on the terminal", "stderr to a file"])
async def test_closing_the_terminal_deregisters(procs: ProcGroup, tmp_path: Path, log: bool) -> None:
    """``log``: ``natchat join client1 2>client1.log``, where (on this kernel) the blocked read of the
    terminal fails with ``EIO`` every time, often before the SIGHUP is handled."""
    port = free_udp_port()
    server_addr = f"{HOST}:{port}"
    server = await procs.start("server", [*NATCHAT, "serve", "--host", HOST, "--port", str(port), "--timeout", "2"])
    other = await procs.start("client2", [*NATCHAT, "join", "client2", "--server", server_addr, "--port", "0"])
    await other.expect_line(REGISTERED, "err", within=10)

    master, slave = os.openpty()
    args = [*NATCHAT, "join", "client1", "--server", server_addr, "--bind", HOST, "--port", "0"]
    log_path = tmp_path / "client1.log"
    with log_path.open("wb") as log_file:
        process = await trio.lowlevel.open_process(
            args,
            stdin=slave,
            stdout=slave,
            stderr=log_file if log else slave,
            preexec_fn=_terminal_is_stdin,
            env=procs.env,
        )
    os.close(slave)
    terminal = trio.lowlevel.FdStream(master)
    shown = b""
    open_terminal = True
    try:
        with trio.fail_after(10):
            while (found := re.search(rb"registered; public address (\S+)\r?\n", shown)) is None:
                if log:
                    await trio.sleep(0.05)  # polling the log file
                    shown = log_path.read_bytes()
                else:
                    shown += await terminal.receive_some(4096)
        pub = found[1].decode()
        await server.expect_line(f"client1 {pub}", within=5)

        closed_at = trio.current_time()
        await terminal.aclose()  # the terminal window closes
        open_terminal = False
        await server.expect_line(f"client1 is deregistered {pub}", within=5)
        assert trio.current_time() - closed_at <= 2.0, procs.transcript()
        with trio.fail_after(5):
            status = await process.wait()
        what = f"exit status {status}\n{procs.transcript()}\nclient1's log:\n{log_path.read_text()}"
        assert status == 0, what
        assert "Traceback" not in log_path.read_text(), what
        assert [cid for cid, _ in await show_list(other)] == ["client2"], procs.transcript()
        await trio.sleep(TIMEOUT + 1)  # long enough for a timeout to be reported, if one were pending
        assert not [line for line in server.lines() if "disappeared" in line], procs.transcript()
    finally:
        if process.returncode is None:
            process.kill()
            with trio.move_on_after(5):
                await process.wait()
        if open_terminal:
            await terminal.aclose()


async def test_a_closed_output_pipe_deregisters(procs: ProcGroup) -> None:
    chat = Chat(procs)
    server = await chat.serve("--timeout", str(TIMEOUT))
    client, other = await chat.join(["client1", "client2"])
    assert client.process.stdout is not None
    await client.process.stdout.aclose()  # what reads its output is gone, as when `| head -1` has its line
    await other.send("@chat client1 can you read this?")  # client1 shows it: its first line to standard output

    await server.expect_line(f"client1 is deregistered {chat.pub['client1']}", within=5)
    assert await client.wait(within=5) == 0, procs.transcript()
    assert [cid for cid, _ in await show_list(other)] == ["client2"], procs.transcript()
    assert "error" not in client.text("err").lower(), procs.transcript()  # left quietly (the fixture: no traceback)


async def test_a_server_whose_output_pipe_closed_stops_quietly(procs: ProcGroup) -> None:
    chat = Chat(procs)
    server = await chat.serve()
    await server.expect_text("clients disappear after", "err")
    assert server.process.stdout is not None
    await server.process.stdout.aclose()  # `natchat serve | grep ...`, and grep was stopped
    await chat.start_client("client1")  # the server's line for it cannot be written: it stops, as on SIGHUP
    assert await server.wait(within=10) == 0, procs.transcript()
    assert "error" not in server.text("err").lower(), procs.transcript()
