"""Fixtures shared by the tests that run natchat as real processes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .procs import ProcGroup, open_procs


@pytest.fixture
async def procs() -> AsyncIterator[ProcGroup]:
    """A group of processes, all stopped afterwards; none of them may have crashed with a traceback."""
    async with open_procs() as group:
        yield group
        for proc in group.procs:
            assert "Traceback" not in proc.text("err"), f"{proc.name} crashed\n{group.transcript()}"
