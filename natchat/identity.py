"""The identity key and the pinned peers on disk: the I/O shell of ``natchat/proto/identity.py``.

Files live in the config directory, ``$XDG_CONFIG_HOME/natchat/`` (``~/.config/natchat/`` when that is
unset or not absolute, as the XDG spec says):

* ``identity``: the long-term Ed25519 private key, an unencrypted PKCS#8 PEM file (``openssl pkey``
  reads it), created on first use with mode 0600 and refused if its mode lets group or others in, if
  another user owns it, or if it is not exactly such a key. ``--identity FILE`` (``NATCHAT_IDENTITY``)
  picks another file (created too if missing; its directory must exist).
* ``known_peers``: the pin book (``PinBook.dumps``), written atomically (a temporary file renamed over
  it) under a lock, merged with what another natchat may have written meanwhile.

``--ephemeral``: an identity made in memory, nothing read, nothing written, nothing pinned.

Every problem a user can fix is an :class:`IdentityFileError` whose text is one line saying what to do.
These functions block (small files); a Trio shell calls them before ``trio.run`` or in a thread.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .net import EndpointError, split_endpoint
from .proto.identity import SERVER_PATTERN, Identity, PeerIdentities, PinBook, PinFileError

IDENTITY_FILE = "identity"
KNOWN_PEERS_FILE = "known_peers"
IDENTITY_MAX_BYTES = 64 * 1024
"""A PEM Ed25519 key is 119 bytes; anything much larger is not one (and is not read whole)."""
KNOWN_PEERS_MAX_BYTES = 64 * 1024 * 1024
"""About 500,000 pins."""


class IdentityFileError(Exception):
    """An identity or known_peers file natchat cannot use; the text is one line for the user."""


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/natchat``, or ``~/.config/natchat`` (not created here)."""
    env = os.environ if env is None else env
    xdg = env.get("XDG_CONFIG_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "natchat"
    home = env.get("HOME") or ""
    if not home:
        try:
            home = str(Path.home())
        except RuntimeError:
            raise IdentityFileError(
                "cannot find the config directory: set XDG_CONFIG_HOME or HOME, or use --identity"
            ) from None
    return Path(home) / ".config" / "natchat"


def default_identity_path(env: Mapping[str, str] | None = None) -> Path:
    return config_dir(env) / IDENTITY_FILE


def known_peers_path(env: Mapping[str, str] | None = None) -> Path:
    return config_dir(env) / KNOWN_PEERS_FILE


def server_label(spec: str, default_port: int = 10080) -> str:
    """How ``--server`` names a server in ``known_peers``: ``host:port`` as the user wrote the host
    (lower case; ``[v6]:port``), with the default port filled in. Keyed by name, not by the address it
    resolves to, as ssh's known_hosts is: a server that moves to another address keeps its pins."""
    host, port = split_endpoint(spec, default_port)
    host = host.lower()
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise EndpointError(f"bad host name {host!r}") from None
    label = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if not re.fullmatch(SERVER_PATTERN, label):
        raise EndpointError(f"bad server {spec!r}: a host name has no spaces or control characters")
    return label


def issued_now() -> int:
    """``issued`` for this run's statement: nanoseconds since 1970 (a clock set back below an earlier
    run's makes peers take this run's key for a replay until they ``@trust`` it, as with WireGuard)."""
    return time.time_ns()


# --- the identity key file --------------------------------------------------------------------------


def _read_private_file(path: Path, what: str, max_bytes: int, *, others_may_read: bool = False) -> bytes:
    """The bytes of a file that only its owner may change (and, unless ``others_may_read``, read)."""
    try:
        # O_NONBLOCK: a FIFO put there does not hang the open (a regular file ignores the flag)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise  # the caller decides: create it, or take it as empty
    except OSError as exc:
        raise IdentityFileError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise IdentityFileError(f"{what} {path} is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        forbidden = 0o022 if others_may_read else 0o077
        if mode & forbidden:
            who = "changed" if others_may_read or not mode & 0o044 else "read"
            raise IdentityFileError(
                f"{what} {path} can be {who} by other users (mode {mode:04o}); run: chmod 600 {path}"
            )
        if info.st_uid != os.geteuid():
            raise IdentityFileError(f"{what} {path} belongs to another user (uid {info.st_uid}); it must be yours")
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as file:
        data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise IdentityFileError(f"{what} {path} is larger than {max_bytes} bytes: not a natchat file")
    return data


def load_identity(path: Path) -> Identity:
    """The identity in ``path``; :class:`FileNotFoundError` if there is none, :class:`IdentityFileError`
    if it cannot be used."""
    data = _read_private_file(path, "the identity key", IDENTITY_MAX_BYTES)
    what = f"{path} is not a natchat identity key (an unencrypted PEM Ed25519 private key)"
    fix = "move it away to make a new identity (peers that pinned the old one will see it changed)"
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise IdentityFileError(
            f"{path} is encrypted with a passphrase; natchat needs it unencrypted, mode 0600"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise IdentityFileError(f"{what}: it holds no readable PEM private key; {fix}") from None
    if not isinstance(key, Ed25519PrivateKey):
        kind = type(key).__name__.removeprefix("_").removesuffix("PrivateKey") or "another"
        raise IdentityFileError(f"{what}: it holds a key of another kind ({kind}); {fix}")
    return Identity(key)


def identity_pem(identity: Identity) -> bytes:
    return identity.private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def create_identity(path: Path, identity: Identity | None = None, *, make_dir: bool = False) -> Identity:
    """Write a new identity to ``path`` (mode 0600), never over an existing file: the key is written to
    a temporary file and linked into place, so nobody ever reads half a key, and of two natchats
    creating it at once one wins and the other loads the winner's. ``make_dir``: make the directory
    (mode 0700) if missing (the config directory); otherwise it must exist (``--identity FILE``)."""
    identity = identity if identity is not None else Identity()
    directory = path.parent
    try:
        if make_dir:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.")  # mode 0600
    except OSError as exc:
        raise IdentityFileError(f"cannot create the identity key {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(identity_pem(identity))
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return load_identity(path)  # another natchat made it first
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV):
                raise IdentityFileError(f"cannot create the identity key {path}: {exc.strerror}") from None
            # a file system without hard links: create exclusively instead
            _write_exclusive(path, identity_pem(identity))
        _fsync_dir(directory)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return identity


def _write_exclusive(path: Path, data: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise IdentityFileError(f"cannot create the identity key {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as file:
        file.write(data)
        os.fsync(file.fileno())


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def load_or_create_identity(path: Path, *, make_dir: bool = False) -> tuple[Identity, bool]:
    """The identity in ``path``, made first if there is none: ``(identity, created)``; ``make_dir`` as
    for :func:`create_identity`."""
    try:
        return load_identity(path), False
    except FileNotFoundError:
        pass
    identity = create_identity(path, make_dir=make_dir)
    return identity, True


# --- known_peers ------------------------------------------------------------------------------------


class KnownPeers:
    """The ``known_peers`` file: :meth:`load` it, :meth:`save` a book's changes into it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> PinBook:
        """The pins in the file (an empty book if there is none); :class:`IdentityFileError` for a file
        that is not exactly the format (every pin matters: a file with a bad line is refused whole)."""
        try:
            data = _read_private_file(self.path, "the pin file", KNOWN_PEERS_MAX_BYTES, others_may_read=True)
        except FileNotFoundError:
            return PinBook()
        try:
            return PinBook.loads(data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise IdentityFileError(f"{self.path}: not UTF-8 text (byte {exc.start}); fix or delete it") from None
        except PinFileError as exc:
            raise IdentityFileError(f"{self.path}: {exc}; fix or delete that line") from None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        except OSError as exc:
            raise IdentityFileError(f"cannot write {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def save(self, book: PinBook) -> bool:
        """Write ``book``'s changes (if any) into the file: under a lock, merged with what is in the file
        now (another natchat may have pinned peers meanwhile; this book learns those too), to a
        temporary file renamed over the old one, so a crash leaves the old file or the new, never half.
        Returns whether anything was written."""
        if not book.dirty:
            return False
        with self._locked():
            merged = book.merged_into(self.load())
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as file:
                    file.write(merged.dumps())
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(tmp, self.path)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise IdentityFileError(f"cannot write {self.path}: {exc.strerror}") from None
            _fsync_dir(self.path.parent)
        book.absorb(merged)
        book.mark_saved()
        return True


# --- what a run uses --------------------------------------------------------------------------------


@dataclass(slots=True)
class LocalIdentity:
    """This run's identity, where it came from, and its pins (None for both with ``--ephemeral``)."""

    identity: Identity
    path: Path | None
    """The key file; None: in memory only (``--ephemeral``)."""
    created: bool
    """The key file was made by this run."""
    issued: int
    """This run's ``issued`` (every registration of the run signs the same statement)."""
    pins: PinBook | None
    known_peers: KnownPeers | None

    def sign(self, client_id: str, session_key: bytes) -> bytes:
        """The signature that goes with the registration of ``session_key`` as ``client_id``."""
        return self.identity.sign(client_id, session_key, self.issued)

    def peers(self, server: str) -> PeerIdentities:
        """The session's :class:`PeerIdentities` for the server named ``server`` (:func:`server_label`)."""
        return PeerIdentities(server, self.pins)

    def save_pins(self) -> bool:
        """Write what changed in the pins since the last save (nothing with ``--ephemeral``)."""
        if self.pins is None or self.known_peers is None:
            return False
        return self.known_peers.save(self.pins)


def open_identity(
    *,
    identity_file: str | os.PathLike[str] | None = None,
    ephemeral: bool = False,
    env: Mapping[str, str] | None = None,
    issued: int | None = None,
) -> LocalIdentity:
    """The identity and pins of this run: ``--identity FILE`` (or the config directory's ``identity``,
    created on first use) and the config directory's ``known_peers``; with ``ephemeral``, a new
    identity in memory and no pins, nothing read or written (``identity_file`` is then ignored).
    :class:`IdentityFileError` for files that cannot be used."""
    issued = issued if issued is not None else issued_now()
    if ephemeral:
        return LocalIdentity(Identity(), None, False, issued, None, None)
    path = Path(identity_file) if identity_file is not None else default_identity_path(env)
    identity, created = load_or_create_identity(path, make_dir=identity_file is None)
    known = KnownPeers(known_peers_path(env))
    return LocalIdentity(identity, path, created, issued, known.load(), known)
