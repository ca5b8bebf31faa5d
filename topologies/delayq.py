#!/usr/bin/python3
"""Delay packets by a fixed time with netfilter's NFQUEUE (stdlib only).

Stands in for netem, which some kernels (this project's VMs among them) are
built without.  Run inside a network namespace, as root::

    /usr/bin/python3 topologies/delayq.py --queue 0 --delay-ms 20 [--watch-pid PID]

and send packets to it with e.g.::

    iptables -t raw -A PREROUTING -i nat1-eth0 -j NFQUEUE --queue-num 0

Every queued packet gets its NF_ACCEPT verdict delay-ms after it arrived,
in arrival order.  Prints "ready" on stdout once bound.  Exits when the
process --watch-pid is gone (the Mininet node shell it belongs to), on
SIGTERM/SIGINT, or after --lifetime seconds.

Protocol: linux/netfilter/nfnetlink_queue.h over a NETLINK_NETFILTER socket.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLMSG_ERROR = 2
NF_ACCEPT = 1

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid (host order)
_NFGENMSG = struct.Struct("!BBH")  # family, version, res_id (big endian)
_NLATTR = struct.Struct("=HH")  # len, type


def _attr(kind: int, payload: bytes) -> bytes:
    raw = _NLATTR.pack(_NLATTR.size + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


class NfQueue:
    def __init__(self, queue: int) -> None:
        self.queue = queue
        self.seq = 0
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        # Large buffer: a lost PACKET message would leave its packet queued.
        self.sock.setsockopt(socket.SOL_SOCKET, 33, 4 << 20)  # SO_RCVBUFFORCE
        self.sock.bind((0, 0))
        cmd = struct.pack("!BxH", NFQNL_CFG_CMD_BIND, 0)
        self._request(NFQNL_MSG_CONFIG, _attr(NFQA_CFG_CMD, cmd))
        params = struct.pack("!IB", 0, NFQNL_COPY_META)
        self._request(NFQNL_MSG_CONFIG, _attr(NFQA_CFG_PARAMS, params))

    def _send(self, msg_type: int, attrs: bytes, flags: int) -> None:
        self.seq += 1
        body = _NFGENMSG.pack(socket.AF_UNSPEC, 0, self.queue) + attrs
        header = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg_type, flags, self.seq, 0)
        self.sock.send(header + body)

    def _request(self, msg_type: int, attrs: bytes) -> None:
        """Send a config request and wait (bounded) for its ACK."""
        self._send(msg_type, attrs, NLM_F_REQUEST | NLM_F_ACK)
        readable, _, _ = select.select([self.sock], [], [], 5.0)
        if not readable:
            raise TimeoutError("no netlink ACK from nfnetlink_queue")
        data = self.sock.recv(65536)
        _, kind, _, _, _ = _NLMSGHDR.unpack_from(data)
        if kind == NLMSG_ERROR:
            (error,) = struct.unpack_from("=i", data, _NLMSGHDR.size)
            if error:
                raise OSError(-error, f"nfqueue config: {os.strerror(-error)}")

    def verdict(self, packet_id: int, verdict: int = NF_ACCEPT) -> None:
        self._send(NFQNL_MSG_VERDICT, _attr(NFQA_VERDICT_HDR, struct.pack("!II", verdict, packet_id)), NLM_F_REQUEST)

    def packet_ids(self) -> list[int]:
        """IDs of the packets in one recv() worth of netlink messages."""
        data = self.sock.recv(1 << 20)
        ids = []
        offset = 0
        while offset + _NLMSGHDR.size <= len(data):
            length, kind, _, _, _ = _NLMSGHDR.unpack_from(data, offset)
            if length < _NLMSGHDR.size:
                break
            if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                pos = offset + _NLMSGHDR.size + _NFGENMSG.size
                end = offset + length
                while pos + _NLATTR.size <= end:
                    attr_len, attr_type = _NLATTR.unpack_from(data, pos)
                    if attr_len < _NLATTR.size:
                        break
                    if attr_type & 0x7FFF == NFQA_PACKET_HDR:
                        ids.append(struct.unpack_from("!I", data, pos + _NLATTR.size)[0])
                    pos += (attr_len + 3) & ~3
            offset += (length + 3) & ~3
        return ids


class _Stop(Exception):
    """Raised by the signal handler to leave select() at once."""


def _stop(_signum: int, _frame: object) -> None:
    raise _Stop


def run(queue: int, delay_s: float, watch_pid: int | None, lifetime: float) -> int:
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    nfq = NfQueue(queue)
    print("ready", flush=True)
    pending: collections.deque[tuple[float, int]] = collections.deque()
    end = time.monotonic() + lifetime
    next_watch = 0.0
    try:
        while (now := time.monotonic()) < end:
            if watch_pid is not None and now >= next_watch:
                if not os.path.exists(f"/proc/{watch_pid}"):
                    break
                next_watch = now + 1.0
            while pending and pending[0][0] <= now:
                nfq.verdict(pending.popleft()[1])
            wait = min(1.0, end - now, (pending[0][0] - now) if pending else 1.0)
            readable, _, _ = select.select([nfq.sock], [], [], max(0.0, wait))
            if readable:
                arrived = time.monotonic()
                for packet_id in nfq.packet_ids():
                    pending.append((arrived + delay_s, packet_id))
    except _Stop:
        pass
    # Let queued packets go rather than leave them stuck in the kernel.
    with contextlib.suppress(OSError, _Stop):
        for _, packet_id in pending:
            nfq.verdict(packet_id)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queue", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, required=True)
    parser.add_argument("--watch-pid", type=int)
    parser.add_argument("--lifetime", type=float, default=24 * 3600.0)
    args = parser.parse_args()
    return run(args.queue, args.delay_ms / 1000.0, args.watch_pid, args.lifetime)


if __name__ == "__main__":
    sys.exit(main())
