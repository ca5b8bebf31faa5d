"""Fuzzing: the decoder, the registry and the client session fed generated and mutated datagrams.

Hypothesis generates valid messages of every type and mutates them: bit flips, byte changes,
truncation, insertion, splicing, invalid UTF-8, field swaps, dropped and unknown fields, type confusion
(another message's tag, a value of the wrong type), huge numbers, long and odd unicode, nesting,
duplicate keys, sizes around the 1200-byte limit. Valid messages come too, alone and in sequences
(an attacker registering its own IDs, keeping them alive with its own tokens, punching to the real
clients, moving, leaving), so that the registry's rules run, not only its decoder.

What must hold, checked after every datagram:

* no exception escapes ``wire.decode`` but :class:`~natchat.proto.wire.WireError`, and none escapes
  ``RendezvousServer.receive_datagram`` / ``handle_timer`` or ``ClientSession.receive_datagram``;
* no registered client is lost: three real clients registered first keep their entry, address and
  token (no deregistration, disappearance or move of theirs), their keepalives are answered all along,
  and their tokens are never sent to any other address;
* memory stays bounded: entries <= ``max_clients``, the address index and expiry list no larger than
  the registry, the delta log <= ``DELTA_LOG``, the punching rendezvous table empty once its TTL has
  passed, and what natchat's code holds (tracemalloc) under a fixed budget;
* everything the server sends is a valid message of at most 1200 bytes;
* a client's peer list, state and token are untouched by anything that does not come from the server.

The default suite runs a few thousand datagrams per test (seconds). ``make fuzz`` sets
``NATCHAT_FUZZ_EXAMPLES`` so that each of the three tests feeds over 100,000 datagrams; each test prints
how many it fed (``pytest -s``).
"""

from __future__ import annotations

import json
import os
import random
import time
import tracemalloc
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from natchat.proto import wire
from natchat.proto.actions import Send
from natchat.proto.client import MAIN, ClientSession, State
from natchat.proto.events import Deregistered, Disappeared, Moved
from natchat.proto.server import DELTA_LOG, PUNCH_RENDEZVOUS_TTL, RendezvousServer
from natchat.proto.wire import Addr, PeerInfo

EXAMPLES = int(os.environ.get("NATCHAT_FUZZ_EXAMPLES", "60"))
"""Hypothesis examples per test; each example is a batch of :data:`PER_EXAMPLE` datagrams."""
MAX_CLIENTS = 40
NATCHAT_MEMORY_BUDGET = 6 * 2**20
"""Bytes natchat's own code may hold after the registry test (tracemalloc, natchat/ frames only).

A full delta log is 4096 changes of about 450 bytes each (~1.8 MiB); 40 entries and what they index are
small. The budget leaves room for allocator noise, and is far below what one retained object per
datagram would cost over 100,000 datagrams.
"""

SERVER = Addr("10.0.0.3", 10080)
REAL = {  # the clients that must never be lost: id -> (public address, private address)
    "alice": (Addr("10.0.0.1", 10081), Addr("192.168.1.2", 10081)),
    "bob": (Addr("10.0.0.2", 10081), Addr("192.168.2.2", 10081)),
    "carol": (Addr("10.0.0.4", 10081), Addr("10.0.0.4", 10081)),
}
ATTACKERS = [Addr("10.0.0.66", p) for p in (4000, 4001, 4002)] + [Addr("10.0.0.67", 9), Addr("fd00::66", 4000)]
IDS = [*REAL, "mallory", "m1", "m2", "m3", "x"]
TAGS = [m.__struct_config__.tag for m in wire.AnyMessage.__args__] + ["", "T", "register ", "REGISTER"]  # type: ignore[attr-defined]
KNOWN_TOKEN = "0" * 32


# --- valid messages -----------------------------------------------------------------------------------------

hosts = st.sampled_from(["10.0.0.1", "192.168.1.2", "::1", "fd00::66", "0.0.0.0", "255.255.255.255", "::ffff:1.2.3.4"])
addrs = st.builds(Addr, hosts, st.sampled_from([0, 1, 10081, 65535]) | st.integers(0, 65535))
ids = st.sampled_from(IDS) | st.text("abcXYZ019._-", min_size=1, max_size=4) | st.just("z" * 32)
tokens_ = st.sampled_from([KNOWN_TOKEN, "f" * 32]) | st.binary(min_size=16, max_size=16).map(bytes.hex)
counters = st.sampled_from([0, 1, 2, 2**53]) | st.integers(0, 2**53)
attempts = st.integers(1, 1000)
seconds = st.sampled_from([0.0, 0.001, 3600.0]) | st.floats(0, 3600)
clocks = st.floats(-1e12, 1e12)
keys = st.sampled_from([bytes(32), bytes(range(32))]) | st.binary(min_size=32, max_size=32)
nonces = st.binary(min_size=12, max_size=12)
tags = st.binary(min_size=16, max_size=16)
peer_infos = st.builds(PeerInfo, ids, addrs, addrs, keys)
changes = st.builds(wire.change, ids, gone=st.booleans())
texts = st.text(min_size=1, max_size=40)

to_server = st.one_of(
    st.builds(wire.Register, id=ids, priv=addrs, key=keys, token=st.none() | tokens_),
    st.builds(wire.KeepAlive, id=ids, token=tokens_, ver=counters, rtt=seconds),
    st.builds(wire.Deregister, id=ids, token=tokens_),
    st.builds(wire.Sync, id=ids, token=tokens_, since=counters),
    st.builds(wire.Lookup, id=ids, token=tokens_, q=counters, peers=st.none() | st.lists(ids, min_size=1, max_size=16)),
    st.builds(wire.PunchRequest, id=ids, token=tokens_, peer=ids, attempt=attempts, priv=addrs, rtt=seconds),
)
from_server = st.one_of(
    st.builds(wire.Registered, id=ids, token=tokens_, pub=addrs, timeout=st.floats(0.01, 86400), now=clocks),
    st.builds(wire.Alive, ver=counters, pub=addrs, now=clocks),
    st.builds(wire.Bye, id=ids),
    st.builds(wire.ListDelta, ver=counters, changes=st.lists(changes, min_size=1, max_size=4).map(" ".join)),
    st.builds(
        wire.ListPage,
        ver=counters,
        index=st.integers(0, 3) | st.integers(0, 100_000),
        count=st.integers(1, 3) | st.integers(1, 100_000),
        peers=st.lists(ids, max_size=4).map(" ".join),
    ),
    st.builds(
        wire.Details,
        q=counters,
        ver=counters,
        index=st.integers(0, 3) | st.integers(0, 100_000),
        count=st.integers(1, 3) | st.integers(1, 100_000),
        peers=st.lists(peer_infos, max_size=4),
    ),
    st.builds(wire.PunchInvite, peer=ids, attempt=attempts),
    st.builds(wire.PunchGo, peer=peer_infos, attempt=attempts, at=clocks, rtt=seconds),
    st.builds(
        wire.Error, code=st.sampled_from(["id_taken", "server_full", "bad_token", "unknown_session"]) | texts, msg=texts
    ),
)
between_peers = st.one_of(
    st.builds(wire.Probe, src=ids, dst=ids, attempt=attempts, n=nonces, tag=tags, ack=st.booleans()),
    st.builds(
        wire.Chat,
        src=ids,
        dst=ids,
        stream=counters,
        base=counters,
        seq=counters,
        group=st.booleans(),
        n=nonces,
        box=st.binary(min_size=17, max_size=64),
    ),
    st.builds(wire.ChatAck, src=ids, dst=ids, stream=counters, seq=counters, n=nonces, tag=tags),
)
any_message = st.one_of(to_server, from_server, between_peers)


def encode_any(msg: wire.Message) -> bytes:
    """``msg`` on the wire; over the size limit too (a long list or text), as the oversize JSON it is."""
    try:
        return wire.encode(msg)
    except wire.WireError:
        return msgspec.json.encode(msg)


# --- mutations ------------------------------------------------------------------------------------------------

CONFUSED: list[Any] = [
    None, True, False, 0, -1, 1.5, -0.0, 2**53 + 1, 2**63, -(2**63), 2**64, 10**400, 1e308, -1e308,
    "", "x" * 33, "é", "\U0001f600", "\x00", "\ud800", "0" * 32, "10.0.0.1", "::1",
    [], {}, [1], ["10.0.0.1"], ["10.0.0.1", 1], ["10.0.0.1", 1, 2], ["::1", 70000], ["1.2.3.4.5", 1], ["x" * 50, 1],
    [["alice", ["10.0.0.1", 1], ["10.0.0.1", 1]]], [[1, False, ["alice", ["10.0.0.1", 1], ["10.0.0.1", 1]]]],
    {"v": 1, "t": "bye", "id": "a"},
]  # fmt: skip
BAD_UTF8 = [b"\xff", b"\xc3\x28", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\x00"]


@dataclass(frozen=True)
class Mutation:
    """One edit of a datagram; ``a`` and ``b`` pick positions, fields or values, ``blob`` and ``text`` are payloads."""

    op: str
    a: int
    b: int
    blob: bytes
    text: str

    def __call__(self, data: bytes, other: bytes) -> bytes:
        return MUTATORS[self.op](self, data, other)


def _as_object(data: bytes) -> dict[str, Any] | None:
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) and obj else None


def _key(obj: dict[str, Any], which: int) -> str:
    keys = list(obj)
    return keys[which % len(keys)]


def _at(m: Mutation, data: bytes) -> int:
    return m.a % (len(data) + 1)


def _flip(m: Mutation, data: bytes, other: bytes) -> bytes:
    if not data:
        return bytes([m.b & 0xFF])
    i = m.a % len(data)
    return data[:i] + bytes([data[i] ^ (1 << (m.b % 8))]) + data[i + 1 :]


def _nest(m: Mutation, data: bytes, other: bytes) -> bytes:
    match m.a % 4:
        case 0:
            return b"[" + data + b"]"
        case 1:
            return b'{"v":1,"t":"bye","id":' + data + b"}"
        case 2:
            return b"[" * (m.b % 2000) + b"]" * (m.b % 2000)
        case _:
            return data + data


def _duplicate_key(m: Mutation, data: bytes, other: bytes) -> bytes:
    key = _key(_as_object(data) or {"t": 0}, m.a)
    # (json.dumps for the key too: a key that an earlier mutation made a lone surrogate is escaped, as
    # a sender's JSON would have it, instead of failing to encode here, which a CI run once did)
    return data[:1] + f"{json.dumps(key)}:{json.dumps(CONFUSED[m.b % len(CONFUSED)])},".encode() + data[1:]


BYTE_MUTATORS: dict[str, Callable[[Mutation, bytes, bytes], bytes]] = {
    "flip_bit": _flip,
    "set_byte": lambda m, d, o: d[: _at(m, d)] + bytes([m.b & 0xFF]) + d[_at(m, d) + 1 :],
    "truncate": lambda m, d, o: d[: _at(m, d)],
    "insert": lambda m, d, o: d[: _at(m, d)] + m.blob + d[_at(m, d) :],
    "delete": lambda m, d, o: d[: _at(m, d)] + d[_at(m, d) + 1 + m.b % 16 :],
    "splice": lambda m, d, o: d[: _at(m, d)] + o[m.b % (len(o) + 1) :],
    "bad_utf8": lambda m, d, o: d[: _at(m, d)] + BAD_UTF8[m.b % len(BAD_UTF8)] + d[_at(m, d) :],
    "random_bytes": lambda m, d, o: m.blob * (1 + m.a % 100),
    "pad_to_limit": lambda m, d, o: d[:-1] + b" " * max(0, wire.MAX_DATAGRAM - 8 + m.b % 16 - len(d)) + d[-1:],
    "nest": _nest,
    "duplicate_key": _duplicate_key,
}


def _swap(m: Mutation, obj: dict[str, Any]) -> None:
    k1, k2 = _key(obj, m.a), _key(obj, m.b)
    obj[k1], obj[k2] = obj[k2], obj[k1]


def _huge(m: Mutation, obj: dict[str, Any]) -> None:
    value = [2**53 + 1, 2**64, 10**300, -1, 1e308][m.a % 5]
    for key, old in list(obj.items()):
        if isinstance(old, int | float) and not isinstance(old, bool):
            obj[key] = value


def _confused(m: Mutation) -> Any:
    return CONFUSED[m.b % len(CONFUSED)]


JSON_MUTATORS: dict[str, Callable[[Mutation, dict[str, Any]], object]] = {
    "swap_fields": _swap,
    "drop_field": lambda m, obj: obj.pop(_key(obj, m.a)),
    "unknown_field": lambda m, obj: obj.__setitem__(m.text or "extra", _confused(m)),
    "confuse_value": lambda m, obj: obj.__setitem__(_key(obj, m.a), _confused(m)),
    "confuse_type": lambda m, obj: obj.__setitem__("t", TAGS[m.a % len(TAGS)]),
    "confuse_version": lambda m, obj: obj.__setitem__("v", CONFUSED[m.a % len(CONFUSED)]),
    "huge_numbers": _huge,
    "unicode": lambda m, obj: obj.__setitem__(_key(obj, m.a), (m.text or "\U0001f600") * (1 + m.b % 400)),
}


def _on_json(edit: Callable[[Mutation, dict[str, Any]], object]) -> Callable[[Mutation, bytes, bytes], bytes]:
    """A mutation of the parsed JSON object, serialised again (a bit flip instead if it is no object)."""

    def apply(m: Mutation, data: bytes, other: bytes) -> bytes:
        obj = _as_object(data)
        if obj is None:
            return _flip(m, data, other)
        edit(m, obj)
        try:
            text = json.dumps(obj, ensure_ascii=bool(m.b & 1), separators=(",", ":"))
        except (ValueError, OverflowError):
            return data
        return text.encode("utf-8", "surrogatepass")

    return apply


MUTATORS = BYTE_MUTATORS | {name: _on_json(edit) for name, edit in JSON_MUTATORS.items()}


mutations = st.builds(
    Mutation,
    op=st.sampled_from(sorted(MUTATORS)),
    a=st.integers(0, 2**16),
    b=st.integers(0, 2**16),
    blob=st.binary(max_size=12),
    text=st.text(max_size=6),
)


BASES = 6
CHAINS = 8
PER_EXAMPLE = BASES * (CHAINS + 1) + 2
"""Datagrams per example: every base message as it is and under every mutation chain, plus two random."""


@dataclass(frozen=True)
class Batch:
    """One example: valid messages, chains of mutations, and what they make together (:meth:`datagrams`)."""

    bases: list[wire.Message]
    chains: list[list[Mutation]]
    noise: list[bytes]

    def datagrams(self, prepare: Callable[[wire.Message], wire.Message] = lambda m: m) -> Iterator[tuple[bool, bytes]]:
        """``(valid, datagram)``: each base (passed through ``prepare`` when its turn comes) unchanged, then under each
        chain of mutations (a splice takes material from the next base), then the random ones."""
        for i, msg in enumerate(self.bases):
            data = encode_any(prepare(msg))
            yield True, data
            other = encode_any(self.bases[(i + 1) % len(self.bases)])
            for chain in self.chains:
                mutant = data
                for edit in chain:
                    mutant = edit(mutant, other)
                yield False, mutant
        for blob in self.noise:
            yield False, blob


def batches(messages: st.SearchStrategy[wire.Message]) -> st.SearchStrategy[Batch]:
    return st.builds(
        Batch,
        st.lists(messages, min_size=BASES, max_size=BASES),
        st.lists(st.lists(mutations, min_size=1, max_size=3), min_size=CHAINS, max_size=CHAINS),
        st.lists(st.binary(max_size=64), min_size=2, max_size=2),
    )


def register(server: RendezvousServer, cid: str, pub: Addr, priv: Addr, now: float) -> str:
    """Register ``cid`` from ``pub`` as a real client does (answering a cookie ``challenge`` if the server
    sends one); its token."""
    msg = wire.Register(id=cid, priv=priv, key=bytes(range(32)))
    for _ in range(2):
        server.receive_datagram(wire.encode(msg), pub, now)
        for data, dst in server.datagrams_to_send():
            reply = wire.decode(data)
            if dst == pub and isinstance(reply, wire.Registered):
                return reply.token
            if dst == pub and type(reply).__name__ == "Challenge":
                msg = msgspec.structs.replace(msg, cookie=reply.cookie)  # type: ignore[attr-defined]
    raise AssertionError(f"{cid} could not register")


# --- the decoder ------------------------------------------------------------------------------------------------

fed: dict[str, int] = {"decoder": 0, "registry": 0, "client": 0}
fuzz_settings = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@fuzz_settings
@given(batches(any_message))
def test_decoder_raises_only_wire_errors_and_what_it_accepts_round_trips(batch: Batch) -> None:
    for _, data in batch.datagrams():
        fed["decoder"] += 1
        try:
            msg = wire.decode(data)
        except wire.WireError:
            continue
        assert len(data) <= wire.MAX_DATAGRAM
        assert wire.decode(msgspec.json.encode(msg)) == msg, data  # what it accepts, it can send back as is


# --- the registry -----------------------------------------------------------------------------------------------


@dataclass
class Registry:
    """A long-lived server with three real clients, fed the fuzz; checks the rules after every datagram."""

    server: RendezvousServer
    now: float = 1000.0
    tokens: dict[str, str] = field(default_factory=dict)  # the real clients' tokens
    learnt: dict[str, str] = field(default_factory=dict)  # tokens the attacker's addresses were given
    cookies: dict[Addr, str] = field(default_factory=dict)  # registration cookies they were given, if any
    source: Addr = SERVER  # where the next datagram comes from
    last_keepalive: float = 0.0
    punch_requests: int = 0
    authentic_sent: int = 0
    first_failure: str | None = None
    recent: deque[tuple[bytes, Addr, float]] = field(default_factory=lambda: deque(maxlen=5000))

    @classmethod
    def start(cls) -> Registry:
        reg = cls(RendezvousServer(timeout=30.0, max_clients=MAX_CLIENTS))
        for cid, (pub, priv) in REAL.items():
            reg.tokens[cid] = register(reg.server, cid, pub, priv, reg.now)
        reg.drain("registration")
        return reg

    def drain(self, context: str) -> None:
        real_addrs = {pub for pub, _ in REAL.values()}
        for data, dst in self.server.datagrams_to_send():
            assert len(data) <= wire.MAX_DATAGRAM, context
            msg = wire.decode(data)  # the server only ever sends valid messages
            if type(msg).__name__ == "Challenge" and dst not in real_addrs:
                self.cookies[dst] = msg.cookie  # type: ignore[attr-defined]
            if isinstance(msg, wire.Registered):
                if msg.token in self.tokens.values():
                    assert dst in real_addrs and REAL[msg.id][0] == dst, f"{msg.id}'s token sent to {dst}: {context}"
                else:
                    self.learnt[msg.id] = msg.token
        while (event := self.server.next_event()) is not None:
            if isinstance(event, Deregistered | Disappeared | Moved):
                assert event.peer.id not in REAL, f"{event} after {context}"

    def keepalives(self, context: str) -> None:
        """Every real client keeps alive, from its own address with its own token: it must be answered."""
        for cid, (pub, _) in REAL.items():
            ka = wire.KeepAlive(id=cid, token=self.tokens[cid], ver=self.server.version, rtt=0.01)
            self.server.receive_datagram(wire.encode(ka), pub, self.now)
            answers = [wire.decode(d) for d, dst in self.server.datagrams_to_send() if dst == pub]
            assert any(isinstance(a, wire.Alive) and a.pub == pub for a in answers), f"{cid} unanswered: {context}"
        self.last_keepalive = self.now

    def check(self, context: str) -> None:
        srv = self.server  # its tables are what must stay bounded
        registry = {p.id: p for p in srv.peers()}
        for cid, (pub, priv) in REAL.items():
            assert cid in registry and registry[cid].pub == pub and registry[cid].priv == priv, f"{cid}: {context}"
            assert srv.registry.token(cid) == self.tokens[cid], context
        sizes = srv.registry.sizes()
        assert sizes["entries"] <= MAX_CLIENTS, context
        assert sizes["expiry"] == sizes["entries"], context
        assert sizes["by_addr"] <= sizes["entries"], context
        assert sizes["log"] <= DELTA_LOG and srv.version >= sizes["log"], context
        assert all(expires <= self.now + PUNCH_RENDEZVOUS_TTL for expires in srv.broker.expiries()), context

    def feed(self, data: bytes, source: Addr, dt: float) -> None:
        context = f"datagram {data!r} from {source} at {self.now:.3f}"
        self.recent.append((data, source, dt))
        self.now += dt
        if self.now - self.last_keepalive >= 5.0:
            self.keepalives(context)
        self.server.receive_datagram(data, source, self.now)
        timer = self.server.get_timer()
        if timer is not None and timer <= self.now:
            self.server.handle_timer(self.now)
        self.drain(context)
        self.check(context)

    def authentic(self, msg: wire.Message) -> wire.Message:
        """An attacker message with the token its addresses were given for that ID, if any: valid
        sequences (register, keep alive, punch, move, leave) of the attacker's own IDs."""
        cid = getattr(msg, "id", None)
        if isinstance(msg, wire.Register) and hasattr(msg, "cookie") and self.source in self.cookies:
            msg = msgspec.structs.replace(msg, cookie=self.cookies[self.source])
        if isinstance(cid, str) and cid in self.learnt and hasattr(msg, "token"):
            self.authentic_sent += 1
            self.punch_requests += isinstance(msg, wire.PunchRequest)
            return msgspec.structs.replace(msg, token=self.learnt[cid])
        return msg


sources = st.sampled_from(ATTACKERS) | st.sampled_from([pub for pub, _ in REAL.values()]) | addrs
steps = st.sampled_from([0.0, 0.0, 0.0, 0.001, 0.01, 0.05, 0.2, 1.0, 9.0])
routes = st.lists(st.tuples(sources, steps), min_size=CHAINS + 1, max_size=CHAINS + 1)


def test_registry_keeps_its_clients_and_its_bounds_under_fuzz() -> None:
    reg = Registry.start()
    started = time.perf_counter()

    @settings(fuzz_settings, database=None, phases=[Phase.generate])  # one long-lived server: no replay, no shrinking
    @given(batches(to_server | to_server | any_message), routes)
    def run(batch: Batch, paths: list[tuple[Addr, float]]) -> None:
        if reg.first_failure is not None:
            return
        try:
            datagrams = batch.datagrams(reg.authentic)
            for n in range(PER_EXAMPLE):
                source, dt = paths[n % len(paths)]
                reg.source = source  # (for authentic(), which the next step calls for a valid message)
                _, data = next(datagrams)
                fed["registry"] += 1
                reg.feed(data, source, dt)
        except Exception as exc:  # recorded with the datagram that did it (in the message)
            reg.first_failure = f"{type(exc).__name__}: {exc}"

    run()
    assert reg.first_failure is None, reg.first_failure
    # Let every punching rendezvous expire (the real clients keep alive meanwhile): nothing is left.
    for _ in range(int(PUNCH_RENDEZVOUS_TTL) + 2):
        reg.feed(b"", ATTACKERS[0], 1.0)
    srv = reg.server
    assert not srv.broker.expiries(), f"{len(srv.broker.expiries())} punching rendezvous outlived their TTL"
    # Memory: the last few thousand datagrams again, traced: what natchat still holds of them is bounded.
    again = list(reg.recent)
    tracemalloc.start()
    try:
        for data, source, dt in again:
            reg.feed(data, source, dt)
        snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, "*natchat*")])
    finally:
        tracemalloc.stop()
    held = sum(stat.size for stat in snapshot.statistics("filename"))
    assert held <= NATCHAT_MEMORY_BUDGET, f"natchat kept {held} bytes of {len(again)} datagrams"
    log = srv.registry.sizes()["log"]
    print(
        f"\nfuzz: registry fed {fed['registry']} datagrams in {time.perf_counter() - started:.1f} s "
        f"({len(srv.peers())} entries, delta log {log}, {len(reg.learnt)} attacker sessions made "
        f"{reg.authentic_sent} valid requests ({reg.punch_requests} punch); "
        f"natchat kept {held / 2**10:.0f} KiB of the last {len(again)})"
    )
    assert fed["registry"] >= EXAMPLES * PER_EXAMPLE


# --- the client session -------------------------------------------------------------------------------------------


def registered_client(rng_seed: int = 1) -> tuple[ClientSession, float]:
    me = REAL["alice"]
    client = ClientSession("alice", SERVER, me[1], rng=random.Random(rng_seed))
    now = 1000.0
    client.start(now)
    reply = wire.Registered(id="alice", token=KNOWN_TOKEN, pub=me[0], timeout=30.0, now=now)
    client.receive_datagram(wire.encode(reply), MAIN, SERVER, now)
    page = wire.ListPage(ver=3, index=0, count=1, peers=" ".join(REAL))
    client.receive_datagram(wire.encode(page), MAIN, SERVER, now)
    details = [PeerInfo(cid, pub, priv, bytes(range(32))) for cid, (pub, priv) in REAL.items()]
    client.receive_datagram(wire.encode(wire.Details(q=0, ver=3, index=0, count=1, peers=details)), MAIN, SERVER, now)
    client.actions()
    assert client.state is State.REGISTERED and client.peers() == list(REAL)
    assert all(client.details(cid) is not None for cid in REAL)
    return client, now


client_sources = st.one_of(
    st.sampled_from([pub for pub, _ in REAL.values()]),  # the peers' addresses (spoofed or not)
    st.sampled_from([Addr(SERVER.host, SERVER.port + 1), Addr("10.0.0.30", SERVER.port), Addr("::1", SERVER.port)]),
    addrs,
    st.just(SERVER),  # the server's own address: garbage may change the list, but must not crash the client
)
client_routes = st.lists(
    st.tuples(client_sources, st.sampled_from([MAIN, MAIN + 1]), steps), min_size=CHAINS + 1, max_size=CHAINS + 1
)


@fuzz_settings
@given(batches(any_message), client_routes)
def test_client_session_survives_garbage_and_only_the_server_changes_its_list(
    batch: Batch, paths: list[tuple[Addr, int, float]]
) -> None:
    client, now = registered_client()
    for n, (_, data) in enumerate(batch.datagrams()):
        source, sock, dt = paths[n % len(paths)]
        fed["client"] += 1
        now += dt
        if (timer := client.get_timer()) is not None and timer <= now:
            client.handle_timer(now)
        serve(client, now)
        before = (client.peers(), [client.details(p) for p in REAL], client.state, client.token)
        client.receive_datagram(data, sock, source, now)
        if source != SERVER:  # nor the peers' addresses and keys
            after = (client.peers(), [client.details(p) for p in REAL], client.state, client.token)
            assert after == before, f"{data!r} from {source} changed it"
        serve(client, now)


def serve(client: ClientSession, now: float) -> None:
    """Carry out the client's actions: what it sends is valid, and the server answers its keepalives."""
    for action in client.actions():
        if isinstance(action, Send):
            assert len(action.data) <= wire.MAX_DATAGRAM
            sent = wire.decode(action.data)
            if action.addr == SERVER and isinstance(sent, wire.KeepAlive) and client.pub is not None:
                alive = wire.Alive(ver=sent.ver, pub=client.pub, now=now)
                client.receive_datagram(wire.encode(alive), MAIN, SERVER, now)
                client.actions()
    while client.next_event() is not None:
        pass


def test_make_fuzz_feeds_enough() -> None:
    """Runs last in this file: with ``make fuzz`` each fuzz test above fed at least 100,000 datagrams."""
    if EXAMPLES * PER_EXAMPLE < 100_000:
        pytest.skip(f"NATCHAT_FUZZ_EXAMPLES={EXAMPLES}: a quick run; `make fuzz` runs the long one")
    print(f"\nfuzz: datagrams fed {fed}")
    assert all(count >= 100_000 for count in fed.values()), fed


# --- bugs found by fuzzing (fixed): minimal reproductions -------------------------------------------------------------


def test_error_reply_quoting_a_datagram_stays_under_the_limit() -> None:
    """A registered client's address sends an unknown type of 190 escaped control characters. The reason
    echoed them (6 bytes each in JSON), the reply was 1214 bytes, and ``wire.encode``'s WireError escaped
    ``receive_datagram``: ``natchat serve`` died and every client was lost. Now the reply is short and
    printable, and the client gets it."""
    server = RendezvousServer()
    pub, priv = REAL["alice"]
    register(server, "alice", pub, priv, 0.0)
    server.receive_datagram(b'{"v":3,"t":"' + b"\\u0001" * 190 + b'"}', pub, 1.0)
    assert "alice" in [p.id for p in server.peers()]
    (reply,) = [data for data, dst in server.datagrams_to_send() if dst == pub]
    assert len(reply) <= 400 and isinstance(wire.decode(reply), wire.Error)


def test_list_page_index_beyond_count_is_dropped() -> None:
    """Two pages of a two-page snapshot, numbered 0 and 5: the client counted two pages, read page 1,
    and ``KeyError`` escaped ``receive_datagram`` (the client process died). Needs the server's source
    address (a spoofed datagram, or a faulty server). Now the impossible page is dropped."""
    client, now = registered_client()
    for index in (0, 5):
        page = wire.ListPage(ver=4, index=index, count=2, peers="bob")
        client.receive_datagram(wire.encode(page), MAIN, SERVER, now)
    assert client.state is State.REGISTERED
    assert client.peers() != ["bob"]  # the snapshot is incomplete: not taken


def test_a_duplicated_key_that_is_a_lone_surrogate_is_escaped_not_a_failure_of_the_fuzzer() -> None:
    data = b'{"\\ud800":1}'  # (an earlier mutation can leave such a key: json.loads takes it)
    out = _duplicate_key(Mutation(op="duplicate_key", a=0, b=0, blob=b"", text=""), data, b"")
    assert out.startswith(b'{"\\ud800":null,') and out.endswith(data[1:])
