"""A loopback demo: a server and three clients register, list, chat and exit; prints who typed and saw what.

Run with ``make demo`` (or ``python scripts/demo_loopback.py``). Everything stays on 127.0.0.1 and stops
by itself; it exits non-zero if anything a user should see does not appear.
"""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass, field

import trio

WAIT = 10.0  # seconds allowed for each expected line


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Actor:
    name: str
    proc: trio.Process
    seen: list[str] = field(default_factory=list)
    pos: int = 0
    changed: trio.Event = field(default_factory=trio.Event)

    def show(self, text: str, mark: str = " ") -> None:
        print(f"{self.name:>7} {mark} {text}", flush=True)

    async def pump(self, stream: trio.abc.ReceiveStream, err: bool) -> None:
        buffer = b""
        async for chunk in stream:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace")
                self.seen.append(line)
                self.show(line, "!" if err and line.startswith("error") else "|")
                self.changed.set()
                self.changed = trio.Event()

    async def type(self, line: str) -> None:
        self.show(line, ">")
        assert self.proc.stdin is not None
        await self.proc.stdin.send_all(line.encode() + b"\n")

    async def expect(self, text: str) -> None:
        """Wait for a line containing ``text`` after the last one expected."""
        with trio.fail_after(WAIT):
            while True:
                for index in range(self.pos, len(self.seen)):
                    if text in self.seen[index]:
                        self.pos = index + 1
                        return
                await self.changed.wait()


async def start(nursery: trio.Nursery, name: str, *args: str) -> Actor:
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-u", "-m", "natchat", *args],
        stdin=-1 if name != "server" else None,
        stdout=-1,
        stderr=-1,
    )
    actor = Actor(name, proc)
    assert proc.stdout is not None and proc.stderr is not None
    nursery.start_soon(actor.pump, proc.stdout, False)
    nursery.start_soon(actor.pump, proc.stderr, True)
    return actor


async def demo() -> None:
    port = free_udp_port()
    server_addr = f"127.0.0.1:{port}"
    print(f"natchat loopback demo: server on {server_addr}; '>' is typed, '|' is seen\n", flush=True)
    async with trio.open_nursery() as nursery:
        server = await start(nursery, "server", "serve", "--host", "127.0.0.1", "--port", str(port))
        names = ["alice", "bob", "carol"]
        clients = {}
        for name in names:
            clients[name] = await start(nursery, name, "join", name, "--server", server_addr, "--port", "0")
            await server.expect(f"{name} 127.0.0.1:")
        alice, bob, carol = (clients[n] for n in names)
        for actor in clients.values():
            await actor.expect("registered")

        await alice.type("@show_list")
        await alice.expect("carol 127.0.0.1:")
        await alice.type("@chat bob hi bob, this goes straight to you")
        await bob.expect("From alice [hi bob, this goes straight to you]")
        await bob.type("@chat carol carol, are you there?")
        await carol.expect("From bob [carol, are you there?]")
        await carol.type("@chat alice yes, and alice too")
        await alice.expect("From carol [yes, and alice too]")
        await carol.type("@chat dave hello?")
        await carol.expect("dave is not in the list")
        await bob.type("@dance")
        await bob.expect("wrong instruction retype")

        await carol.type("@exit")
        await server.expect("carol is deregistered")
        with trio.fail_after(WAIT):
            await carol.proc.wait()
        await alice.type("@show_list")
        await alice.expect("bob 127.0.0.1:")
        for actor in (alice, bob):
            await actor.type("@exit")
            with trio.fail_after(WAIT):
                await actor.proc.wait()
        await server.expect("bob is deregistered")
        server.proc.terminate()
        with trio.fail_after(WAIT):
            await server.proc.wait()
    print("\ndemo finished: 3 clients registered, chatted peer to peer and left", flush=True)


def main() -> None:
    try:
        trio.run(demo)
    except* trio.TooSlowError:
        print("demo FAILED: an expected line did not appear in time", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
