"""Drive a line-oriented program inside a Mininet host: type lines, wait for what it prints.

Runs under Debian's /usr/bin/python3 (no trio there), so it uses ``select`` with bounded waits. Every
line read is kept in a shared :class:`Transcript`, with the time, the host and the stream, so a
failure (or ``make demo``) can show exactly what each host typed and saw.
"""

from __future__ import annotations

import atexit
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NATCHAT = os.environ.get("NATCHAT_BIN", os.path.join(REPO, ".venv", "bin", "natchat"))
# natchat join keeps its identity and its pins in the config directory. Each program a run starts gets
# its own, named after it (a client that restarts under its name keeps its identity, as a user's would),
# in a directory made for the run and removed at its end: never root's own ~/.config, and runs neither
# see each other's pins nor leave files behind.
RUN_CONFIG = tempfile.mkdtemp(prefix="natchat-mininet-")
atexit.register(shutil.rmtree, RUN_CONFIG, ignore_errors=True)


def config_home(name: str) -> str:
    """The ``XDG_CONFIG_HOME`` of the program named ``name`` in this run."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name) or "_"
    return os.path.join(RUN_CONFIG, safe)


@dataclass
class Transcript:
    """Everything started (``$``), typed (``>``) and printed (``|`` stdout, ``!`` stderr), by whom."""

    start: float = field(default_factory=time.monotonic)
    lines: list[tuple[float, str, str, str]] = field(default_factory=list)
    echo: bool = False

    def add(self, who: str, mark: str, text: str) -> None:
        entry = (time.monotonic() - self.start, who, mark, text)
        self.lines.append(entry)
        if self.echo:
            print(self.format(entry), flush=True)

    @staticmethod
    def format(entry: tuple[float, str, str, str]) -> str:
        at, who, mark, text = entry
        return f"{at:7.2f}s {who:>8} {mark} {text}"

    def dump(self, last: int | None = None) -> str:
        lines = self.lines if last is None else self.lines[-last:]
        return "\n".join(self.format(e) for e in lines)

    def of(self, *who: str) -> str:
        """What these programs started, were typed and printed (say, the two of a pair that failed)."""
        return "\n".join(self.format(e) for e in self.lines if e[1] in who)


class Expired(AssertionError):
    """An expected line did not appear in time."""


class HostProc:
    """One process in a Mininet host, with its stdin, stdout and stderr on pipes."""

    def __init__(self, host: Any, argv: Sequence[str], transcript: Transcript, name: str | None = None) -> None:
        self.host = host
        self.name = name or host.name
        self.transcript = transcript
        shown = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(argv))
        transcript.add(self.name, "$", f"[on {host.name} {host.IP()}] {shown}")
        env = {**os.environ, "XDG_CONFIG_HOME": config_home(self.name)}
        self.proc: subprocess.Popen[bytes] = host.popen(
            list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._fds = {self.proc.stdout.fileno(): "out", self.proc.stderr.fileno(): "err"}
        for fd in self._fds:
            os.set_blocking(fd, False)
        self._partial = {"out": b"", "err": b""}
        self.out: list[str] = []
        self.err: list[str] = []
        self._consumed = {"out": 0, "err": 0}

    def type(self, line: str) -> None:
        self.transcript.add(self.name, ">", line)
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def close_input(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def _pump(self, timeout: float) -> None:
        fds = [fd for fd in self._fds if fd >= 0]
        if not fds:
            time.sleep(timeout)
            return
        ready, _, _ = select.select(fds, [], [], max(0.0, timeout))
        for fd in ready:
            stream = self._fds[fd]
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                del self._fds[fd]
                self._fds[-1 - len(self._fds)] = stream  # keep the count; never selected again
                continue
            data = self._partial[stream] + chunk
            *lines, self._partial[stream] = data.split(b"\n")
            for raw in lines:
                text = raw.decode(errors="replace")
                (self.out if stream == "out" else self.err).append(text)
                self.transcript.add(self.name, "|" if stream == "out" else "!", text)

    def poll(self, seconds: float = 0.0) -> None:
        """Read whatever arrives within ``seconds``."""
        deadline = time.monotonic() + seconds
        while True:
            self._pump(max(0.0, deadline - time.monotonic()))
            if time.monotonic() >= deadline:
                return

    def expect(self, pattern: str, within: float = 10.0, stream: str = "out") -> re.Match[str]:
        """Wait for a line (after the last one expected on that stream) matching regex ``pattern``."""
        lines = self.out if stream == "out" else self.err
        regex = re.compile(pattern)
        deadline = time.monotonic() + within
        while True:
            for index in range(self._consumed[stream], len(lines)):
                if match := regex.search(lines[index]):
                    self._consumed[stream] = index + 1
                    return match
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Expired(f"{self.name}: no {stream} line matching {pattern!r} within {within:g} s")
            self._pump(min(remaining, 0.2))

    def lines_until(self, done: Callable[[list[str]], bool], within: float, stream: str = "out") -> list[str]:
        """Read until ``done(lines so far)``; returns the lines seen meanwhile (not consumed)."""
        lines = self.out if stream == "out" else self.err
        start = len(lines)
        deadline = time.monotonic() + within
        while not done(lines[start:]):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Expired(f"{self.name}: condition not met within {within:g} s")
            self._pump(min(remaining, 0.2))
        return lines[start:]

    def wait(self, within: float) -> int:
        """Wait for exit (reading output meanwhile); the exit status."""
        deadline = time.monotonic() + within
        while self.proc.poll() is None:
            if time.monotonic() >= deadline:
                raise Expired(f"{self.name}: still running after {within:g} s")
            self._pump(0.05)
        self.poll(0.05)
        return self.proc.returncode

    def signal(self, sig: int) -> None:
        self.transcript.add(self.name, "!", f"[sent {signal.Signals(sig).name}]")
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self) -> None:
        """Terminate if still running (bounded), then kill; whatever it printed lands in the transcript."""
        self.poll(0.05)
        if self.proc.poll() is not None:
            self.transcript.add(self.name, "!", f"[exited with status {self.proc.returncode}]")
        else:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.transcript.add(self.name, "!", "[did not stop within 2 s of SIGTERM; killed]")
                self.proc.kill()
                self.proc.wait(timeout=2)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None and not pipe.closed:
                pipe.close()


def natchat(host: Any, transcript: Transcript, *args: str, name: str | None = None) -> HostProc:
    """Start ``natchat ARGS`` inside ``host`` (from the project's virtualenv)."""
    return HostProc(host, [NATCHAT, *args], transcript, name=name)
