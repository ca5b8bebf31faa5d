"""``natchat join`` on a terminal, checked on the screen a person sees.

The clients under test run on real pseudo-terminals (pexpect) against a real ``natchat serve`` on
127.0.0.1, and their screens are drawn by a terminal emulator (pyte) that also answers the
cursor-position requests a real terminal answers. Other clients are plain processes on pipes (see
:mod:`tests.procs`). Every wait is bounded; a failing one shows the screen and every transcript.

Without a terminal on both standard input and output (pipes, files, ``--json``) the client must be
exactly what it was: the last tests compare its output byte for byte.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import trio
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from wcwidth import wcswidth

from natchat import terminal as term
from natchat.client import HELP, JoinConfig, run_client
from natchat.proto.wire import Addr
from natchat.server import ServerConfig, serve

from .procs import Proc, ProcGroup, free_udp_port
from .ptyscreen import PtyClient, Screen

NATCHAT = [sys.executable, "-m", "natchat"]
HOST = "127.0.0.1"
REGISTERED = re.compile(r"registered; public address (\S+)")
HELP_LINES = [f"{usage:<22}  {what}" for usage, what in HELP]


class Room:
    """A server on a free loopback port, clients on terminals and clients on pipes."""

    def __init__(self, procs: ProcGroup) -> None:
        self.procs = procs
        self.port = free_udp_port()
        self.ttys: list[PtyClient] = []

    async def serve(self) -> Proc:
        self.server = await self.procs.start("server", [*NATCHAT, "serve", "--host", HOST, "--port", str(self.port)])
        return self.server

    def join_args(self, client_id: str | None, *options: str) -> list[str]:
        args = [*NATCHAT, "join"] if client_id is None else [*NATCHAT, "join", client_id]
        return [*args, "--server", f"{HOST}:{self.port}", "--bind", HOST, "--port", "0", *options]

    async def on_pipes(self, client_id: str) -> Proc:
        proc = await self.procs.start(client_id, self.join_args(client_id))
        await proc.expect_line(REGISTERED, "err", within=15)  # (a shared machine can be slow to start Python)
        return proc

    async def on_terminal(
        self,
        client_id: str | None,
        *options: str,
        columns: int = 80,
        lines: int = 24,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> PtyClient:
        """A client on a terminal; with an ID, once it is registered and its prompt is shown."""
        editor = client_id is not None and not options and args is None and env is None
        args = args or self.join_args(client_id, *options)
        tty = PtyClient(self.procs, client_id or "tty", args, columns=columns, lines=lines, env=env)
        self.ttys.append(tty)
        await self.procs.nursery.start(tty.pump)
        if editor:
            await tty.expect_row(REGISTERED, within=15)
            await tty.expect_input(f"{client_id}> ", "")
        return tty

    async def deregistered(self, client_id: str) -> None:
        await self.server.expect_line(re.compile(rf"{client_id} is deregistered \S+"), within=5)


@pytest.fixture
async def room(procs: ProcGroup) -> AsyncIterator[Room]:
    room = Room(procs)
    try:
        yield room
    finally:
        for tty in room.ttys:
            await tty.close()
            assert b"Traceback" not in tty.screen.raw, str(tty)


# --- what arrives goes above the line being typed ------------------------------------------------------------


async def test_a_half_typed_line_survives_an_arriving_message_and_is_then_sent(room: Room) -> None:
    await room.serve()
    alice = await room.on_terminal("alice")
    bob = await room.on_pipes("bob")

    alice.type("@chat bob hal")
    await alice.expect_input("alice> ", "@chat bob hal")
    await bob.send("@chat alice hello alice, how are you today")
    message = await alice.expect_row("From bob [hello alice, how are you today]")
    # the typed text, byte for byte, and the cursor after it, on the line below the message
    await alice.expect_input("alice> ", "@chat bob hal")
    assert alice.screen.last_row_starting("alice> ") == message + 1, str(alice)
    assert not any("halFrom" in row for row in alice.screen.rows()), str(alice)

    alice.type("f done")
    alice.press("enter")
    await bob.expect_count("From alice [half done]", 1, within=10)
    sent = await alice.expect_row("alice> @chat bob half done")
    await alice.expect_input("alice> ", "")
    assert alice.screen.last_row_starting("alice> ") == sent + 1, str(alice)


async def test_errors_and_lists_go_above_the_line_too(room: Room) -> None:
    await room.serve()
    alice = await room.on_terminal("alice")
    bob = await room.on_pipes("bob")
    alice.type("@show_list")
    alice.press("enter")
    rows = [await alice.expect_row(re.compile(rf"{cid} 127\.0\.0\.1:\d+")) for cid in ("alice", "bob")]
    assert rows[1] == rows[0] + 1, str(alice)
    alice.type("@chat nobody hi")
    alice.press("enter")
    await alice.expect_row("error: nobody is not in the list (see @show_list)")
    alice.type("@chat bob still typing")
    await bob.send("@chat alice \x1b[2J\x1b[Hcleared?\x07")  # escape sequences from a peer are shown, not obeyed
    await alice.expect_row("From bob [?[2J?[Hcleared??]")
    await alice.expect_input("alice> ", "@chat bob still typing")
    assert alice.screen.rows()[rows[0]].startswith("alice 127.0.0.1:"), str(alice)  # the screen was not cleared


async def test_whois_prints_its_lines_as_lines(room: Room) -> None:
    await room.serve()
    alice = await room.on_terminal("alice", columns=150)
    await room.on_pipes("bob")
    alice.type("@whois bob")
    alice.press("enter")
    digits = r"(\d{5} ){5}\d{5}"
    first = await alice.expect_row(re.compile(rf"bob: identity {digits} \(new: first contact on \S+, pinned now\)"))
    safety = await alice.expect_row(re.compile(r"safety number with bob: (\d{5} ){11}\d{5}"))
    assert safety == first + 1, str(alice)  # its own row, not joined to the first by a '?'
    assert not any("?safety" in row for row in alice.screen.rows()), str(alice)
    await alice.expect_input("alice> ", "")


# --- completion and history ------------------------------------------------------------------------------------


async def _tab_result(tty: PtyClient, typed: str, prompt: str) -> str:
    """Type ``typed``, press Tab, then ``#``: what the input line becomes (the ``#`` shows Tab was done)."""
    tty.type(typed)
    tty.press("tab")
    tty.type("#")
    await tty.expect(
        lambda s: (row := s.last_row_starting(prompt)) is not None and s.rows()[row].endswith("#"),
        f"{typed!r} completed or not",
    )
    row = tty.screen.last_row_starting(prompt)
    assert row is not None
    line = tty.screen.rows()[row].removeprefix(prompt)
    tty.press("ctrl-c")  # clear it
    await tty.expect_input(prompt, "")
    return line


async def _until_tab_gives(tty: PtyClient, typed: str, line: str, within: float = 10.0) -> None:
    """Try Tab after ``typed`` until the input line becomes ``line`` (a few times a second, within a bound)."""
    got = []
    try:
        with trio.fail_after(within):
            while True:
                got.append(await _tab_result(tty, typed, f"{tty.name}> "))
                if got[-1] == line:
                    return
                await trio.sleep(0.1)  # poll interval, not a settling delay
    except trio.TooSlowError:
        raise AssertionError(f"Tab after {typed!r} never gave {line!r} (got {got[-3:]})\n{tty}") from None


async def test_tab_completes_commands_and_a_peer_that_joined_later(room: Room) -> None:
    server = await room.serve()
    alice = await room.on_terminal("alice")
    assert await _tab_result(alice, "@sh", "alice> ") == "@show_list#"
    assert await _tab_result(alice, "@ch", "alice> ") == "@chat #"  # it takes arguments: a space follows
    assert await _tab_result(alice, "@chat ca", "alice> ") == "@chat ca#"  # nobody called ca... yet

    carol = await room.on_pipes("carol")
    await server.expect_line(re.compile(r"carol \S+"), within=5)
    await _until_tab_gives(alice, "@chat ca", "@chat carol #")  # once alice's list has carol (the server pushes it)
    assert await _tab_result(alice, "@path c", "alice> ") == "@path carol#"
    assert await _tab_result(alice, "@all ca", "alice> ") == "@all ca#"  # @all takes no <id>
    assert await _tab_result(alice, "@chat al", "alice> ") == "@chat al#"  # not oneself

    alice.type("@chat ca")
    alice.press("tab")
    alice.type("hello carol")
    alice.press("enter")
    await carol.expect_count("From alice [hello carol]", 1, within=10)

    await carol.send("@exit")
    assert await carol.wait(within=5) == 0
    await _until_tab_gives(alice, "@chat ca", "@chat ca#")  # and once carol has left, she is offered no more


async def test_up_and_down_walk_the_history(room: Room) -> None:
    await room.serve()
    alice = await room.on_terminal("alice")
    bob = await room.on_pipes("bob")
    for text in ("first", "second"):
        alice.type(f"@chat bob {text}")
        alice.press("enter")
        await bob.expect_count(f"From alice [{text}]", 1, within=10)
    await alice.expect_input("alice> ", "")
    alice.press("up")
    await alice.expect_input("alice> ", "@chat bob second")
    alice.press("up")
    await alice.expect_input("alice> ", "@chat bob first")
    alice.press("down")
    await alice.expect_input("alice> ", "@chat bob second")
    alice.press("enter")
    await bob.expect_count("From alice [second]", 2, within=10)


async def test_pasted_lines_are_commands_one_by_one(room: Room) -> None:
    await room.serve()
    alice = await room.on_terminal("alice")
    bob = await room.on_pipes("bob")
    alice.type("\x1b[200~@chat bob pasted one\n@chat bob pasted two\x1b[201~")  # a bracketed paste
    alice.press("enter")
    await bob.expect_line("From alice [pasted one]", within=10)
    await bob.expect_line("From alice [pasted two]", within=10)


# --- every way out deregisters first, with today's exit status ---------------------------------------------


@pytest.mark.parametrize("how", ["ctrl-c", "ctrl-d", "@exit", "SIGTERM", "SIGHUP", "SIGINT", "hang-up"])
async def test_leaving_from_the_terminal_deregisters(room: Room, how: str) -> None:
    await room.serve()
    alice = await room.on_terminal("alice")
    bob = await room.on_pipes("bob")
    alice.type("@chat bob never sent")
    await alice.expect_input("alice> ", "@chat bob never sent")
    if how == "ctrl-c":
        alice.press("ctrl-c")  # a non-empty line: cleared, nothing else
        await alice.expect_input("alice> ", "")
        assert alice.child.isalive()
        alice.press("ctrl-c")  # an empty line: @exit
    elif how == "ctrl-d":
        alice.press("ctrl-c")
        await alice.expect_input("alice> ", "")
        alice.press("ctrl-d")
    elif how == "@exit":
        alice.press("ctrl-c")
        alice.type("@exit")
        alice.press("enter")
    elif how == "hang-up":
        await alice.hang_up()
    else:
        alice.send_signal(signal.Signals[how])
    await room.deregistered("alice")
    assert await alice.wait(within=5) == 0, str(alice)
    assert bob.count(re.compile(r"From alice .*")) == 0


# --- rendering: resize, long lines, wide characters ------------------------------------------------------------


def _message_rows(screen: Screen, first: int, columns: int, text: str) -> list[str]:
    """The rows ``text`` takes from row ``first`` on, as printed (full width but the last)."""
    rows = screen.rows()
    taken: list[str] = []
    cells = 0
    while cells < wcswidth(text):
        taken.append(rows[first + len(taken)])
        cells += columns
    return taken


async def test_resize_long_messages_and_wide_text(room: Room) -> None:
    await room.serve()
    alice = await room.on_terminal("alice", columns=40)
    await alice.expect_input("alice> ", "")
    bob = await room.on_pipes("bob")
    typed = "@chat bob 안녕하세요 🎉 ok"
    alice.type(typed)
    await alice.expect_input("alice> ", typed)  # the cursor after it: two cells for each wide character

    long_text = " ".join(f"word{n}" for n in range(40)) + " 끝"
    await bob.send(f"@chat alice {long_text}")
    first = await alice.expect_row(re.compile(r"From bob \[word0 .*"))
    line = f"From bob [{long_text}]"
    assert wcswidth(line[:-2]) % 40 == 0  # (the wide character at the end starts a row: it cannot straddle one)
    rows = _message_rows(alice.screen, first, 40, line)
    assert len(rows) >= 7, str(alice)
    assert "".join(row.ljust(40) for row in rows).rstrip() == line, str(alice)  # wrapped, nothing lost
    await alice.expect_input("alice> ", typed)

    alice.resize(60, 24)
    after = "after the resize " + "x" * 70
    await bob.send(f"@chat alice {after}")
    first = await alice.expect_row(re.compile(r"From bob \[after the resize x+"))
    assert alice.screen.rows()[first] == f"From bob [{after}]"[:60], str(alice)  # wrapped at the new width
    await alice.expect_input("alice> ", typed)

    alice.press("enter")
    await bob.expect_count("From alice [안녕하세요 🎉 ok]", 1, within=10)


async def test_enter_id_is_asked_on_a_terminal_too(room: Room) -> None:
    await room.serve()
    tty = await room.on_terminal(None)
    await tty.expect(lambda s: s.rows()[0] == "Enter ID :" and s.cursor == (11, 0), "'Enter ID : ' asked")
    tty.type("dave")
    tty.press("enter")
    await tty.expect_input("dave> ", "")
    tty.press("ctrl-d")
    await room.deregistered("dave")
    assert await tty.wait(within=5) == 0


# --- no thread outlives the client (in this process, so that its threads can be counted) ---------------------


class _PtyWindow:
    """The terminal window's side of a pseudo-terminal whose other side is this process's stdio."""

    def __init__(self, master: int, columns: int = 80, lines: int = 24) -> None:
        self.master = master
        self.screen = Screen(columns, lines, lambda data: os.write(self.master, data))
        self.changed = trio.Event()
        self.install: Callable[[], None] = lambda: None

    async def pump(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            try:
                await trio.lowlevel.wait_readable(self.master)
                data = os.read(self.master, 65536)
            except (OSError, trio.ClosedResourceError):
                return
            if not data:
                return
            self.screen.feed(data)
            self.changed.set()
            self.changed = trio.Event()

    async def expect(self, text: str) -> None:
        with trio.fail_after(10):
            while text not in self.screen.text():
                await self.changed.wait()


def _our_threads() -> set[threading.Thread]:
    """Live threads but Trio's own idle workers (its thread cache keeps them for a while)."""
    return {t for t in threading.enumerate() if not t.name.startswith("Trio thread")}


@pytest.fixture
def window(monkeypatch: pytest.MonkeyPatch) -> Iterator[_PtyWindow]:
    """A pseudo-terminal; yields its window side, whose ``install()`` makes the other side this process's
    standard input, output and error (in the test itself: pytest sets its own between setup and call)."""
    master, slave = os.openpty()
    window = _PtyWindow(master)
    stdin = open(slave, encoding="utf-8", closefd=False)  # noqa: SIM115
    stdout = open(slave, "w", encoding="utf-8", closefd=False)  # noqa: SIM115

    def install() -> None:
        monkeypatch.setattr(sys, "stdin", stdin)
        monkeypatch.setattr(sys, "stdout", stdout)
        monkeypatch.setattr(sys, "stderr", stdout)

    window.install = install
    try:
        yield window
    finally:
        monkeypatch.undo()
        for stream in (stdin, stdout):
            with contextlib.suppress(OSError):  # what is still buffered for a terminal that hung up
                stream.close()
        if window.master >= 0:
            os.close(window.master)
        os.close(slave)


@pytest.mark.parametrize("how", ["@exit", "ctrl-d", "hang-up", "cancelled"])
async def test_no_thread_outlives_the_client(window: _PtyWindow, how: str) -> None:
    window.install()
    before = _our_threads()
    status: list[int] = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve, ServerConfig(host=HOST, port=0, probe=False), lambda _: None)
            assert isinstance(server, Addr)
            config = JoinConfig("alice", server, bind=HOST, port=0)

            async def client() -> None:
                status.append(await run_client(config, handle_signals=False, terminal=True))

            nursery.start_soon(window.pump)
            async with trio.open_nursery() as inner:
                inner.start_soon(client)
                await window.expect("alice>")
                assert any(t.name == term.THREAD_NAME for t in _our_threads())
                if how == "@exit":
                    os.write(window.master, b"@exit\r")
                elif how == "ctrl-d":
                    os.write(window.master, b"\x04")
                elif how == "hang-up":  # the window closes: reads get EIO, writes too
                    trio.lowlevel.notify_closing(window.master)
                    os.close(window.master)
                    window.master = -1
                else:  # cancelled from outside, the way a signal ends it
                    inner.cancel_scope.cancel()
            nursery.cancel_scope.cancel()
    assert status == ([] if how == "cancelled" else [0])
    assert _our_threads() == before, [t.name for t in _our_threads() - before]


# --- without a terminal: exactly today's plain lines -----------------------------------------------------------

SCRIPT = ["@show_list", "@help", "@chat bob over the pipe", "nonsense"]


def _plain_stdout(server: Proc) -> bytes:
    """What the script prints on standard output: the list as the server registered it, the help, the error."""
    lines = [*server.lines()[:2], *HELP_LINES, "wrong instruction retype"]
    return "".join(line + "\n" for line in lines).encode()


async def test_pipes_get_exactly_the_plain_lines(room: Room) -> None:
    server = await room.serve()
    bob = await room.on_pipes("bob")
    alice = await room.procs.start("alice", room.join_args("alice"))
    await alice.expect_line(REGISTERED, "err", within=10)
    for line in SCRIPT:
        await alice.send(line)
    await bob.expect_count("From alice [over the pipe]", 1, within=10)
    await alice.close_stdin()
    assert await alice.wait(within=5) == 0
    pubs = dict(line.split() for line in server.lines()[:2])
    assert alice.text("out").encode() == _plain_stdout(server)
    assert alice.text("err").encode() == f"registered; public address {pubs['alice']}\n".encode()


async def test_a_terminal_on_one_side_only_gets_the_plain_lines(room: Room, tmp_path: pathlib.Path) -> None:
    """Standard input a terminal, standard output a file: no line editor, the file holds today's lines."""
    server = await room.serve()
    bob = await room.on_pipes("bob")
    out = str(tmp_path / "out")
    shell = ["/bin/sh", "-c", 'exec "$@" > "$0"', out, *room.join_args("alice")]
    alice = await room.on_terminal("alice", args=shell)
    await alice.expect_row(re.compile(r"registered; public address \S+"))
    for line in SCRIPT:
        alice.type(line)
        alice.press("enter")
    await bob.expect_count("From alice [over the pipe]", 1, within=10)
    alice.press("ctrl-d")  # end of input, to a terminal's line discipline
    assert await alice.wait(within=5) == 0
    assert await trio.Path(out).read_bytes() == _plain_stdout(server)
    assert "alice> " not in alice.screen.text(), str(alice)
    assert b"\x1b" not in alice.screen.raw, str(alice)  # the terminal got the echo and stderr, nothing drawn


async def test_a_dumb_terminal_gets_the_plain_lines(room: Room) -> None:
    """TERM=dumb (an Emacs shell buffer, say) cannot redraw a line: plain lines, as on a pipe."""
    await room.serve()
    bob = await room.on_pipes("bob")
    alice = await room.on_terminal("alice", env={"TERM": "dumb"})
    await alice.expect_row(REGISTERED)
    alice.type("@chat bob hi from emacs")
    alice.press("enter")
    await bob.expect_line("From alice [hi from emacs]", within=10)
    alice.press("ctrl-d")
    assert await alice.wait(within=5) == 0
    assert "alice>" not in alice.screen.text(), str(alice)
    assert b"\x1b" not in alice.screen.raw, str(alice)


async def test_json_on_a_terminal_is_one_object_a_line(room: Room) -> None:
    await room.serve()
    await room.on_pipes("bob")
    alice = await room.on_terminal("alice", "--json")
    await alice.expect_row(re.compile(r'\{"event": "registered".*'))
    alice.type("@help")
    alice.press("enter")
    await alice.expect_row(re.compile(r'\{"event": "help".*'))
    alice.press("ctrl-d")
    assert await alice.wait(within=5) == 0
    assert b"\x1b" not in alice.screen.raw, str(alice)
    printed = alice.screen.raw.decode().replace("\r\n", "\n").splitlines()
    objects = [json.loads(line) for line in printed if line != "@help"]  # (the terminal echoed what was typed)
    assert [obj["event"] for obj in objects][:1] == ["registered"]
    assert {"help", "left"} <= {obj["event"] for obj in objects}


# --- the pieces ----------------------------------------------------------------------------------------------


def test_completion_comes_from_the_help_table() -> None:
    earlier = [row for row in HELP if row[0].split()[0] not in ("@whois", "@trust")]  # (HELP has them now)
    table = (*earlier, ("@whois <id>", "who a peer is"), ("@trust <id> <key>", "trust a key"))
    completer = term.ChatCompleter(term.Commands(table), lambda: ("bob", "bea", "carol"))

    def complete(text: str) -> list[str]:
        return [c.text for c in completer.get_completions(Document(text), CompleteEvent(completion_requested=True))]

    assert complete("") == ["@show_list", "@chat ", "@all ", "@path ", "@help", "@exit", "@whois ", "@trust "]
    assert complete("@w") == ["@whois "]  # commands added to HELP later complete too
    assert complete("@whois b") == ["bob", "bea"]
    assert complete("@trust c") == ["carol "]
    assert complete("@chat  b") == ["bob ", "bea "]
    assert complete("@chat bob he") == []
    assert complete("@all b") == []
    assert complete("hello") == []


def test_control_characters_are_shown_not_obeyed() -> None:
    assert term.printable("a\x1b[2Jb\x07\x9b\x7f") == "a?[2Jb???"
    assert term.printable("안녕 🎉 👩‍👩‍👧 café") == "안녕 🎉 👩‍👩‍👧 café"
