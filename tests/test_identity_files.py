"""The identity shell on real files in temporary directories (natchat/identity.py), and `natchat id`
through the real CLI with XDG_CONFIG_HOME pointing at one."""

from __future__ import annotations

import base64
import json
import os
import pathlib
import stat
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from natchat import identity as files
from natchat.identity import IdentityFileError, KnownPeers, open_identity
from natchat.net import EndpointError
from natchat.proto.identity import Identity, Pin, PinBook, Status, fingerprint, verify_session
from natchat.proto.seal import KeyPair

SERVER = "127.0.0.1:10080"
BOB = Identity.from_seed(bytes(range(32, 64)))


def mode(path: pathlib.Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def env_for(tmp_path: pathlib.Path) -> dict[str, str]:
    return {"XDG_CONFIG_HOME": str(tmp_path / "config"), "HOME": str(tmp_path / "home")}


# --- where the files are -----------------------------------------------------------------------------


def test_the_config_directory_follows_xdg() -> None:
    assert files.config_dir({"XDG_CONFIG_HOME": "/x/cfg", "HOME": "/h"}) == pathlib.Path("/x/cfg/natchat")
    assert files.config_dir({"HOME": "/h"}) == pathlib.Path("/h/.config/natchat")
    assert files.config_dir({"XDG_CONFIG_HOME": "relative", "HOME": "/h"}) == pathlib.Path("/h/.config/natchat")
    assert files.config_dir({"XDG_CONFIG_HOME": "", "HOME": "/h"}) == pathlib.Path("/h/.config/natchat")
    assert files.known_peers_path({"HOME": "/h"}) == pathlib.Path("/h/.config/natchat/known_peers")


def test_server_labels_name_the_server_as_given_with_its_port() -> None:
    assert files.server_label("127.0.0.1") == "127.0.0.1:10080"
    assert files.server_label("Chat.Example.ORG:999") == "chat.example.org:999"
    assert files.server_label("::1") == "[::1]:10080"
    assert files.server_label("[::1]:5") == "[::1]:5"
    assert files.server_label("bücher.de") == "xn--bcher-kva.de:10080"
    with pytest.raises(EndpointError):
        files.server_label("host:0")


# --- the identity key file ---------------------------------------------------------------------------


def test_the_identity_is_created_once_with_mode_0600(tmp_path: pathlib.Path) -> None:
    env = env_for(tmp_path)
    first = open_identity(env=env, issued=5)
    path = tmp_path / "config" / "natchat" / "identity"
    assert first.path == path and first.created
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n")
    again = open_identity(env=env)
    assert not again.created and again.identity.public == first.identity.public
    assert [p.name for p in path.parent.iterdir()] == ["identity"]  # no temporary file left, no pins yet
    # what it signs verifies under its public key
    session = KeyPair.from_seed(bytes(32)).public
    assert verify_session(first.identity.public, first.sign("alice", session), "alice", session, 5)


@pytest.mark.parametrize(("bits", "word"), [(0o644, "read"), (0o640, "read"), (0o604, "read"), (0o620, "changed")])
def test_a_key_others_can_read_or_change_is_refused(tmp_path: pathlib.Path, bits: int, word: str) -> None:
    env = env_for(tmp_path)
    path = open_identity(env=env).path
    assert path is not None
    path.chmod(bits)
    with pytest.raises(IdentityFileError) as info:
        open_identity(env=env)
    message = str(info.value)
    assert message == (f"the identity key {path} can be {word} by other users (mode {bits:04o}); run: chmod 600 {path}")
    assert "\n" not in message


def _pem(key: object, encryption: serialization.KeySerializationEncryption | None = None) -> bytes:
    return key.private_bytes(  # type: ignore[attr-defined,no-any-return]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption or serialization.NoEncryption()
    )


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "no readable PEM private key"),
        (b"not a key at all\n", "no readable PEM private key"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "no readable PEM private key"),
        (_pem(ec.generate_private_key(ec.SECP256R1())), "a key of another kind"),
        (_pem(Identity().private, serialization.BestAvailableEncryption(b"pw")), "encrypted with a passphrase"),
        (b"x" * (files.IDENTITY_MAX_BYTES + 1), "larger than"),
    ],
)
def test_a_malformed_key_is_refused_in_one_line(tmp_path: pathlib.Path, content: bytes, reason: str) -> None:
    path = tmp_path / "key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(IdentityFileError) as info:
        open_identity(identity_file=path, env=env_for(tmp_path))
    assert reason in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)
    assert path.read_bytes() == content  # never overwritten


def test_a_directory_or_a_missing_directory_is_refused(tmp_path: pathlib.Path) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(IdentityFileError, match="not a regular file"):
        open_identity(identity_file=tmp_path / "dir", env=env_for(tmp_path))
    with pytest.raises(IdentityFileError, match="No such file or directory"):
        open_identity(identity_file=tmp_path / "missing" / "key", env=env_for(tmp_path))
    assert not (tmp_path / "missing").exists()  # --identity FILE: its directory is not made


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_key_owned_by_another_user_is_refused(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "key"
    files.create_identity(path)
    os.chown(path, 1, 1)
    with pytest.raises(IdentityFileError, match="belongs to another user"):
        files.load_identity(path)


def test_identity_file_picks_another_key_and_creation_never_overwrites(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "second"
    made = open_identity(identity_file=path, env=env_for(tmp_path))
    assert made.created and mode(path) == 0o600
    assert not (tmp_path / "config").exists()  # the default key was not made
    # a natchat that lost the race to create it takes the one that is there
    loser = files.create_identity(path, Identity())
    assert loser.public == made.identity.public
    assert sorted(p.name for p in tmp_path.iterdir()) == ["second"]


def test_ephemeral_reads_and_writes_nothing(tmp_path: pathlib.Path) -> None:
    env = env_for(tmp_path)
    (tmp_path / "bad").write_text("junk")  # would be refused if it were read
    one = open_identity(ephemeral=True, identity_file=tmp_path / "bad", env=env)
    two = open_identity(ephemeral=True, env=env)
    assert one.path is None and one.pins is None and one.identity.public != two.identity.public
    ids = one.peers(SERVER)
    session = KeyPair.from_seed(bytes(32)).public
    seen, _ = ids.observe("bob", session, BOB.public, BOB.sign("bob", session, 1), 1)
    assert seen.status is Status.UNPINNED and not one.save_pins()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad"]


# --- known_peers ---------------------------------------------------------------------------------------


def test_pins_are_saved_and_seen_by_the_next_run(tmp_path: pathlib.Path) -> None:
    env = env_for(tmp_path)
    run = open_identity(env=env)
    assert run.pins is not None and len(run.pins) == 0
    session = KeyPair.from_seed(bytes(32)).public
    ids = run.peers(SERVER)
    assert ids.observe("bob", session, BOB.public, BOB.sign("bob", session, 7), 7)[0].status is Status.NEW
    assert run.save_pins() and not run.save_pins()  # written once; nothing new the second time
    path = tmp_path / "config" / "natchat" / "known_peers"
    assert mode(path) == 0o600
    assert path.read_text().splitlines()[-1] == f"{SERVER} bob {base64.b64encode(BOB.public).decode()} 7"
    later = open_identity(env=env).peers(SERVER)
    assert later.observe("bob", session, BOB.public, BOB.sign("bob", session, 8), 8)[0].status is Status.PINNED
    impostor = Identity()
    assert later.observe("bob", session, impostor.public, impostor.sign("bob", session, 9), 9)[0].status is (
        Status.CHANGED
    )


def test_a_failed_save_leaves_the_old_file_whole(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "known_peers"
    store = KnownPeers(path)
    book = PinBook()
    book.pin(SERVER, "bob", BOB.public, 1)
    store.save(book)
    before = path.read_bytes()
    book.pin(SERVER, "carol", BOB.public, 2)

    def fail(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", fail)
    with pytest.raises(IdentityFileError, match=r"^cannot write .*known_peers: No space left on device$"):
        store.save(book)
    assert path.read_bytes() == before and book.dirty  # still to be saved
    assert sorted(p.name for p in tmp_path.iterdir()) == ["known_peers", "known_peers.lock"]  # no temporary left
    monkeypatch.undo()
    assert store.save(book) and {p.peer_id for p in store.load()} == {"bob", "carol"}


def test_saving_merges_what_another_natchat_pinned_meanwhile(tmp_path: pathlib.Path) -> None:
    store = KnownPeers(tmp_path / "known_peers")
    mine, theirs = store.load(), store.load()
    mine.pin(SERVER, "bob", BOB.public, 1)
    theirs.pin(SERVER, "carol", BOB.public, 1)
    store.save(theirs)
    store.save(mine)
    assert {p.peer_id for p in store.load()} == {"bob", "carol"}
    assert mine.get(SERVER, "carol") == Pin(SERVER, "carol", BOB.public, 1)  # and mine learnt carol


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"127.0.0.1:10080 bob\n", r"known_peers: line 1: expected 4 fields .*; fix or delete that line$"),
        (b"# ok\n\nbob\nbob\n", r"known_peers: line 3: .* \(and 1 more bad line\); fix or delete that line$"),
        (b"\xff\xfe\n", r"known_peers: not UTF-8 text \(byte 0\); fix or delete it$"),
    ],
)
def test_a_malformed_pin_file_is_refused_with_the_line(tmp_path: pathlib.Path, content: bytes, expected: str) -> None:
    env = env_for(tmp_path)
    path = files.known_peers_path(env)
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(IdentityFileError, match=expected) as info:
        open_identity(env=env)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)
    assert path.read_bytes() == content


def test_a_pin_file_others_can_change_is_refused(tmp_path: pathlib.Path) -> None:
    store = KnownPeers(tmp_path / "known_peers")
    book = PinBook()
    book.pin(SERVER, "bob", BOB.public, 1)
    store.save(book)
    store.path.chmod(0o644)
    assert len(store.load()) == 1  # readable by others is allowed: it holds public keys
    store.path.chmod(0o666)
    with pytest.raises(IdentityFileError, match=r"can be changed by other users \(mode 0666\)"):
        store.load()


# --- natchat id, the real command ----------------------------------------------------------------------


def natchat_id(tmp_path: pathlib.Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NATCHAT_")}
    env.update(env_for(tmp_path), **extra_env)
    return subprocess.run(
        [sys.executable, "-m", "natchat", "id", *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_natchat_id_creates_the_key_then_prints_the_same_fingerprint(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "config" / "natchat" / "identity"
    first = natchat_id(tmp_path)
    assert first.returncode == 0 and first.stderr == ""
    key = files.load_identity(path)
    assert first.stdout.splitlines() == [f"fingerprint {fingerprint(key.public)}", f"identity key {path} (created now)"]
    second = natchat_id(tmp_path, "--json")
    assert second.returncode == 0 and second.stderr == ""
    assert json.loads(second.stdout) == {
        "event": "identity",
        "fingerprint": fingerprint(key.public),
        "key": base64.b64encode(key.public).decode(),
        "path": str(path),
        "created": False,
    }


def test_natchat_id_identity_option_and_environment(tmp_path: pathlib.Path) -> None:
    other = tmp_path / "other.key"
    by_option = natchat_id(tmp_path, "--identity", str(other))
    by_env = natchat_id(tmp_path, NATCHAT_IDENTITY=str(other))
    assert by_option.returncode == by_env.returncode == 0
    assert by_option.stdout.splitlines()[0] == by_env.stdout.splitlines()[0]
    assert by_env.stdout.splitlines()[1] == f"identity key {other}"
    assert not (tmp_path / "config").exists()


def test_natchat_id_refuses_a_readable_or_malformed_key_in_one_line(tmp_path: pathlib.Path) -> None:
    assert natchat_id(tmp_path).returncode == 0
    path = tmp_path / "config" / "natchat" / "identity"
    path.chmod(0o644)
    readable = natchat_id(tmp_path)
    assert readable.returncode == 1 and readable.stdout == ""
    assert (
        readable.stderr
        == f"error: the identity key {path} can be read by other users (mode 0644); run: chmod 600 {path}\n"
    )
    path.chmod(0o600)
    path.write_text("garbage\n")
    malformed = natchat_id(tmp_path)
    assert malformed.returncode == 1 and len(malformed.stderr.splitlines()) == 1
    assert (
        malformed.stderr.startswith(f"error: {path} is not a natchat identity key")
        and "Traceback" not in malformed.stderr
    )
    empty = natchat_id(tmp_path, "--identity", "")
    assert empty.returncode == 2 and empty.stderr == "error: --identity: the file name is empty\n"
