"""Long-term identities: signed session keys, fingerprints, and pinning on first contact, as pure code.

A client has one long-term **identity** key pair (Ed25519, :class:`Identity`), kept by the shell
(``natchat/identity.py``). Each run still makes a fresh X25519 sealing key (``seal.py``); the identity
signs a **statement** binding that session key to the client's ID and to ``issued``, a number the shell
passes in that grows from run to run (nanoseconds since the Unix epoch when the run started, as
WireGuard's TAI64N handshake timestamp does). The statement, its signature and the identity's public
key travel with the registration and in the peer's details (``docs/PROTOCOL.md``, *Identities and pinning*).

A peer that receives them checks the signature (:func:`verify_session`) and then asks its
:class:`PinBook` (one pin per server and peer ID, like ssh's known_hosts) what it makes of that
identity: :attr:`Verdict.NEW` (first contact: pin it), :attr:`Verdict.PINNED` (as before),
:attr:`Verdict.CHANGED` (another identity under that ID: block it until the user trusts it) or
:attr:`Verdict.REPLAYED` (the pinned identity, but a statement older than the newest one seen: a
replay of an old registration, refused). :class:`PeerIdentities` puts those together for a chat
session: it owns what the session knows of its peers' identities and what it has blocked, and returns
the events to show (``identity_events.py``); it never sends, reads files or reads a clock.

Fingerprints are digits in groups of five, as Signal's safety numbers are: :func:`fingerprint` of one
identity key (what ``natchat id`` prints), and :func:`safety_number` of a pair (ID and identity key of
each side), which is the same on both sides.

Nothing here does I/O; key generation happens only as the default of a parameter.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .wire import ID_PATTERN

IDENTITY_KEY_BYTES: Final = 32
"""An Ed25519 public key, raw."""
SIGNATURE_BYTES: Final = 64
SESSION_KEY_BYTES: Final = 32
"""The X25519 session (sealing) key the statement binds."""
ISSUED_MAX: Final = 2**63 - 1
"""``issued`` is a non-negative 64-bit signed integer (JSON numbers stay exact up to 2**63 in msgspec)."""
STATEMENT_CONTEXT: Final = b"natchat identity v1\x00"
"""Domain separation: these signatures can be taken for nothing else."""
FINGERPRINT_CONTEXT: Final = b"natchat fingerprint v1\x00"
FINGERPRINT_ITERATIONS: Final = 5200
"""As Signal's ``NumericFingerprintGenerator`` (iterated SHA-512 makes a near-collision costly)."""
SERVER_PATTERN: Final = r"^[!-~]{1,255}$"
"""A server's name in the pin book: 1-255 visible ASCII characters (the shell writes ``host:port``)."""


class IdentityError(ValueError):
    """A key, signature or statement that cannot be used; the text says why."""


class Identity:
    """A long-term Ed25519 identity key pair; ``public`` is the 32 raw bytes that go on the wire."""

    def __init__(self, private: Ed25519PrivateKey | None = None) -> None:
        self.private = private if private is not None else Ed25519PrivateKey.generate()
        self.public = self.private.public_key().public_bytes_raw()

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        """The identity whose private key is these 32 bytes (tests, and the shell's key file)."""
        if len(seed) != 32:
            raise IdentityError(f"an Ed25519 private key is 32 bytes, not {len(seed)}")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    def sign(self, client_id: str, session_key: bytes, issued: int) -> bytes:
        """:func:`sign_session` with this identity."""
        return sign_session(self, client_id, session_key, issued)

    def __repr__(self) -> str:  # never the private key
        return f"Identity({fingerprint(self.public)!r})"


def statement(client_id: str, session_key: bytes, issued: int) -> bytes:
    """The exact bytes an identity signs: context, the ID (length first), the session key, ``issued``.

    ``natchat identity v1`` NUL | len(id) (1 byte) | id (ASCII) | session key (32 bytes) | issued (8
    bytes, big-endian). :class:`IdentityError` for an invalid ID, key length or ``issued``."""
    if not re.fullmatch(ID_PATTERN, client_id):
        raise IdentityError(f"invalid client ID {client_id!r}")
    if len(session_key) != SESSION_KEY_BYTES:
        raise IdentityError(f"a session key is {SESSION_KEY_BYTES} bytes, not {len(session_key)}")
    if not 0 <= issued <= ISSUED_MAX:
        raise IdentityError(f"issued {issued} is outside 0..2**63-1")
    name = client_id.encode("ascii")
    return STATEMENT_CONTEXT + bytes([len(name)]) + name + session_key + issued.to_bytes(8, "big")


def sign_session(identity: Identity, client_id: str, session_key: bytes, issued: int) -> bytes:
    """The 64-byte Ed25519 signature by ``identity`` of :func:`statement` (ID, session key, issued)."""
    return identity.private.sign(statement(client_id, session_key, issued))


def verify_session(identity_key: bytes, signature: bytes, client_id: str, session_key: bytes, issued: int) -> bool:
    """Whether ``signature`` is ``identity_key``'s signature of this statement. Never raises: a key or
    signature of the wrong length, or a statement that cannot be made, is simply not verified."""
    if len(identity_key) != IDENTITY_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        message = statement(client_id, session_key, issued)
        Ed25519PublicKey.from_public_bytes(identity_key).verify(signature, message)
    except (IdentityError, InvalidSignature, ValueError):
        return False
    return True


# --- fingerprints ---------------------------------------------------------------------------------


def _digits(identity_key: bytes, label: bytes) -> str:
    """30 decimal digits of ``identity_key`` (and ``label``): iterated SHA-512 as Signal's safety numbers,
    the first 30 bytes of the hash taken 5 at a time, each big-endian number modulo 100000."""
    if len(identity_key) != IDENTITY_KEY_BYTES:
        raise IdentityError(f"an identity key is {IDENTITY_KEY_BYTES} bytes, not {len(identity_key)}")
    digest = FINGERPRINT_CONTEXT + identity_key + label
    for _ in range(FINGERPRINT_ITERATIONS):
        digest = hashlib.sha512(digest + identity_key).digest()
    return "".join(f"{int.from_bytes(digest[i : i + 5], 'big') % 100000:05d}" for i in range(0, 30, 5))


def _grouped(digits: str) -> str:
    return " ".join(digits[i : i + 5] for i in range(0, len(digits), 5))


def fingerprint(identity_key: bytes) -> str:
    """One identity's fingerprint, six groups of five digits (``natchat id`` prints one's own; ``@whois``
    a peer's): ``"12345 67890 ..."``. Stable: the same key always gives the same digits."""
    return _grouped(_digits(identity_key, b""))


def safety_number(id_a: str, key_a: bytes, id_b: str, key_b: bytes) -> str:
    """The pair's safety number, twelve groups of five digits, the same whichever side computes it: each
    side's 30 digits (of its identity key and its ID), the smaller first. Two people who read the same
    number to each other know that each has the other's identity under that ID."""
    halves = sorted([_digits(key_a, b"id " + id_a.encode()), _digits(key_b, b"id " + id_b.encode())])
    return _grouped("".join(halves))


# --- the pin book ---------------------------------------------------------------------------------


class Verdict(enum.Enum):
    """What the pin book makes of an identity seen under a (server, peer ID)."""

    NEW = "new"
    """Nothing pinned for that ID on that server: first contact (trust on first use: pin it)."""
    PINNED = "pinned"
    """The identity pinned for it, with a statement at least as new as the newest seen."""
    CHANGED = "changed"
    """Another identity than the one pinned: someone else has that ID now, or the server lies."""
    REPLAYED = "replayed"
    """The pinned identity, but a statement issued before the newest seen: an old registration replayed."""


@dataclass(frozen=True, slots=True)
class Pin:
    """One line of ``known_peers``: on ``server``, ``peer_id`` is ``identity_key``, and the newest
    statement seen from it was issued at ``issued``."""

    server: str
    peer_id: str
    identity_key: bytes
    issued: int

    def __post_init__(self) -> None:
        if not re.fullmatch(SERVER_PATTERN, self.server):
            raise IdentityError(f"invalid server name {self.server!r}: 1-255 visible ASCII characters, no spaces")
        if not re.fullmatch(ID_PATTERN, self.peer_id):
            raise IdentityError(f"invalid client ID {self.peer_id!r}")
        if len(self.identity_key) != IDENTITY_KEY_BYTES:
            raise IdentityError(f"an identity key is {IDENTITY_KEY_BYTES} bytes, not {len(self.identity_key)}")
        if not 0 <= self.issued <= ISSUED_MAX:
            raise IdentityError(f"issued {self.issued} is outside 0..2**63-1")

    def line(self) -> str:
        """This pin as a line of the file (without the newline)."""
        key = base64.b64encode(self.identity_key).decode()
        return f"{self.server} {self.peer_id} {key} {self.issued}"


@dataclass(frozen=True, slots=True)
class Check:
    """The pin book's answer: the verdict, and the pin it compared with (None for NEW)."""

    verdict: Verdict
    pinned: Pin | None


@dataclass(frozen=True, slots=True)
class BadLine:
    number: int
    """From 1."""
    reason: str


class PinFileError(ValueError):
    """A ``known_peers`` text that is not exactly the format: every bad line, with its number."""

    def __init__(self, bad: list[BadLine]) -> None:
        self.bad = bad
        first = bad[0]
        more = f" (and {len(bad) - 1} more bad line{'s' if len(bad) > 2 else ''})" if len(bad) > 1 else ""
        super().__init__(f"line {first.number}: {first.reason}{more}")


FILE_HEADER: Final = (
    "# natchat known_peers: the identity pinned for each peer ID on each server (trust on first use).\n"
    "# One line each: SERVER ID IDENTITY-KEY ISSUED (base64 Ed25519 public key; newest statement seen,\n"
    "# nanoseconds since 1970). Lines starting with # are comments. See docs/PROTOCOL.md (Identities and pinning).\n"
)
_ISSUED_TEXT = re.compile(r"0|[1-9][0-9]{0,18}")


def parse_line_untrusted(text: str) -> Pin:
    """One pin line, strictly: four fields separated by single spaces; :class:`IdentityError` says why not."""
    fields = text.split(" ")
    if len(fields) != 4 or not all(fields):
        raise IdentityError(
            f"expected 4 fields separated by single spaces (SERVER ID IDENTITY-KEY ISSUED), got {text!r}"
        )
    server, peer_id, key_text, issued_text = fields
    try:
        key = base64.b64decode(key_text, validate=True)
    except (binascii.Error, ValueError):
        raise IdentityError(f"the identity key {key_text!r} is not base64") from None
    if len(key) != IDENTITY_KEY_BYTES or base64.b64encode(key).decode() != key_text:
        raise IdentityError(f"the identity key {key_text!r} is not {IDENTITY_KEY_BYTES} bytes of base64")
    if not _ISSUED_TEXT.fullmatch(issued_text):
        raise IdentityError(f"issued {issued_text!r} is not a decimal number without sign or leading zeros")
    return Pin(server, peer_id, key, int(issued_text))


class PinBook:
    """The identities a client has pinned, one per (server, peer ID); its file form is
    :meth:`dumps` / :meth:`loads`.

    Owns the pins and which of them changed since :meth:`mark_saved` (so the shell writes only when
    something changed, and can merge its changes into a file another process wrote meanwhile)."""

    def __init__(self, pins: Iterable[Pin] = ()) -> None:
        self._pins: dict[tuple[str, str], Pin] = {}
        self._changed: set[tuple[str, str]] = set()
        for pin in pins:
            self._pins[(pin.server, pin.peer_id)] = pin

    def __len__(self) -> int:
        return len(self._pins)

    def __iter__(self) -> Iterator[Pin]:
        return iter(sorted(self._pins.values(), key=lambda p: (p.server, p.peer_id)))

    def get(self, server: str, peer_id: str) -> Pin | None:
        return self._pins.get((server, peer_id))

    def check(self, server: str, peer_id: str, identity_key: bytes, issued: int) -> Check:
        """What ``identity_key`` (with a statement issued at ``issued``) is, for ``peer_id`` on ``server``.
        Changes nothing; the statement's signature is the caller's to verify first."""
        pinned = self._pins.get((server, peer_id))
        if pinned is None:
            return Check(Verdict.NEW, None)
        if pinned.identity_key != identity_key:
            return Check(Verdict.CHANGED, pinned)
        if issued < pinned.issued:
            return Check(Verdict.REPLAYED, pinned)
        return Check(Verdict.PINNED, pinned)

    def pin(self, server: str, peer_id: str, identity_key: bytes, issued: int) -> Pin:
        """Record a NEW identity, or a newer statement of the PINNED one. :class:`IdentityError` if that
        would replace another identity or go back in time (that takes :meth:`trust`)."""
        verdict = self.check(server, peer_id, identity_key, issued).verdict
        if verdict is Verdict.CHANGED:
            raise IdentityError(f"{peer_id} on {server} has another identity pinned: trust it explicitly")
        if verdict is Verdict.REPLAYED:
            raise IdentityError(f"{peer_id} on {server} has a newer statement pinned")
        pinned = self._pins.get((server, peer_id))
        if pinned is not None and pinned.issued == issued:
            return pinned
        return self._set(Pin(server, peer_id, identity_key, issued))

    def trust(self, server: str, peer_id: str, identity_key: bytes, issued: int) -> Pin:
        """Pin ``identity_key`` for ``peer_id`` on ``server`` whatever was pinned (``@trust``)."""
        return self._set(Pin(server, peer_id, identity_key, issued))

    def _set(self, pin: Pin) -> Pin:
        key = (pin.server, pin.peer_id)
        self._pins[key] = pin
        self._changed.add(key)
        return pin

    # --- saving ---

    @property
    def dirty(self) -> bool:
        """Some pin changed since the last :meth:`mark_saved`."""
        return bool(self._changed)

    def changed(self) -> list[Pin]:
        """The pins set since the last :meth:`mark_saved`, in file order."""
        return sorted((self._pins[k] for k in self._changed), key=lambda p: (p.server, p.peer_id))

    def mark_saved(self) -> None:
        self._changed.clear()

    def snapshot(self) -> PinBook:
        """A new book holding just this one's changes, as changes: for a thread to save while this book
        goes on pinning (then :meth:`saved`)."""
        copy = PinBook()
        for pin in self.changed():
            copy._set(pin)
        return copy

    def saved(self, snapshot: PinBook) -> None:
        """``snapshot`` (:meth:`snapshot`) is on disk now: its pins that did not change again since are no
        longer changes; pins another natchat wrote meanwhile are taken too (:meth:`absorb`)."""
        for pin in snapshot:
            key = (pin.server, pin.peer_id)
            if self._pins.get(key) == pin:
                self._changed.discard(key)
        self.absorb(snapshot)

    def merged_into(self, on_disk: PinBook) -> PinBook:
        """``on_disk`` (what the file holds now, perhaps written by another natchat meanwhile) with this
        book's changes applied on top: a new book to write. Pins only the other process changed stay."""
        result = PinBook(on_disk)
        for pin in self.changed():
            result._pins[(pin.server, pin.peer_id)] = pin
        return result

    def absorb(self, other: PinBook) -> None:
        """Take every pin of ``other`` that this book did not change itself (after a merged save)."""
        for pin in other:
            key = (pin.server, pin.peer_id)
            if key not in self._changed:
                self._pins[key] = pin

    # --- the file form ---

    def dumps(self) -> str:
        """The file: :data:`FILE_HEADER`, then one :meth:`Pin.line` per pin, sorted by server and ID."""
        return FILE_HEADER + "".join(pin.line() + "\n" for pin in self)

    @classmethod
    def loads(cls, text: str) -> PinBook:
        """Parse a file strictly: blank lines and ``#`` comments are skipped; any other line must be a pin,
        and a (server, ID) may appear once. :class:`PinFileError` lists every bad line: a file with a bad
        line is refused whole, since skipping it would silently forget a pin."""
        pins: dict[tuple[str, str], Pin] = {}
        bad: list[BadLine] = []
        for number, raw in enumerate(text.split("\n"), 1):
            line = raw.removesuffix("\r")
            if not line.strip() or line.startswith("#"):
                continue
            try:
                pin = parse_line_untrusted(line)
            except IdentityError as exc:
                bad.append(BadLine(number, str(exc)))
                continue
            key = (pin.server, pin.peer_id)
            if key in pins:
                bad.append(BadLine(number, f"a second line for {pin.peer_id} on {pin.server}"))
                continue
            pins[key] = pin
        if bad:
            raise PinFileError(bad)
        return cls(pins.values())


# --- a session's view of its peers' identities -----------------------------------------------------


class Status(enum.Enum):
    """What a session makes of a peer's identity (``@whois``)."""

    UNKNOWN = "unknown"
    """No signed details from it yet."""
    NEW = "new"
    """First contact in this run: pinned now."""
    PINNED = "pinned"
    """As pinned in an earlier run (or earlier in this one)."""
    CHANGED = "changed"
    """Another identity than the pinned one: blocked until ``@trust``."""
    REPLAYED = "replayed"
    """Its last details were an old statement of its pinned identity: refused."""
    BAD_SIGNATURE = "bad_signature"
    """Its last details were not signed by the identity they name: refused, as a bad seal is."""
    UNPINNED = "unpinned"
    """Signed, but this session pins nothing (``--ephemeral``)."""


BLOCKING: Final = frozenset({Status.CHANGED, Status.REPLAYED, Status.BAD_SIGNATURE})
"""Statuses whose details the session must not use: nothing is sent to the peer, nothing shown from it."""


@dataclass(frozen=True, slots=True)
class Seen:
    """The last signed details a session saw for a peer, and what it made of them."""

    peer_id: str
    session_key: bytes
    identity_key: bytes
    issued: int
    status: Status
    pinned: Pin | None
    """The pin it was compared with (for CHANGED and REPLAYED: the one that still stands)."""

    @property
    def usable(self) -> bool:
        """The session may seal for ``session_key`` and show what opens with it."""
        return self.status not in BLOCKING


@dataclass(slots=True)
class PeerIdentities:
    """What one chat session knows of its peers' identities on one server, and whom it blocks.

    The session calls :meth:`observe` with every peer's signed details it is about to use (a lookup's
    answer, a ``punch_go``) and uses the session key only if the result is :attr:`Seen.usable`;
    :meth:`blocked` before sending to a peer or showing what it sent; :meth:`trust` for ``@trust``;
    :meth:`seen` for ``@whois``. ``pins`` is None with ``--ephemeral``: signatures are still checked,
    nothing is pinned or compared. Owns only its own table and the pins it is given; it sends nothing
    and changes no timer. The shell saves ``pins`` when :attr:`PinBook.dirty`.
    """

    server: str
    pins: PinBook | None
    _seen: dict[str, Seen] = field(default_factory=dict)
    _warned: dict[str, tuple[bytes, int, Status]] = field(default_factory=dict)
    """Per peer, the refused details last warned about (one entry a peer: bounded by the peers seen)."""

    def observe(
        self, peer_id: str, session_key: bytes, identity_key: bytes, signature: bytes, issued: int
    ) -> tuple[Seen, bool]:
        """Judge a peer's signed details: ``(seen, warn)``. NEW is pinned at once.

        ``warn`` is True when these details are refused (CHANGED, REPLAYED, BAD_SIGNATURE) and differ from
        the last ones warned about for that peer: the session then shows the matching event
        (``identity_events.refused_event``) once, not once per lookup (it may also limit warnings per
        minute, as it does for bad seals). Forged details (BAD_SIGNATURE) do not replace usable ones: the
        session keeps what verified before."""
        pinned = None
        if not verify_session(identity_key, signature, peer_id, session_key, issued):
            status = Status.BAD_SIGNATURE
        elif self.pins is None:
            status = Status.UNPINNED
        else:
            check = self.pins.check(self.server, peer_id, identity_key, issued)
            pinned = check.pinned
            status = {
                Verdict.NEW: Status.NEW,
                Verdict.PINNED: Status.PINNED,
                Verdict.CHANGED: Status.CHANGED,
                Verdict.REPLAYED: Status.REPLAYED,
            }[check.verdict]
            if check.verdict is Verdict.NEW:
                pinned = self.pins.pin(self.server, peer_id, identity_key, issued)
            elif check.verdict is Verdict.PINNED:
                pinned = self.pins.pin(self.server, peer_id, identity_key, issued)
                previous = self._seen.get(peer_id)
                if previous is not None and previous.status is Status.NEW and previous.identity_key == identity_key:
                    status = Status.NEW  # still the first contact of this run
        seen = Seen(peer_id, session_key, identity_key, issued, status, pinned)
        if status is Status.BAD_SIGNATURE and (previous := self._seen.get(peer_id)) is not None and previous.usable:
            # forged details do not replace good ones: keep using what verified, but say so
            warn = self._first_warning(seen)
            return seen, warn
        self._seen[peer_id] = seen
        return seen, self._first_warning(seen) if not seen.usable else False

    def _first_warning(self, seen: Seen) -> bool:
        token = (seen.identity_key, seen.issued, seen.status)
        if self._warned.get(seen.peer_id) == token:
            return False
        self._warned[seen.peer_id] = token
        return True

    def seen(self, peer_id: str) -> Seen | None:
        """The last details judged for ``peer_id`` (None: none yet)."""
        return self._seen.get(peer_id)

    def blocked(self, peer_id: str) -> Seen | None:
        """Why nothing may go to or come from ``peer_id`` now (None: it is not blocked)."""
        seen = self._seen.get(peer_id)
        return seen if seen is not None and not seen.usable else None

    def trust(self, peer_id: str) -> Seen | None:
        """``@trust peer``: pin the identity it was blocked for (CHANGED, or REPLAYED: accept the older
        statement, e.g. after its clock went back). Returns the new, usable :class:`Seen` (the session
        may use its ``session_key`` at once), or None if there is nothing to trust: not blocked, never
        seen, a bad signature (which no trust can mend), or ``--ephemeral``."""
        seen = self._seen.get(peer_id)
        if seen is None or self.pins is None or seen.status not in (Status.CHANGED, Status.REPLAYED):
            return None
        pin = self.pins.trust(self.server, peer_id, seen.identity_key, seen.issued)
        trusted = Seen(peer_id, seen.session_key, seen.identity_key, seen.issued, Status.PINNED, pin)
        self._seen[peer_id] = trusted
        return trusted

    def forget(self, peer_id: str) -> None:
        """The peer left: drop what this run saw of it (its pin stays in the book)."""
        self._seen.pop(peer_id, None)

    def listed(self, peer_id: str, identity_key: bytes, issued: int) -> Verdict | None:
        """For marking ``@show_list`` lines cheaply (no signature check, nothing pinned): what the pin
        book says of this listed identity; None with ``--ephemeral``."""
        if self.pins is None:
            return None
        return self.pins.check(self.server, peer_id, identity_key, issued).verdict
