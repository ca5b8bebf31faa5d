"""A terminal as a person sees it, for tests: a pseudo-terminal whose output is drawn by ``pyte``.

:class:`Screen` is the emulated terminal (it answers cursor-position requests as a real one does);
:class:`PtyClient` runs a program on a pseudo-terminal with ``pexpect`` and reads its output from a
Trio task. Every wait is bounded and, when it runs out, fails with what the screen shows and the
transcript of the other processes of the test.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable, Sequence

import pexpect
import pyte
import trio
from wcwidth import wcswidth

from .procs import ProcGroup

KEYS = {
    "enter": "\r",
    "tab": "\t",
    "ctrl-c": "\x03",
    "ctrl-d": "\x04",
    "up": "\x1b[A",
    "down": "\x1b[B",
    "left": "\x1b[D",
}


class Screen:
    """``pyte``'s VT100 screen fed the program's output; ``reply`` gets what the terminal answers."""

    def __init__(self, columns: int, lines: int, reply: Callable[[bytes], None]) -> None:
        self.reply = reply
        self.screen = _AnsweringScreen(columns, lines, self)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = bytearray()

    def feed(self, data: bytes) -> None:
        self.raw += data
        self.stream.feed(data)

    def rows(self) -> list[str]:
        """Every row as shown (wide characters take two cells but are one character here), right-stripped."""
        return [row.rstrip() for row in self.screen.display]

    def text(self) -> str:
        return "\n".join(self.rows()).rstrip("\n")

    @property
    def cursor(self) -> tuple[int, int]:
        """(column, row), from 0."""
        return self.screen.cursor.x, self.screen.cursor.y

    def resize(self, columns: int, lines: int) -> None:
        self.screen.resize(lines, columns)

    def last_row_starting(self, prefix: str) -> int | None:
        rows = self.rows()
        for index in range(len(rows) - 1, -1, -1):
            if rows[index].startswith(prefix) or rows[index] == prefix.rstrip():  # (rows are right-stripped)
                return index
        return None


class _AnsweringScreen(pyte.Screen):
    def __init__(self, columns: int, lines: int, owner: Screen) -> None:
        super().__init__(columns, lines)
        self.owner = owner

    def write_process_input(self, data: str) -> None:
        self.owner.reply(data.encode())


class PtyClient:
    """A program on a pseudo-terminal of ``columns`` x ``lines`` (pexpect), its screen (pyte)."""

    def __init__(
        self,
        group: ProcGroup,
        name: str,
        args: Sequence[str],
        *,
        columns: int,
        lines: int,
        env: dict[str, str] | None = None,
    ) -> None:
        self.group = group
        self.name = name
        env = {**group.env, "TERM": "xterm", "LC_ALL": "C.UTF-8", **(env or {})}
        self.child = pexpect.spawn(args[0], list(args[1:]), env=env, dimensions=(lines, columns), encoding=None)
        self.screen = Screen(columns, lines, self._answer)
        self.eof = False
        self.returncode: int | None = None
        self._reading = True
        self._pumped = trio.Event()

    def _answer(self, data: bytes) -> None:
        if not self.eof and self._reading:
            self.child.send(data)

    def _read_some(self) -> bytes | None:
        try:
            data: bytes = self.child.read_nonblocking(65536, timeout=0.1)
        except pexpect.TIMEOUT:
            return b""
        except pexpect.EOF:
            return None
        return data

    async def pump(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read what the program prints into the screen until it closes the terminal (or :meth:`close`)."""
        task_status.started()
        try:
            while self._reading and not self.eof:
                data = await trio.to_thread.run_sync(self._read_some)  # (each read waits at most 0.1 s)
                if data is None:
                    self.eof = True
                elif data:
                    self.screen.feed(data)
                self.group.changed()
        finally:
            self._pumped.set()

    async def _stop_reading(self) -> None:
        self._reading = False
        with trio.fail_after(5):
            await self._pumped.wait()

    # --- typing -----------------------------------------------------------------------------------------------

    def type(self, text: str) -> None:
        """Type ``text`` (UTF-8), as keys."""
        self.child.send(text.encode())

    def press(self, *keys: str) -> None:
        for key in keys:
            self.child.send(KEYS[key].encode())

    def send_signal(self, sig: signal.Signals) -> None:
        self.child.kill(sig)

    def resize(self, columns: int, lines: int) -> None:
        """The window changes size: the screen, then the terminal (which signals SIGWINCH)."""
        self.screen.resize(columns, lines)
        self.child.setwinsize(lines, columns)

    async def hang_up(self) -> None:
        """The terminal window closes: its side of the pseudo-terminal goes away."""
        await self._stop_reading()
        self.eof = True
        # closed through its one file object (a bare os.close would leave that to close a reused number later);
        # not with pexpect's close, which would then signal the program
        self.child.ptyproc.fileobj.close()
        self.child.ptyproc.closed = self.child.closed = True
        self.child.child_fd = -1

    # --- waiting ----------------------------------------------------------------------------------------------

    async def expect(self, condition: Callable[[Screen], bool], what: str, *, within: float = 10.0) -> None:
        """Wait until ``condition(screen)`` holds."""
        try:
            await self.group.wait_until(lambda: condition(self.screen), within, what)
        except AssertionError:  # say what the screen shows now
            message = f"timed out after {within:g} s waiting for {self.name}'s screen: {what}"
            raise AssertionError(f"{message}\n{self}") from None

    async def expect_row(self, pattern: str | re.Pattern[str], *, within: float = 10.0) -> int:
        """Wait for a row equal to ``pattern`` (a string) or matching it (fullmatch); return the last such."""

        def find(screen: Screen) -> int | None:
            rows = screen.rows()
            for index in range(len(rows) - 1, -1, -1):
                if pattern == rows[index] if isinstance(pattern, str) else re.fullmatch(pattern, rows[index]):
                    return index
            return None

        await self.expect(lambda s: find(s) is not None, f"a row {pattern!r}", within=within)
        row = find(self.screen)
        assert row is not None
        return row

    async def expect_input(self, prompt: str, text: str, *, within: float = 10.0) -> None:
        """Wait until the last prompt row shows ``prompt + text`` with the cursor just after it."""
        line = prompt + text

        def shown(screen: Screen) -> bool:
            row = screen.last_row_starting(prompt)
            return row is not None and screen.rows()[row] == line.rstrip() and screen.cursor == (_width(line), row)

        await self.expect(shown, f"the input line {line!r} with the cursor at its end", within=within)

    async def wait(self, *, within: float = 10.0) -> int:
        """Wait for the program to exit; its status (-N: killed by signal N)."""
        try:
            with trio.fail_after(within):
                await trio.to_thread.run_sync(self._wait_child, abandon_on_cancel=True)
        except trio.TooSlowError:
            raise AssertionError(f"{self.name} did not exit within {within} s\n{self}") from None
        status = self.child.exitstatus
        self.returncode = status if status is not None else -int(self.child.signalstatus or 0)
        return self.returncode

    def _wait_child(self) -> None:
        """Block until the program has exited. The reader thread's end-of-file check (pexpect's
        ``isalive``) may reap it at the same moment: then this thread's ``waitpid`` finds no child
        (``ChildProcessError``), and the status is the one that check records."""
        for _ in range(1000):  # (10 s at most; the caller's deadline comes first)
            try:
                if not self.child.isalive():
                    return
                self.child.wait()
                return
            except (ChildProcessError, pexpect.ExceptionPexpect):
                time.sleep(0.01)

    async def close(self) -> None:
        """Kill the program if it still runs; close the terminal."""
        await self._stop_reading()
        if self.child.isalive():
            self.child.kill(signal.SIGKILL)
        if not self.child.closed:
            self.child.close(force=True)

    def __str__(self) -> str:
        rows = self.screen.rows()
        while rows and not rows[-1]:
            rows.pop()
        column, row = self.screen.cursor
        shown = "\n".join(f"  |{r}" for r in rows)
        tail = bytes(self.screen.raw[-600:])
        return (
            f"--- {self.name}'s screen (cursor at column {column}, row {row}):\n{shown}\n"
            f"--- the last bytes it printed: {tail!r}\n{self.group.transcript()}"
        )


def _width(text: str) -> int:
    """Cells ``text`` takes on the screen (pyte's rule: East Asian wide characters and emoji take two)."""
    return int(wcswidth(text))
