"""natchat.proto is sans-I/O: no unit imports trio or socket, reads a clock, or draws randomness it was
not given.

Every module under ``natchat/proto/`` (its sub-packages too) is checked. Time is always passed in
(``now``). Randomness is a parameter: a unit may fall back to a source of its own only as the default
of a parameter its caller can set (a default argument, or ``given if given is not None else source()``
/ ``given or source()`` on one of its parameters), so that tests can make every draw deterministic.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PROTO = pathlib.Path(__file__).parent.parent / "natchat" / "proto"
FORBIDDEN_MODULES = {"trio", "socket", "asyncio", "time", "datetime", "threading", "select", "selectors"}
RANDOM_CALLS = {
    ("os", "urandom"),
    ("os", "getrandom"),
    ("uuid", "uuid1"),
    ("uuid", "uuid4"),
    *(("secrets", name) for name in ("token_hex", "token_bytes", "token_urlsafe", "randbelow", "randbits", "choice")),
}
"""``module.function`` calls that draw randomness; every ``random.*`` call does too, and so does
``SomethingPrivateKey.generate()``."""


def _modules() -> list[pathlib.Path]:
    return sorted(PROTO.rglob("*.py"))


def _draws_randomness(call: ast.Call) -> bool:
    func = call.func
    if not isinstance(func, ast.Attribute) or not isinstance(func.value, ast.Name):
        return False
    owner, name = func.value.id, func.attr
    if owner == "random":
        return not (name == "Random" and call.args)  # random.Random(seed) is deterministic
    if name == "generate" and owner.endswith("PrivateKey"):
        return True
    return (owner, name) in RANDOM_CALLS


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _params(func: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> set[str]:
    args = func.args
    return {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)}


def _is_given_or_default(call: ast.Call, parents: dict[ast.AST, ast.AST]) -> bool:
    """The call is a parameter's default, or the fallback when the caller did not give that parameter."""
    node: ast.AST = call
    while (parent := parents.get(node)) is not None:
        if isinstance(parent, ast.arguments) and (node in parent.defaults or node in parent.kw_defaults):
            return True
        if isinstance(parent, ast.IfExp) and node is parent.orelse:
            test = parent.test
            if (
                isinstance(test, ast.Compare)
                and isinstance(test.left, ast.Name)
                and isinstance(test.comparators[0], ast.Constant)
                and test.comparators[0].value is None
                and isinstance(test.ops[0], ast.IsNot)
                and test.left.id in _enclosing_params(parent, parents)
            ):
                return True
        if isinstance(parent, ast.BoolOp) and isinstance(parent.op, ast.Or) and node is parent.values[-1]:
            first = parent.values[0]
            if isinstance(first, ast.Name) and first.id in _enclosing_params(parent, parents):
                return True
        if isinstance(parent, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Module):
            return False
        node = parent
    return False


def _enclosing_params(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> set[str]:
    while (node := parents.get(node)) is not None:  # type: ignore[assignment]
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            return _params(node)
    return set()


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PROTO)))
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


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PROTO)))
def test_proto_module_draws_only_randomness_it_was_given(path: pathlib.Path) -> None:
    tree = ast.parse(path.read_text())
    parents = _parents(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _draws_randomness(node) and not _is_given_or_default(node, parents):
            pytest.fail(f"{path.name}:{node.lineno}: {ast.unparse(node)} draws randomness nobody passed in")


def test_the_randomness_check_can_fail() -> None:
    """The checker itself: a draw in a method body is caught; the same draw as a default is not."""
    bad = ast.parse("class A:\n    def f(self):\n        return secrets.token_hex(16)\n")
    good = ast.parse(
        "class A:\n"
        "    def __init__(self, rng=None, key=None, make=lambda: os.urandom(4)):\n"
        "        self.rng = rng or random.Random()\n"
        "        self.key = key if key is not None else secrets.token_bytes(32)\n"
    )
    for tree, expected in ((bad, [False]), (good, [True, True, True])):
        parents = _parents(tree)
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _draws_randomness(n)]
        assert [_is_given_or_default(c, parents) for c in calls] == expected
    assert list(PROTO.rglob("*.py")), "no modules found: the checks above would pass vacuously"
