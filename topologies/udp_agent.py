#!/usr/bin/python3
"""A tiny UDP agent to run inside Mininet hosts, and its remote control.

As a script (stdlib only), inside a host::

    /usr/bin/python3 topologies/udp_agent.py --port 10081 [--echo] [--lifetime 60]

binds 0.0.0.0:PORT and
  * prints one JSON line per event on stdout:
      {"event": "ready", "port": P}
      {"event": "recv", "ip": ..., "port": ..., "data": ...}
  * reads one JSON command per line on stdin:
      {"cmd": "send", "ip": ..., "port": ..., "data": ...}
      {"cmd": "quit"}
  * with --echo answers every datagram with the JSON text
      {"seen_ip": <source ip>, "seen_port": <source port>, "data": <data>}
    i.e. it tells the sender its (translated) public address;
  * exits by itself after --lifetime seconds, or when stdin closes.

As a module, UdpAgent starts it in a Mininet host via host.popen() and
talks to it with bounded waits.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

AGENT_PATH = os.path.abspath(__file__)
PYTHON = "/usr/bin/python3"


def _emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def serve(port: int, echo: bool, lifetime: float) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    _emit({"event": "ready", "port": sock.getsockname()[1]})
    deadline = time.monotonic() + lifetime
    stdin = sys.stdin.fileno()
    pending = b""
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([sock, stdin], [], [], min(left, 1.0))
        if sock in readable:
            data, (ip, src_port) = sock.recvfrom(65535)
            text = data.decode(errors="replace")
            _emit({"event": "recv", "ip": ip, "port": src_port, "data": text})
            if echo:
                reply = {"seen_ip": ip, "seen_port": src_port, "data": text}
                sock.sendto(json.dumps(reply).encode(), (ip, src_port))
        if stdin in readable:
            chunk = os.read(stdin, 65536)
            if not chunk:
                return 0
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                command = json.loads(line)
                if command["cmd"] == "quit":
                    return 0
                if command["cmd"] == "send":
                    sock.sendto(command["data"].encode(), (command["ip"], int(command["port"])))
    return 0


@dataclass(frozen=True)
class Datagram:
    ip: str
    port: int
    data: str

    def echo_reply(self) -> dict[str, Any] | None:
        """The parsed reply of an --echo agent, or None."""
        try:
            reply = json.loads(self.data)
        except ValueError:
            return None
        return reply if isinstance(reply, dict) and "seen_port" in reply else None


class UdpAgent:
    """Remote control for one agent process inside a Mininet host."""

    def __init__(
        self, host: Any, port: int, *, echo: bool = False, lifetime: float = 120.0, ready_timeout: float = 5.0
    ) -> None:
        self.host = host
        self.port = port
        self.proc: subprocess.Popen[bytes] = host.popen(
            [PYTHON, AGENT_PATH, "--port", str(port), "--lifetime", str(lifetime)] + (["--echo"] if echo else []),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._buffer = b""
        event = self._next_event(ready_timeout)
        if not event or event.get("event") != "ready":
            err = self.proc.stderr.read1(4096) if self.proc.poll() is not None else b""
            self.close()
            raise RuntimeError(f"agent on {host.name}:{port} did not start: {err!r}")

    def __enter__(self) -> UdpAgent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next_event(self, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], left)
            if not readable:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        event: dict[str, Any] = json.loads(line)
        return event

    def send(self, ip: str, port: int, data: str) -> None:
        assert self.proc.stdin is not None
        command = {"cmd": "send", "ip": ip, "port": port, "data": data}
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        self.proc.stdin.flush()

    def recv(self, timeout: float) -> Datagram | None:
        """The next datagram received within timeout seconds, or None."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            event = self._next_event(left)
            if event is None:
                return None
            if event.get("event") == "recv":
                return Datagram(event["ip"], int(event["port"]), event["data"])
        return None

    def collect(self, duration: float) -> list[Datagram]:
        """Every datagram received during the next duration seconds."""
        got = []
        deadline = time.monotonic() + duration
        while (left := deadline - time.monotonic()) > 0:
            datagram = self.recv(left)
            if datagram is None:
                break
            got.append(datagram)
        return got

    def ask_mapping(self, ip: str, port: int, timeout: float = 2.0) -> tuple[str, int] | None:
        """Send to an --echo agent at ip:port; return the (ip, port) it saw."""
        tag = f"probe-{time.monotonic_ns()}"
        self.send(ip, port, tag)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            datagram = self.recv(left)
            if datagram is None:
                return None
            reply = datagram.echo_reply()
            if reply and reply.get("data") == tag:
                return str(reply["seen_ip"]), int(reply["seen_port"])
        return None

    def close(self, timeout: float = 3.0) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(b'{"cmd": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(timeout)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(timeout)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--echo", action="store_true")
    parser.add_argument("--lifetime", type=float, default=60.0)
    args = parser.parse_args()
    return serve(args.port, args.echo, args.lifetime)


if __name__ == "__main__":
    sys.exit(main())
