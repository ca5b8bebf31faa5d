"""A hand-driven network for the sans-I/O objects: a server and clients, datagrams moved by hand, a
manual clock. No sockets, no sleeps: thirty seconds pass in a loop iteration.

Each client lives at a "site" (a public IP). Its sockets get public addresses ``site:port`` with the
same port as the private one (no NAT translation is modelled here; NAT behaviour is proven on real
Linux NATs in Mininet). A datagram to a private address reaches the client only from the same site.
``drop(src, dst, data) -> bool`` loses datagrams on purpose.

A "hard" node (``add(..., hard=True)``) models an endpoint-dependent NAT (``--random-fully``): each of its
sockets gets a fresh random public port toward every new destination, and only that destination may
send back to that port. With ``Sim(alt=True)`` the server names its second port (``ALT``) in its
challenge, and both ports answer STUN Binding as the real server's do; by default (no ``alt``) clients
learn no mapping kind and everything is as it always was.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from natchat.proto import seal, stun, wire
from natchat.proto.client import ClientConfig, ClientSession, CloseSocket, OpenSocket, Send
from natchat.proto.events import ClientEvent, ServerEvent
from natchat.proto.identity import Identity, PeerIdentities
from natchat.proto.server import RendezvousServer
from natchat.proto.wire import Addr

SERVER = Addr("10.0.0.3", 10080)
MIDPEER = Addr("10.0.0.4", 10082)
ALT = Addr(SERVER.host, SERVER.port - 1)
Drop = Callable[[Addr, Addr, bytes], bool]


def tokens() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"{next(counter):032x}"


@dataclass
class Node:
    session: ClientSession
    site: str
    keys: seal.KeyPair
    sockets: dict[int, Addr] = field(default_factory=dict)  # socket -> private address
    events: list[ClientEvent] = field(default_factory=list)
    hard: bool = False
    filtered: bool = False
    """Its NAT lets a datagram in only from an address the socket has sent to (as Linux conntrack does)."""
    contacted: set[tuple[int, Addr]] = field(default_factory=set)
    mappings: dict[tuple[int, Addr], int] = field(default_factory=dict)  # (socket, destination) -> public port

    def public(self, sock: int) -> Addr:
        return Addr(self.site, self.sockets[sock].port)

    def public_toward(self, sock: int, dst: Addr, rng: random.Random) -> Addr:
        """The source a datagram from ``sock`` to ``dst`` shows (a hard node: a port per destination)."""
        if not self.hard:
            return self.public(sock)
        port = self.mappings.get((sock, dst))
        if port is None:
            used = set(self.mappings.values())
            port = next(p for p in iter(lambda: rng.randint(1024, 65535), None) if p not in used)
            self.mappings[(sock, dst)] = port
        return Addr(self.site, port)

    def accepts(self, addr: Addr, src: Addr) -> int | None:
        """The socket a hard node's NAT lets ``src``'s datagram to public ``addr`` through to (None: dropped)."""
        for (sock, dst), port in self.mappings.items():
            if dst == src and port == addr.port and addr.host == self.site and sock in self.sockets:
                return sock
        return None

    def lines(self, kind: type | None = None) -> list[str]:
        return [e.line() for e in self.events if (kind is None or isinstance(e, kind)) and hasattr(e, "line")]


class Sim:
    def __init__(
        self,
        *,
        timeout: float = 30.0,
        config: ClientConfig | None = None,
        seed: int = 1,
        relay: bool = False,
        midpeer: bool = False,
        secret: bytes | None = None,
        alt: bool = False,
    ) -> None:
        """``relay``: the server is a midPeer too; ``midpeer``: a standalone midPeer at MIDPEER; ``alt``:
        the server's second port answers STUN and is named in challenges (clients learn their mapping)."""
        self.now = 1000.0
        self.alt = alt
        self.server = RendezvousServer(
            timeout=timeout, token_factory=tokens(), relay=relay, secret=secret, alt_port=ALT.port if alt else None
        )
        self.midpeer = RendezvousServer(timeout=timeout, token_factory=tokens(), relay=True, lists=False, secret=secret)
        self.midpeer_up = midpeer
        self.midpeer_events: list[ServerEvent] = []
        self.server_up = True
        self.server_events: list[ServerEvent] = []
        self.config = config or ClientConfig()
        self.nodes: dict[str, Node] = {}
        self.drop: Drop = lambda src, dst, data: False
        self.rng = random.Random(seed)
        self._ports = itertools.count(20000)
        self.sent: list[tuple[Addr, Addr, bytes]] = []

    def add(
        self,
        client_id: str,
        site: str = "10.0.0.1",
        *,
        nat: bool = True,
        start: bool = True,
        config: ClientConfig | None = None,
        hard: bool = False,
        filtered: bool = False,
        identity: Identity | None = None,
        issued: int = 0,
        peer_ids: PeerIdentities | None = None,
    ) -> Node:
        """A client at public IP ``site``: behind a NAT there (private address 192.168.x.2) or not; it
        uses the standalone midPeer if the simulation has one. ``hard``: its NAT maps endpoint-dependently;
        ``filtered``: it lets in only what comes from where a socket has sent (a cone NAT's filter).
        ``identity``, ``issued``, ``peer_ids``: as for ``ClientSession`` (none: peers' identities are not
        checked)."""
        port = next(self._ports)
        priv = Addr(f"192.168.{len(self.nodes) % 250}.2", port) if nat else Addr(site, port)
        midpeer = MIDPEER if self.midpeer_up else None
        keys = seal.KeyPair()
        session = ClientSession(
            client_id,
            SERVER,
            priv,
            config=config or self.config,
            midpeer=midpeer,
            rng=random.Random(port),
            keys=keys,
            identity=identity,
            issued=issued,
            peer_ids=peer_ids,
        )
        node = Node(session, site, keys, {0: priv}, hard=hard, filtered=filtered)
        self.nodes[client_id] = node
        if start:
            session.start(self.now)
        return node

    def restart_server(self, *, timeout: float | None = None) -> None:
        self.server = RendezvousServer(timeout=timeout or self.server.timeout, token_factory=tokens())

    # --- moving datagrams -------------------------------------------------------------------------

    def _locate(self, addr: Addr, src_site: str, src: Addr) -> tuple[Node, int] | None:
        for node in self.nodes.values():
            if node.hard and addr.host == node.site:
                sock = node.accepts(addr, src)
                if sock is not None:
                    return node, sock
                continue
            for sock, priv in node.sockets.items():
                if addr == priv and node.site == src_site:
                    return node, sock
                if addr == node.public(sock):
                    if node.filtered and (sock, src) not in node.contacted and src not in (SERVER, ALT, MIDPEER):
                        return None
                    return node, sock
        return None

    def step(self) -> bool:
        """Move every pending datagram once; True if anything moved."""
        moved = False
        if self.server_up:
            while (event := self.server.next_event()) is not None:
                self.server_events.append(event)
            for data, dst in self.server.datagrams_to_send():
                moved = True
                self._deliver(SERVER, "server", dst, data)
        if self.midpeer_up:
            while (event := self.midpeer.next_event()) is not None:
                self.midpeer_events.append(event)
            for data, dst in self.midpeer.datagrams_to_send():
                moved = True
                self._deliver(MIDPEER, "midpeer", dst, data)
        for node in list(self.nodes.values()):
            for action in node.session.actions():
                moved = True
                match action:
                    case Send(sock=sock, data=data, addr=dst):
                        if sock in node.sockets:
                            lan = dst.host.startswith("192.168.")  # no NAT between: the private source shows
                            src = node.sockets[sock] if lan else node.public_toward(sock, dst, self.rng)
                            if node.filtered:
                                node.contacted.add((sock, dst))
                            self._deliver(src, node.site, dst, data)
                    case OpenSocket(sock=sock):
                        node.sockets[sock] = Addr(node.sockets[0].host, next(self._ports))
                        node.session.socket_opened(sock, node.sockets[sock], self.now)
                    case CloseSocket(sock=sock):
                        node.sockets.pop(sock, None)
            while (event := node.session.next_event()) is not None:
                node.events.append(event)
        return moved

    def _deliver(self, src: Addr, src_site: str, dst: Addr, data: bytes) -> None:
        assert len(data) <= wire.MAX_DATAGRAM
        self.sent.append((src, dst, data))
        if self.drop(src, dst, data):
            return
        if (dst == SERVER or (dst == ALT and self.alt)) and stun.is_stun(data):
            if self.server_up and (answer := stun.binding_response(data, src)) is not None:
                self._deliver(dst, "server", src, answer)  # (as the real server's shell answers)
            return
        if dst == SERVER:
            if self.server_up:
                self.server.receive_datagram(data, src, self.now)
            return
        if dst == MIDPEER:
            if self.midpeer_up:
                self.midpeer.receive_datagram(data, src, self.now)
            return
        found = self._locate(dst, src_site, src)
        if found is not None:
            node, sock = found
            node.session.receive_datagram(data, sock, src, self.now)

    def settle(self) -> None:
        for _ in range(10_000):
            if not self.step():
                return
        raise AssertionError("the network never went quiet")

    def run(self, seconds: float) -> None:
        """Let ``seconds`` pass, firing every timer on time and moving datagrams instantly."""
        end = self.now + seconds
        self.settle()
        stuck = 0
        while True:
            timers = [n.session.get_timer() for n in self.nodes.values()]
            if self.server_up:
                timers.append(self.server.get_timer())
            if self.midpeer_up:
                timers.append(self.midpeer.get_timer())
            due = min((t for t in timers if t is not None), default=None)
            if due is None or due > end:
                break
            stuck = stuck + 1 if due <= self.now else 0
            if stuck > 1000:
                raise AssertionError(f"a timer at {due} keeps firing without moving on")
            self.now = max(self.now, due)
            if self.server_up:
                self.server.handle_timer(self.now)
            if self.midpeer_up:
                self.midpeer.handle_timer(self.now)
            for node in self.nodes.values():
                node.session.handle_timer(self.now)
            self.settle()
        self.now = end

    def lists(self) -> dict[str, list[str]]:
        """Each client's list (IDs, in registration order)."""
        return {cid: n.session.peers() for cid, n in self.nodes.items()}

    def registry(self) -> list[str]:
        """The server's list, as its clients should have it."""
        return [p.id for p in self.server.peers()]

    def server_lines(self) -> list[str]:
        from natchat.proto.events import Dropped

        return [e.line() for e in self.server_events if not isinstance(e, Dropped)]

    def lossy(self, rate: float) -> None:
        self.drop = lambda src, dst, data: self.rng.random() < rate
