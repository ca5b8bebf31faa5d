"""What every scenario script in topologies/ shares: options, the root check, steps and their table, the
JSON report, starting natchat in hosts and reading what it prints.

A scenario script imports only natnet, this module, and hostproc / capture / udp_agent; never another
scenario. Runs under Debian's /usr/bin/python3 (stdlib only, like hostproc).

    sc = Scenario(Transcript(echo=args.demo))
    with sc.step("1 register") as detail:      # an exception marks the step failed, with the reason
        ...
        detail.append("what was measured")
    run_steps(sc, [lambda: ...])                # each in its own network; a broken one is a "setup" row
    print_table(sc)
    return report(sc.rows, sc.t, args, **extra)  # writes --json / --transcript; the exit status
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from capture import Datagram
from hostproc import Expired, HostProc, Transcript, natchat

__all__ = [
    "PATH_LINE",
    "Events",
    "Expired",
    "HostProc",
    "Row",
    "Scenario",
    "Transcript",
    "chats",
    "is_root",
    "join",
    "natchat",
    "now",
    "path_of",
    "print_table",
    "registry_lines",
    "report",
    "run_steps",
    "scenario_parser",
    "serve",
    "show_list",
]


# --- steps, the table and the report ------------------------------------------------------------------


@dataclass
class Row:
    """One step of a scenario: its name, whether it passed, how long it took, what it measured, and
    (optionally) how it was tested."""

    scenario: str
    passed: bool
    seconds: float
    detail: str
    how: str = ""


class Scenario:
    """The rows of one scenario run and the transcript they share."""

    def __init__(self, transcript: Transcript, dump_lines: int = 40) -> None:
        self.t = transcript
        self.rows: list[Row] = []
        self.dump_lines = dump_lines
        self.focus: tuple[str, ...] = ()
        """Programs whose lines a failure shows, all of them, instead of the transcript's last lines (a
        step that runs pair after pair names the pair it runs)."""

    @contextmanager
    def step(self, name: str, how: str = "") -> Iterator[list[str]]:
        """Time a step; an exception inside marks it failed (with the reason) and is not re-raised."""
        detail: list[str] = []
        start = time.monotonic()
        try:
            yield detail
        except Exception as exc:  # record it, show the transcript, go on to the next step
            detail.append(f"{type(exc).__name__}: {exc}")
            self.rows.append(Row(name, False, time.monotonic() - start, "; ".join(detail), how))
            if self.focus:
                dump = f"--- what {', '.join(self.focus)} did ---\n{self.t.of(*self.focus)}"
            else:
                dump = f"--- last lines of the transcript ---\n{self.t.dump(self.dump_lines)}"
            print(f"FAILED {name}: {exc}\n{dump}", file=sys.stderr)
            self.focus = ()
        else:
            self.rows.append(Row(name, True, time.monotonic() - start, "; ".join(detail), how))

    def ok(self, name: str) -> bool:
        return any(r.scenario == name and r.passed for r in self.rows)

    def setup_failed(self) -> None:
        """Record the exception being handled as a failed ``setup`` row (and show it)."""
        self.rows.append(Row("setup", False, 0.0, traceback.format_exc(limit=3).strip().splitlines()[-1]))
        traceback.print_exc()


def run_steps(sc: Scenario, steps: Iterable[Callable[[], None]]) -> None:
    """Run each step (typically: build a network, run scenarios in it); a broken one is a ``setup`` row
    and the others still run."""
    for run in steps:
        try:
            run()
        except Exception:  # a broken step must not stop the report (or the cleanup)
            sc.setup_failed()


def print_table(sc: Scenario) -> None:
    """One line per row (and a ``how:`` line where a row says how it was tested), then the tally."""
    rows = sc.rows or [Row("(nothing ran)", False, 0.0, "")]
    width = max(len(r.scenario) for r in rows)
    hows = any(r.how for r in rows)
    last = "measured" if hows else "detail"
    print(f"\n{'scenario':<{width}}  result  time     {last}")
    print(f"{'-' * width}  ------  -------  {'-' * len(last)}")
    for r in rows:
        print(f"{r.scenario:<{width}}  {'pass' if r.passed else 'FAIL':<6}  {r.seconds:6.1f}s  {r.detail}")
        if hows:
            print(f"{'':<{width}}                   how: {r.how}")
    failed = sum(not r.passed for r in sc.rows)
    print(f"\n{len(sc.rows) - failed} passed, {failed} failed")


def scenario_parser(doc: str | None) -> argparse.ArgumentParser:
    """The options every scenario script takes: --demo, --json and --transcript."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", action="store_true", help="print the transcript as it happens")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--transcript", metavar="PATH", help="write the whole transcript there")
    return parser


def is_root() -> bool:
    """True as root; otherwise says so on stderr (Mininet needs network namespaces)."""
    if os.geteuid() != 0:
        print("error: run as root (Mininet needs network namespaces)", file=sys.stderr)
    return os.geteuid() == 0


def report(rows: list[Row], transcript: Transcript, args: argparse.Namespace, **extra: Any) -> int:
    """Write the transcript and the JSON report (``rows`` and ``extra``) where asked; the exit status."""
    if args.transcript:
        with open(args.transcript, "w") as f:
            f.write(transcript.dump() + "\n")
    if args.json:
        out = [{k: v for k, v in asdict(r).items() if k != "how" or v} for r in rows]
        with open(args.json, "w") as f:
            json.dump({"rows": out, **extra}, f, indent=2)
    return 0 if rows and all(r.passed for r in rows) else 1


# --- natchat in hosts ------------------------------------------------------------------------------------


def serve(
    net: Any, t: Transcript, stack: ExitStack, *args: str, host: str = "server", name: str = "server"
) -> HostProc:
    """``natchat serve ARGS`` on ``host``, stopped when ``stack`` closes."""
    proc = natchat(net[host], t, "serve", *args, name=name)
    stack.callback(proc.stop)
    return proc


def join(net: Any, t: Transcript, stack: ExitStack, cid: str, host: str, *args: str) -> HostProc:
    """``natchat join CID ARGS`` on ``host``, stopped when ``stack`` closes."""
    proc = natchat(net[host], t, "join", cid, *args, name=cid)
    stack.callback(proc.stop)
    return proc


def show_list(proc: HostProc, expected: int, within: float = 5.0) -> list[tuple[str, str]]:
    """Type @show_list until it shows ``expected`` lines; returns (id, address) pairs."""
    deadline = time.monotonic() + within
    while True:
        proc.type("@show_list")
        time.sleep(0.3)
        proc.poll(0.1)
        lines = [line for line in proc.out[proc._consumed["out"] :] if re.fullmatch(r"\S+ \S+:\d+", line)]
        proc._consumed["out"] = len(proc.out)
        got = [tuple(line.split(" ")) for line in lines]
        if len(got) == expected or time.monotonic() > deadline:
            return [(a, b) for a, b in got]


def registry_lines(server: HostProc) -> list[tuple[str, str]]:
    """The server's registry as its output says: registrations minus departures, in order."""
    reg: dict[str, str] = {}
    for line in server.out:
        if m := re.fullmatch(r"(\S+) is (?:deregistered|disappeared) \S+", line):
            reg.pop(m.group(1), None)
        elif m := re.fullmatch(r"(\S+) (\S+:\d+)", line):
            reg[m.group(1)] = m.group(2)
    return list(reg.items())


PATH_LINE = r"^{peer}: (lan|direct|relay) via (?:the midPeer )?(\S+), rtt ([0-9.]+) ms$"
"""The human answer to ``@path PEER`` (format it with the peer's ID, escaped)."""


def path_of(proc: HostProc, peer: str) -> tuple[str, float]:
    """Type ``@path PEER`` (human mode); the path and its round-trip time in ms."""
    proc.type(f"@path {peer}")
    match = proc.expect(PATH_LINE.format(peer=re.escape(peer)), within=5)
    return match.group(1), float(match.group(3))


def chats(datagrams: list[Datagram]) -> list[Datagram]:
    """The captured datagrams that carry a chat message or its acknowledgement."""
    return [d for d in datagrams if d.natchat_type in ("chat", "chat_ack")]


# --- reading the --json event streams --------------------------------------------------------------------


class Events:
    """The JSON events one natchat process (``--json``) printed, with the time each line was read."""

    def __init__(self, proc: HostProc) -> None:
        self.proc = proc

    def all(self, kind: str | None = None) -> list[tuple[float, dict[str, Any]]]:
        """Its events so far (not those of an earlier process of the same name)."""
        found = []
        lines = self.proc.transcript.lines
        mine = [i for i, (_, who, mark, _) in enumerate(lines) if who == self.proc.name and mark == "$"]
        for at, who, mark, text in lines[mine[-1] if mine else 0 :]:
            if who != self.proc.name or mark != "|" or not text.startswith("{"):
                continue
            event = json.loads(text)
            if kind is None or event.get("event") == kind:
                found.append((at, event))
        return found

    def wait(self, kind: str, where: Callable[[dict[str, Any]], bool], within: float, after: float = 0.0) -> float:
        """Wait for an event of ``kind`` (read after transcript time ``after``) for which ``where`` holds;
        returns the transcript time it was read."""
        deadline = time.monotonic() + within
        while True:
            for at, event in self.all(kind):
                if at >= after and where(event):
                    return at
            if time.monotonic() >= deadline:
                raise Expired(f"{self.proc.name}: no {kind} event as expected within {within:g} s")
            self.proc.poll(0.1)


def now(t: Transcript) -> float:
    """The transcript's clock: seconds since it started (the times Events reports)."""
    return time.monotonic() - t.start
