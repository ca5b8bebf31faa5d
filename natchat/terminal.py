"""``natchat join`` on a terminal: a line editor whose typed line survives whatever arrives.

When standard input and standard output are a terminal (see :func:`can_edit`), the client reads its commands through
prompt_toolkit (the line editor of IPython and pgcli) and prints everything above the line being
typed: the half-typed text and the cursor stay where they were. Tab completes the commands of the
client's HELP table and peer IDs after the commands whose usage takes an ``<id>``; Up and Down walk
this run's history; Ctrl-C clears a non-empty line and is ``@exit`` on an empty one, Ctrl-D is end of
input.

prompt_toolkit runs on asyncio, natchat on Trio, so the editor lives in one thread of its own with its
own asyncio loop, for as long as :func:`open_terminal`'s block (the client's whole run). The two sides
share no state but immutable values: Trio hands the editor lines to print with
``loop.call_soon_threadsafe`` and the peer list as a tuple the completer reads; the editor hands back
typed lines with ``trio_token.run_sync_soon``. The prompt is shown from the start (what is typed
before the client is registered waits in the editor), at most ``PENDING_PROMPTS`` lines ahead.
All terminal output of the run goes through the editor's loop, one writer in order, so nothing
arriving can land in the middle of the input line. Leaving the block stops the editor (erasing its
prompt) and waits for the thread to end: no thread outlives the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import re
import sys
import termios
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import Any, TextIO

import trio
from prompt_toolkit import PromptSession
from prompt_toolkit.application import create_app_session, run_in_terminal
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.input import create_input
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.output import create_output
from prompt_toolkit.shortcuts import CompleteStyle
from prompt_toolkit.utils import is_dumb_terminal

from .console import OutputGone, write_line

PENDING_PROMPTS = 8
"""Lines typed ahead of the client: past this many unread, the editor waits before prompting again."""

STOP_WITHIN = 5.0
"""Seconds the editor's thread gets to end once asked (it takes milliseconds)."""

THREAD_NAME = "natchat-terminal"

_CONTROL = dict.fromkeys([*range(0x20), 0x7F, *range(0x80, 0xA0)], "?")
"""Control characters (C0, DEL, C1): in text from the network they could move the cursor, clear the
screen or fake a line; on the terminal each is shown as ``?``."""


def is_terminal(*streams: TextIO) -> bool:
    """Whether every stream is a terminal (a closed or detached one is not)."""
    try:
        return all(stream.isatty() for stream in streams)
    except (ValueError, OSError):
        return False


def can_edit(stdin: TextIO, stdout: TextIO) -> bool:
    """Whether the line editor can run: both streams a terminal that can redraw a line (``TERM`` is
    not ``dumb``, as in an Emacs shell buffer, which edits lines itself)."""
    return is_terminal(stdin, stdout) and not is_dumb_terminal()


def printable(text: str) -> str:
    """``text`` with its control characters shown as ``?`` (everything else, wide or not, as is)."""
    return text.translate(_CONTROL)


class Commands:
    """What Tab completes, read from the client's HELP table of ``(usage, description)`` rows: the first
    word of each usage is a command; a command whose next word is ``<id>`` takes a peer ID."""

    def __init__(self, help_table: Sequence[tuple[str, str]]) -> None:
        self.words: list[str] = []
        self.takes_args: set[str] = set()
        self.takes_id: dict[str, bool] = {}
        """Command -> whether anything follows its ``<id>``."""
        for usage, _ in help_table:
            word, *args = usage.split()
            self.words.append(word)
            if args:
                self.takes_args.add(word)
            if args[:1] == ["<id>"]:
                self.takes_id[word] = len(args) > 1


_COMMAND = re.compile(r"\s*(\S*)")
_PEER = re.compile(r"\s*(\S+)\s+(\S*)")


class ChatCompleter(Completer):
    """Commands in the first word; peer IDs (from ``peers()``, called in the editor's thread) in the
    second word of a command that takes one. A completed word is followed by a space when the
    command wants more."""

    def __init__(self, commands: Commands, peers: Callable[[], Sequence[str]]) -> None:
        self.commands = commands
        self.peers = peers

    def get_completions(self, document: Document, complete_event: CompleteEvent) -> Iterator[Completion]:
        before = document.text_before_cursor
        if match := _COMMAND.fullmatch(before):
            typed = match[1]
            for word in self.commands.words:
                if word.startswith(typed):
                    space = " " if word in self.commands.takes_args else ""
                    yield Completion(word + space, start_position=-len(typed), display=word)
        elif (match := _PEER.fullmatch(before)) and match[1] in self.commands.takes_id:
            typed = match[2]
            space = " " if self.commands.takes_id[match[1]] else ""
            for peer in self.peers():
                if peer.startswith(typed):
                    yield Completion(peer + space, start_position=-len(typed), display=peer)


def _key_bindings() -> KeyBindings:
    bindings = KeyBindings()

    @bindings.add("c-c")
    def _(event: KeyPressEvent) -> None:
        """Ctrl-C: clear a non-empty line; on an empty one, leave (as ``@exit``)."""
        buffer = event.current_buffer
        if buffer.text:
            buffer.reset()
        else:
            event.app.exit(exception=EOFError)

    return bindings


class _Editor:
    """The prompt_toolkit side. Lives in the terminal's thread: every method runs in its asyncio loop
    (Trio calls them through ``call_soon_threadsafe``). Owns the terminal while it runs: it alone
    writes to it, in order, above the prompt when one is shown.

    Tells Trio of typed text through ``deliver`` (``None``: end of input); never touches Trio's state.
    """

    def __init__(
        self,
        prompt: str,
        completer: Completer,
        stdin: TextIO,
        stdout: TextIO,
        deliver: Callable[[str | None], None],
    ) -> None:
        self.prompt = prompt
        self.completer = completer
        self.stdin = stdin
        self.stdout = stdout
        self.deliver = deliver
        self.gone = False
        """The terminal cannot be written to (it hung up); read from Trio's thread too."""
        self._stopping = False
        self._queue: deque[tuple[TextIO, str]] = deque()
        self._wake_writer = asyncio.Event()  # (asyncio's primitives bind to the loop that first uses them)
        self._prompts = asyncio.Semaphore(PENDING_PROMPTS)
        self._stop = asyncio.Event()
        self._idle = asyncio.Event()
        """Set while nothing waits to be printed: a new prompt is drawn once what came before it is out."""
        self._prompter: asyncio.Task[None] | None = None
        self._session: PromptSession[str] | None = None

    async def main(self, ready: Callable[[asyncio.AbstractEventLoop, contextvars.Context], None]) -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(self._loop_error)
        with create_app_session(input=create_input(self.stdin), output=create_output(self.stdout)):
            self._session = PromptSession(
                self.prompt,
                completer=self.completer,
                complete_while_typing=False,
                complete_style=CompleteStyle.READLINE_LIKE,  # like bash: no menu space kept under the line
                key_bindings=_key_bindings(),
            )
            writer = asyncio.create_task(self._write_lines())
            ready(loop, contextvars.copy_context())
            await self._stop.wait()
            if self._prompter is not None:
                self._prompter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._prompter
            self._wake_writer.set()
            await writer

    # --- called from Trio ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Show the prompt and keep prompting until end of input."""
        if self._prompter is None and not self._stopping:
            self._prompter = asyncio.create_task(self._prompt_lines())

    def taken(self) -> None:
        """Trio took one delivered line: one more may be typed ahead."""
        self._prompts.release()

    def write(self, stream: TextIO, text: str) -> None:
        """Print ``text`` as a line on ``stream``, above the prompt if one is shown."""
        self._queue.append((stream, text))
        self._idle.clear()
        self._wake_writer.set()

    def stop(self) -> None:
        """Erase the prompt, print what is still queued, and end :meth:`main`."""
        self._stopping = True
        if self._session is not None:
            self._session.app.erase_when_done = True
        self._stop.set()

    # --- in the loop ----------------------------------------------------------------------------------------

    async def _prompt_lines(self) -> None:
        assert self._session is not None
        while True:
            await self._prompts.acquire()
            await self._idle.wait()
            try:
                text: str | None = await self._session.prompt_async(set_exception_handler=False, handle_sigint=False)
            except EOFError:  # Ctrl-D, Ctrl-C on an empty line, or the terminal hung up
                text = None
            except (OSError, termios.error):  # the terminal went away under the editor
                self.gone = True
                text = None
            self.deliver(text)
            if text is None:
                return

    async def _write_lines(self) -> None:
        """The one writer: queued lines in order, each batch in one pass above the prompt."""
        while True:
            if self._queue:
                batch = list(self._queue)
                self._queue.clear()
                if self.gone:
                    continue
                try:
                    await run_in_terminal(functools.partial(self._print, batch), in_executor=False)
                except (OSError, termios.error):  # erasing the prompt on a terminal that hung up
                    self._hung_up()
            elif self._stopping:
                return
            else:
                self._idle.set()
                await self._wake_writer.wait()
                self._wake_writer.clear()

    def _print(self, batch: Iterable[tuple[TextIO, str]]) -> None:
        for stream, text in batch:
            if self.gone:
                return
            try:
                write_line(stream, printable(text))
            except OutputGone:
                self._hung_up()

    def _hung_up(self) -> None:
        """The terminal cannot be written to: end the prompt as at end of input."""
        self.gone = True
        app = self._session.app if self._session is not None else None
        if app is not None and app.future is not None and not app.future.done():
            app.exit(exception=EOFError)

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if isinstance(context.get("exception"), OSError | termios.error):  # drawing on a terminal that hung up
            self._hung_up()
        else:
            loop.default_exception_handler(context)


class Terminal:
    """The Trio side: what the client calls (``read_line``, ``out``, ``err``, ``set_peers``), all from
    Trio's thread. Made by :func:`open_terminal`."""

    def __init__(
        self,
        client_id: str,
        help_table: Sequence[tuple[str, str]],
        *,
        stdin: TextIO,
        stdout: TextIO,
        stderr: TextIO,
    ) -> None:
        self.client_id = client_id
        self.stdout = stdout
        self.stderr = stderr
        self._errors_above = is_terminal(stderr)
        """Standard error on the terminal too: its lines go above the prompt (else straight to its file)."""
        self._peers: tuple[str, ...] = ()
        self._token = trio.lowlevel.current_trio_token()
        self._send, self._receive = trio.open_memory_channel[str | None](PENDING_PROMPTS + 1)
        self._pending: deque[str] = deque()
        self._ended = False
        self._ready = trio.Event()
        self._finished = trio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._context: contextvars.Context | None = None
        self._crash: BaseException | None = None
        completer = ChatCompleter(Commands(help_table), lambda: self._peers)
        self._editor = _Editor(f"{client_id}> ", completer, stdin, stdout, self._deliver)
        self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)

    # --- the client's interface -------------------------------------------------------------------------

    async def read_line(self) -> str:
        """The next typed line with its newline; ``""`` at end of input (Ctrl-D, Ctrl-C on an empty line,
        a terminal that hung up). Pasted lines come one by one."""
        if not self._pending and not self._ended:
            try:
                text = await self._receive.receive()
            except trio.EndOfChannel:  # the editor's thread ended
                text = None
            if text is None:
                self._ended = True
            else:
                self._call(self._editor.taken)
                self._pending.extend(line + "\n" for line in text.split("\n"))
        return self._pending.popleft() if self._pending else ""

    def out(self, text: str) -> None:
        """A line on standard output, above the prompt."""
        self._write(self.stdout, text)

    def err(self, text: str) -> None:
        """A line on standard error: above the prompt if it is the terminal too."""
        if self._errors_above:
            self._write(self.stderr, text)
        else:
            write_line(self.stderr, text)

    def set_peers(self, peers: Iterable[str]) -> None:
        """The IDs Tab offers after ``@chat``, ``@path``, ...: the peer list, this client left out."""
        self._peers = tuple(peer for peer in peers if peer != self.client_id)

    # --- plumbing ---------------------------------------------------------------------------------------------

    def _write(self, stream: TextIO, text: str) -> None:
        if self._editor.gone:
            raise OutputGone("cannot write to the terminal")
        if not self._call(self._editor.write, stream, text):
            write_line(stream, printable(text))  # the editor is no more (it failed): plain lines

    def _call(self, method: Callable[..., None], *args: object) -> bool:
        """Run ``method(*args)`` in the editor's loop, soon; False if the loop is gone."""
        if self._loop is None or self._finished.is_set():
            return False
        try:
            self._loop.call_soon_threadsafe(method, *args, context=self._context)
        except RuntimeError:  # the loop closed
            return False
        return True

    def _deliver(self, text: str | None) -> None:
        """(The editor's thread.) Hand typed text, or end of input, to Trio."""

        def send() -> None:  # in Trio's thread; never full: the editor waits for PENDING_PROMPTS to be taken
            with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
                self._send.send_nowait(text)

        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(send)

    def _run(self) -> None:
        """The editor's thread."""

        def ready(loop: asyncio.AbstractEventLoop, context: contextvars.Context) -> None:
            self._loop, self._context = loop, context
            self._token.run_sync_soon(self._ready.set)

        try:
            asyncio.run(self._editor.main(ready))
        except BaseException as exc:
            self._crash = exc
        finally:
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self._on_finished)

    def _on_finished(self) -> None:
        self._finished.set()
        self._ready.set()
        self._send.close()

    async def _start(self) -> None:
        self._thread.start()
        await self._ready.wait()
        if self._crash is not None:
            raise self._crash
        self._call(self._editor.start)  # at once: what is typed before the client is registered waits in the editor

    async def _stop(self) -> None:
        with trio.CancelScope(shield=True):
            self._call(self._editor.stop)
            with trio.move_on_after(STOP_WITHIN):
                await self._finished.wait()
            self._thread.join(timeout=0.1 if self._finished.is_set() else 0)
        if self._crash is not None:
            raise self._crash


@contextlib.asynccontextmanager
async def open_terminal(
    client_id: str,
    help_table: Sequence[tuple[str, str]],
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> AsyncIterator[Terminal]:
    """The line editor for the block's duration (standard streams unless given); its thread has ended
    when the block is left, whichever way."""
    terminal = Terminal(
        client_id,
        help_table,
        stdin=stdin or sys.stdin,
        stdout=stdout or sys.stdout,
        stderr=stderr or sys.stderr,
    )
    await terminal._start()
    try:
        yield terminal
    finally:
        await terminal._stop()
