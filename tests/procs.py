"""Drive real processes from Trio tests: send lines, wait for lines, keep the whole transcript.

Every wait is bounded and, when it runs out, fails with an :class:`AssertionError` that shows what
every process of the group printed so far (with timestamps), so a failure explains itself.

    async with open_procs() as procs:
        server = await procs.start("server", [sys.executable, "-m", "natchat", "serve", ...])
        await server.expect_line(re.compile(r"client1 (\\S+)"), within=5)
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import trio

Pattern = str | re.Pattern[str]
"""A ``str`` matches a whole line exactly; a compiled pattern must match the whole line (``fullmatch``)."""

STREAMS = ("out", "err")


def has_ipv6_loopback() -> bool:
    """Whether this machine can bind ::1 (tests of IPv6 skip otherwise)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port nothing is bound to right now (bound to port 0 and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _matches(pattern: Pattern, line: str) -> re.Match[str] | None:
    if isinstance(pattern, str):
        return re.fullmatch(re.escape(pattern), line)
    return pattern.fullmatch(line)


def _describe(pattern: Pattern) -> str:
    return repr(pattern) if isinstance(pattern, str) else f"/{pattern.pattern}/"


class Proc:
    """One running process: its stdin, and every line it printed on stdout (``out``) and stderr (``err``)."""

    def __init__(self, group: ProcGroup, name: str, args: Sequence[str], process: trio.Process) -> None:
        self.group = group
        self.name = name
        self.args = list(args)
        self.process = process
        self.started_at = trio.current_time()
        self.returncode: int | None = None
        self.exited_at: float | None = None
        self._lines: dict[str, list[str]] = {s: [] for s in STREAMS}
        self._stamps: dict[str, list[float]] = {s: [] for s in STREAMS}
        self._raw: dict[str, bytearray] = {s: bytearray() for s in STREAMS}
        self._eof: dict[str, bool] = dict.fromkeys(STREAMS, False)
        self._cursor: dict[str, int] = dict.fromkeys(STREAMS, 0)
        self._sent: list[tuple[float, str]] = []

    # --- what it printed ---------------------------------------------------------------------------------

    def lines(self, stream: str = "out") -> list[str]:
        """Every complete line printed on ``stream`` so far (without newlines)."""
        return list(self._lines[stream])

    def text(self, stream: str = "out") -> str:
        """Everything printed on ``stream`` so far, partial last line included."""
        return self._raw[stream].decode("utf-8", "replace")

    def count(self, pattern: Pattern, stream: str = "out") -> int:
        """How many lines printed on ``stream`` so far match ``pattern``."""
        return sum(1 for line in self._lines[stream] if _matches(pattern, line))

    def mark(self, stream: str = "out") -> int:
        """Skip everything printed so far on ``stream``: later expects only see what comes next.

        Returns the index (in :meth:`lines`) of the next line to be printed.
        """
        self._cursor[stream] = len(self._lines[stream])
        return self._cursor[stream]

    def position(self, stream: str = "out") -> int:
        """Index (in :meth:`lines`) just past the line the last :meth:`expect_line` matched."""
        return self._cursor[stream]

    @property
    def running(self) -> bool:
        return self.returncode is None

    # --- talking to it -----------------------------------------------------------------------------------

    async def send(self, line: str) -> None:
        """Write ``line`` (a newline is added if missing) to its standard input."""
        if not line.endswith("\n"):
            line += "\n"
        self._sent.append((trio.current_time(), line.rstrip("\n")))
        assert self.process.stdin is not None
        try:
            with trio.fail_after(5):
                await self.process.stdin.send_all(line.encode())
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError) as exc:
            raise AssertionError(f"cannot write to {self.name}: {exc!r}\n{self.group.transcript()}") from None

    async def close_stdin(self) -> None:
        """End of input, as Ctrl-D would."""
        self._sent.append((trio.current_time(), "<end of input>"))
        assert self.process.stdin is not None
        with trio.fail_after(5):
            await self.process.stdin.aclose()

    def send_signal(self, sig: signal.Signals) -> None:
        self._sent.append((trio.current_time(), f"<{sig.name}>"))
        if self.returncode is None:
            self.process.send_signal(sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    # --- waiting -------------------------------------------------------------------------------------------

    async def expect_line(self, pattern: Pattern, stream: str = "out", *, within: float = 5.0) -> re.Match[str]:
        """Wait for a line matching ``pattern`` on ``stream`` after the previous expected one; return the match.

        Lines skipped over are not looked at again by later calls (but stay in the transcript).
        """
        found: list[re.Match[str]] = []

        def seen() -> bool:
            lines = self._lines[stream]
            for index in range(self._cursor[stream], len(lines)):
                if (match := _matches(pattern, lines[index])) is not None:
                    self._cursor[stream] = index + 1
                    found.append(match)
                    return True
            return False

        await self.group.wait_until(seen, within, f"{self.name} {stream}: a line {_describe(pattern)}")
        return found[0]

    async def expect_text(self, text: str, stream: str = "out", *, within: float = 5.0) -> None:
        """Wait until ``text`` appears anywhere on ``stream`` (partial lines too, e.g. a prompt)."""
        await self.group.wait_until(lambda: text in self.text(stream), within, f"{self.name} {stream}: {text!r}")

    async def expect_count(self, pattern: Pattern, count: int, stream: str = "out", *, within: float = 5.0) -> None:
        """Wait until at least ``count`` lines on ``stream`` (anywhere, from the start) match ``pattern``."""
        await self.group.wait_until(
            lambda: self.count(pattern, stream) >= count,
            within,
            f"{self.name} {stream}: {count} line(s) {_describe(pattern)}",
        )

    async def wait(self, within: float = 5.0) -> int:
        """Wait for it to exit and for its output to end; return the exit status."""
        await self.group.wait_until(
            lambda: self.returncode is not None and all(self._eof.values()), within, f"{self.name} to exit"
        )
        assert self.returncode is not None
        return self.returncode

    # --- plumbing ------------------------------------------------------------------------------------------

    async def _read(self, stream: str, source: trio.abc.ReceiveStream) -> None:
        pending = b""
        while True:
            try:
                data = await source.receive_some(65536)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                data = b""
            now = trio.current_time()
            if not data:
                if pending:
                    self._add_line(stream, pending, now)
                self._eof[stream] = True
                self.group.changed()
                return
            self._raw[stream] += data
            pending += data
            *complete, pending = pending.split(b"\n")
            for line in complete:
                self._add_line(stream, line, now)
            self.group.changed()

    def _add_line(self, stream: str, line: bytes, now: float) -> None:
        self._lines[stream].append(line.decode("utf-8", "replace").rstrip("\r"))
        self._stamps[stream].append(now)

    async def _watch(self) -> None:
        self.returncode = await self.process.wait()
        self.exited_at = trio.current_time()
        self.group.changed()

    def transcript(self) -> str:
        """Everything sent to and printed by this process, in time order, with times since the group began."""
        t0 = self.group.started_at
        entries: list[tuple[float, int, str]] = [(t, 0, f"   in: {text}") for t, text in self._sent]
        for stream in STREAMS:
            partial = self._raw[stream].decode("utf-8", "replace").split("\n")[-1]
            for t, line in zip(self._stamps[stream], self._lines[stream], strict=True):
                entries.append((t, 1, f"  {stream:>3}: {line}"))
            if partial and not self._eof[stream]:
                entries.append((float("inf"), 1, f"  {stream:>3}: {partial}  (no newline yet)"))
        if self.exited_at is not None:
            entries.append((self.exited_at, 2, f"  exited with status {self.returncode}"))
        entries.sort(key=lambda e: (e[0], e[1]))
        body = "\n".join(f"{t - t0:7.3f}{text}" if t != float("inf") else f"      ?{text}" for t, _, text in entries)
        state = "running" if self.returncode is None else f"exit status {self.returncode}"
        return f"--- {self.name} ({state}): {subprocess.list2cmdline(self.args)}\n{body}"


class ProcGroup:
    """The processes of one test; every one is killed when the group closes."""

    def __init__(self, nursery: trio.Nursery, env: dict[str, str], config_root: str | None = None) -> None:
        self.nursery = nursery
        self.env = env
        self.config_root = config_root
        """Each process gets its own ``XDG_CONFIG_HOME`` under this (by its name: a restart under the same
        name keeps its identity and pins), so tests share no pins and never write to ~/.config."""
        self.procs: list[Proc] = []
        self.started_at = trio.current_time()
        self._changed = trio.Event()

    async def start(self, name: str, args: Sequence[str], *, env: dict[str, str] | None = None) -> Proc:
        """Start ``args`` with pipes for stdin, stdout and stderr."""
        process = await trio.lowlevel.open_process(
            list(args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**self.env, **self._config_home(name), **(env or {})},
        )
        proc = Proc(self, name, args, process)
        self.procs.append(proc)
        assert process.stdout is not None and process.stderr is not None
        self.nursery.start_soon(proc._read, "out", process.stdout)
        self.nursery.start_soon(proc._read, "err", process.stderr)
        self.nursery.start_soon(proc._watch)
        return proc

    def _config_home(self, name: str) -> dict[str, str]:
        if self.config_root is None:
            return {}
        return {"XDG_CONFIG_HOME": os.path.join(self.config_root, re.sub(r"[^A-Za-z0-9._-]", "_", name))}

    def changed(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_until(self, condition: Callable[[], bool], within: float, what: str) -> None:
        """Wait (at most ``within`` seconds) until ``condition()`` is true; it is checked after every output."""
        try:
            with trio.fail_after(within):
                while not condition():
                    await self._changed.wait()
        except trio.TooSlowError:
            raise AssertionError(f"timed out after {within:g} s waiting for {what}\n{self.transcript()}") from None

    def transcript(self) -> str:
        return "\n".join(proc.transcript() for proc in self.procs)

    async def aclose(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()
        with trio.move_on_after(10):
            for proc in self.procs:
                await proc.process.wait()
                if proc.process.stdin is not None:
                    await proc.process.stdin.aclose()


def _clean_env() -> dict[str, str]:
    """This environment without settings that would change what natchat does."""
    return {k: v for k, v in os.environ.items() if not k.startswith("NATCHAT_")}


@asynccontextmanager
async def open_procs() -> AsyncIterator[ProcGroup]:
    """A :class:`ProcGroup` whose processes are all killed (and reaped) on the way out, failure or not."""
    with tempfile.TemporaryDirectory(prefix="natchat-test-config-") as config_root:
        async with _open_group(config_root) as group:
            yield group


@asynccontextmanager
async def _open_group(config_root: str) -> AsyncIterator[ProcGroup]:
    async with trio.open_nursery() as nursery:
        group = ProcGroup(nursery, _clean_env(), config_root)
        try:
            yield group
        finally:
            with trio.CancelScope(shield=True):
                await group.aclose()
            nursery.cancel_scope.cancel()
