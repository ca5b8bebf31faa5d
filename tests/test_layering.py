"""natchat.proto is sans-I/O: it imports no trio or socket and reads no clock."""

from __future__ import annotations

import ast
import pathlib

import pytest

PROTO = pathlib.Path(__file__).parent.parent / "natchat" / "proto"
FORBIDDEN_MODULES = {"trio", "socket", "asyncio", "time", "threading", "select", "selectors"}


@pytest.mark.parametrize("path", sorted(PROTO.glob("*.py")), ids=lambda p: p.name)
def test_proto_module_does_no_io(path: pathlib.Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        for name in names:
            assert name.split(".")[0] not in FORBIDDEN_MODULES, f"{path.name} imports {name}"
