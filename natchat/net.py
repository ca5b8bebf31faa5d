"""Small socket helpers shared by the shells: binding, address conversion, endpoint parsing."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import trio

from .proto.wire import Addr

UDP_RECV_SIZE = 2048
"""Larger than any valid datagram (1200 bytes), so an oversize one is seen whole and rejected."""


class EndpointError(ValueError):
    """A HOST[:PORT] the user gave that cannot be used; the text says why."""


def to_addr(sockaddr: Any) -> Addr:
    """Turn a socket address (IPv4 or IPv6 tuple) into an :class:`Addr`; IPv4-mapped IPv6 unmapped."""
    host, port = sockaddr[0], sockaddr[1]
    ip = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return Addr(str(ip), port)


def split_endpoint(text: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address -> (host, port)."""
    text = text.strip()
    if not text:
        raise EndpointError("empty address")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise EndpointError(f"bad address {text!r}: expected [IPv6]:PORT")
        port_text = rest[1:] if rest else ""
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise EndpointError(f"bad port {port_text!r} in {text!r}: expected 1-65535")
    return host, int(port_text)


async def resolve_udp(text: str, default_port: int) -> Addr:
    """Resolve ``HOST[:PORT]`` to one address (IPv4 preferred, as the server listens on IPv4 by default)."""
    host, port = split_endpoint(text, default_port)
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise EndpointError(f"cannot resolve {host!r}: {exc.strerror}") from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    return to_addr(infos[0][4])


def family_of(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


async def bind_udp(host: str, port: int) -> trio.socket.SocketType:
    """A UDP socket bound to ``host:port``; ``::`` listens on IPv6 and IPv4 both."""
    sock = trio.socket.socket(family_of(host), socket.SOCK_DGRAM)
    try:
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        await sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def local_ip_toward(dest: Addr) -> str:
    """The local address the kernel routes ``dest`` from (a connected UDP socket sends nothing)."""
    with socket.socket(family_of(dest.host), socket.SOCK_DGRAM) as probe:
        probe.connect(dest.as_tuple())
        return str(to_addr(probe.getsockname()).host)
