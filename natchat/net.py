"""Small socket helpers shared by the shells: binding, address conversion, endpoint parsing."""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Callable
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
    """Resolve ``HOST[:PORT]`` to one address; a name with both kinds of address gives the IPv4 one
    (a dual-stack server answers either, and a server that fell back to IPv4 only answers that)."""
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


ANY_DUAL_STACK = "::"
"""The listening address that takes IPv6 and (as IPv4-mapped addresses) IPv4 datagrams."""

_NO_IPV6 = (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, errno.EPROTONOSUPPORT)


async def bind_listening_udp(
    host: str, port: int, note: Callable[[str], None] = lambda text: None
) -> trio.socket.SocketType:
    """:func:`bind_udp`, except that ``::`` on a machine without IPv6 falls back to ``0.0.0.0`` (IPv4
    only), which ``note`` is told about. Any other address must work as given."""
    try:
        return await bind_udp(host, port)
    except OSError as exc:
        if host != ANY_DUAL_STACK or exc.errno not in _NO_IPV6:
            raise
        reason = exc.strerror or str(exc)
    note(f"cannot listen on IPv6 ({reason}); listening on IPv4 only (0.0.0.0)")
    return await bind_udp("0.0.0.0", port)


def sockaddr_for(family: int, addr: Addr) -> tuple[str, int]:
    """``addr`` as ``sendto`` on a socket of ``family`` takes it.

    An IPv6 socket (dual-stack, see :func:`bind_udp`) reaches an IPv4 address as its IPv4-mapped form
    ``::ffff:a.b.c.d``. An IPv4 socket cannot reach an IPv6 address at all: :class:`OSError`
    (``EAFNOSUPPORT``), which the shells count like any failed send.
    """
    v6 = ":" in addr.host
    if family == socket.AF_INET6 and not v6:
        return (f"::ffff:{addr.host}", addr.port)
    if family == socket.AF_INET and v6:
        raise OSError(errno.EAFNOSUPPORT, f"{addr} is IPv6 and this socket is IPv4 only")
    return addr.as_tuple()


def local_ip_toward(dest: Addr) -> str:
    """The local address the kernel routes ``dest`` from (a connected UDP socket sends nothing)."""
    with socket.socket(family_of(dest.host), socket.SOCK_DGRAM) as probe:
        probe.connect(dest.as_tuple())
        return str(to_addr(probe.getsockname()).host)
