"""Lines to and from the terminal, which can go away while the program runs.

A terminal window that closes hangs up its session: reads from it then fail with ``EIO`` (a
pseudo-terminal whose other side closed) or return end of input, and writes fail with ``EIO``. A pipe
whose reader exits makes writes fail with ``EPIPE``. The kernel's SIGHUP usually comes first, but not
always: either way the programs leave as they would at end of input, never with a traceback.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TextIO

import trio


class OutputGone(Exception):
    """A line could not be written: the terminal hung up or the reader of the pipe went away."""


def write_line(stream: TextIO, text: str) -> None:
    """Write ``text`` and a newline to ``stream`` now; :class:`OutputGone` if nobody can read it any more.

    From then on the stream's descriptor writes to ``/dev/null``, so later lines, and the flush at
    interpreter exit, do not fail again.
    """
    try:
        print(text, file=stream, flush=True)
    except OSError as exc:
        with contextlib.suppress(OSError, ValueError):  # ValueError: a stream without a descriptor
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, stream.fileno())
            finally:
                os.close(devnull)
        raise OutputGone(f"cannot write to standard {'error' if stream is sys.stderr else 'output'}") from exc


def print_out(text: str) -> None:
    write_line(sys.stdout, text)


def print_err(text: str) -> None:
    write_line(sys.stderr, text)


def _readline() -> str:
    try:
        return sys.stdin.readline()
    except OSError:  # EIO: the terminal hung up; that is the end of input
        return ""


async def read_stdin_line() -> str:
    """The next line of standard input (a terminal or a pipe) with its newline; ``""`` at its end,
    including a terminal that hung up. Does not block the event loop.

    A worker thread does the blocking read; cancelling abandons it, which is harmless at exit.
    """
    return await trio.to_thread.run_sync(_readline, abandon_on_cancel=True)
