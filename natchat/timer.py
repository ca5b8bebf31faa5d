"""The shells' one timer loop: a task that sleeps until the protocol object's next deadline.

Every sans-I/O object says when it next needs the time (``get_timer``); its shell arms the loop with
that deadline after each batch of work (:meth:`TimerLoop.arm`), and the loop calls back when it passes.
The deadline is a cancel scope's, so moving it costs nothing and no task wakes early.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import NoReturn

import trio


class TimerLoop:
    def __init__(self) -> None:
        self._scope = trio.CancelScope()

    def arm(self, deadline: float | None) -> None:
        """Wake at ``deadline`` (trio's clock; None: not until armed again)."""
        self._scope.deadline = math.inf if deadline is None else deadline

    async def run(self, on_timer: Callable[[], Awaitable[None]]) -> NoReturn:
        """Call ``on_timer`` each time the armed deadline passes, until cancelled."""
        while True:
            with self._scope:
                await trio.sleep_forever()
            self._scope = trio.CancelScope()  # disarmed until on_timer's work arms it again
            await on_timer()
