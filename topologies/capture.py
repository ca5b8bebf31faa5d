"""Packet captures in Mininet hosts, and a small pcap reader for UDP over IPv4 and IPv6 on Ethernet.

Used to prove where natchat's datagrams went: ``tcpdump`` writes a classic pcap file in the host's
namespace; :func:`udp_datagrams` reads it back (no scapy needed).
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Datagram:
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes
    ip_version: int = 4
    """4 or 6; IPv6 addresses are written compressed (``fd00:1::2``)."""

    @property
    def natchat_type(self) -> str | None:
        """The natchat message type (``t``) of the payload, if it is one."""
        try:
            obj = json.loads(self.payload)
        except ValueError:
            return None
        return obj.get("t") if isinstance(obj, dict) else None


def udp_datagrams(path: str) -> list[Datagram]:
    """Every UDP datagram over IPv4 or IPv6 in the pcap file at ``path`` (Ethernet link type).

    IPv6: only UDP right after the fixed header (no extension headers, which natchat never sends)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return []
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    if linktype != 1:
        raise ValueError(f"{path}: link type {linktype}, expected Ethernet (1)")
    out = []
    offset = 24
    while offset + 16 <= len(data):
        incl = struct.unpack(endian + "I", data[offset + 8 : offset + 12])[0]
        frame = data[offset + 16 : offset + 16 + incl]
        offset += 16 + incl
        if frame[12:14] == b"\x86\xdd":
            if (datagram := _udp6(frame[14:])) is not None:
                out.append(datagram)
            continue
        if len(frame) < 14 + 20 or frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        if ip[9] != 17 or len(ip) < ihl + 8:
            continue
        src = ".".join(str(b) for b in ip[12:16])
        dst = ".".join(str(b) for b in ip[16:20])
        sport, dport, length = struct.unpack("!HHH", ip[ihl : ihl + 6])
        out.append(Datagram(src, sport, dst, dport, ip[ihl + 8 : ihl + length]))
    return out


def _udp6(ip: bytes) -> Datagram | None:
    if len(ip) < 40 + 8 or ip[6] != 17:
        return None
    src = str(ipaddress.IPv6Address(ip[8:24]))
    dst = str(ipaddress.IPv6Address(ip[24:40]))
    sport, dport, length = struct.unpack("!HHH", ip[40:46])
    return Datagram(src, sport, dst, dport, ip[48 : 40 + length], ip_version=6)


class Capture:
    """tcpdump on one interface of a host, until stopped; then its UDP datagrams."""

    def __init__(self, host: Any, intf: str, bpf: str = "udp") -> None:
        fd, self.path = tempfile.mkstemp(prefix=f"natchat-{intf}-", suffix=".pcap")
        os.close(fd)
        self.proc: subprocess.Popen[bytes] = host.popen(
            # --immediate-mode: hand every packet over at once (not per filled block), so a capture
            # stopped a few milliseconds after the traffic still holds all of it
            ["tcpdump", "-i", intf, "-n", "-U", "--immediate-mode", "-s", "2048", "-w", self.path, bpf],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._wait_until_listening()

    def _wait_until_listening(self) -> None:
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 5
        line = b""
        while time.monotonic() < deadline and b"listening on" not in line:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tcpdump exited: {self.proc.stderr.read().decode(errors='replace')}")
            line = self.proc.stderr.readline()

    def stop(self) -> list[Datagram]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=2)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        try:
            return udp_datagrams(self.path)
        finally:
            os.unlink(self.path)


@contextmanager
def capturing(host: Any, intf: str, bpf: str = "udp") -> Iterator[list[Datagram]]:
    """``with capturing(h, "h-eth0") as got:`` ... after the block, ``got`` holds the datagrams."""
    cap = Capture(host, intf, bpf)
    got: list[Datagram] = []
    try:
        yield got
    finally:
        got.extend(cap.stop())
