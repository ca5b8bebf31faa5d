"""natchat/console.py on real descriptors: a terminal that hangs up mid-read, a pipe whose reader left."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest
import trio

from natchat import console


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A pseudo-terminal as standard input; yields its master side (the terminal window's end)."""
    master, slave = os.openpty()
    with open(slave, encoding="utf-8") as stdin:
        monkeypatch.setattr(sys, "stdin", stdin)
        yield master


async def test_a_read_blocked_when_the_terminal_hangs_up_is_end_of_input(terminal: int) -> None:
    os.write(terminal, b"@show_list\n")
    assert await console.read_stdin_line() == "@show_list\n"
    got: list[str] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:

            async def read() -> None:
                got.append(await console.read_stdin_line())

            nursery.start_soon(read)
            await trio.sleep(0.2)  # the worker thread is now blocked in read(2), where EIO comes
            os.close(terminal)  # the terminal window closes
    assert got == [""]


def test_a_line_to_a_pipe_nobody_reads_is_output_gone_once() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    with open(write_end, "w", encoding="utf-8") as stream:
        with pytest.raises(console.OutputGone):
            console.write_line(stream, "From client2 [hello]")
        console.write_line(stream, "later lines go nowhere, quietly")
        stream.write("and so does what is still buffered at exit")
    # closing flushed it without an error: the descriptor is /dev/null now
