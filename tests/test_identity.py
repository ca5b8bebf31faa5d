"""Identities, sans-I/O: signed session keys, the replay rule, the pin book and its file form, the
session's view of its peers (PeerIdentities), fingerprints and safety numbers, and the events."""

from __future__ import annotations

import base64
import re

import pytest

from natchat.proto import identity_events as ev
from natchat.proto.identity import (
    FILE_HEADER,
    Identity,
    IdentityError,
    PeerIdentities,
    Pin,
    PinBook,
    PinFileError,
    Status,
    Verdict,
    fingerprint,
    safety_number,
    sign_session,
    statement,
    verify_session,
)
from natchat.proto.seal import KeyPair

ALICE = Identity.from_seed(bytes(range(32)))
BOB = Identity.from_seed(bytes(range(32, 64)))
MALLORY = Identity.from_seed(bytes(range(64, 96)))
RUN1 = KeyPair.from_seed(bytes(range(96, 128))).public  # bob's session key in his first run
RUN2 = KeyPair.from_seed(bytes(range(128, 160))).public  # ... and in his second
EVIL = KeyPair.from_seed(bytes(range(160, 192))).public  # a key the server made itself
SERVER = "127.0.0.1:10080"
T1, T2 = 1_764_600_000_000_000_000, 1_764_603_600_000_000_000  # issued: ns since 1970, run 1 and run 2


# --- signing -----------------------------------------------------------------------------------------


def test_a_signed_session_key_verifies_only_as_signed() -> None:
    sig = BOB.sign("bob", RUN1, T1)
    assert len(sig) == 64 and len(BOB.public) == 32
    assert verify_session(BOB.public, sig, "bob", RUN1, T1)
    assert not verify_session(MALLORY.public, sig, "bob", RUN1, T1)  # another identity
    assert not verify_session(BOB.public, sig, "mallory", RUN1, T1)  # another ID
    assert not verify_session(BOB.public, sig, "bob", EVIL, T1)  # another session key
    assert not verify_session(BOB.public, sig, "bob", RUN1, T1 + 1)  # another time
    assert not verify_session(BOB.public, bytes(64), "bob", RUN1, T1)
    assert not verify_session(BOB.public, sig[:63], "bob", RUN1, T1)  # wrong lengths never raise
    assert not verify_session(BOB.public[:31], sig, "bob", RUN1, T1)
    assert not verify_session(BOB.public, sig, "bad id", RUN1, T1)
    assert not verify_session(BOB.public, sig, "bob", RUN1, -1)


def test_signatures_are_stable_for_fixed_seeds() -> None:
    """Ed25519 is deterministic: the same seed, ID, key and time give these exact bytes (a change in the
    statement's layout changes them: every peer of an older version would reject the new ones)."""
    sig = sign_session(ALICE, "alice", bytes(32), 1)
    assert sig.hex() == (
        "17f660ddadd5089ee816e1ceba52ec4c1047b84712f0eaf46510afbebac5a20a"
        "90957ed7725a0306b465911192b956866868e86c6786544486a69a2e88722e04"
    )


def test_the_statement_is_unambiguous() -> None:
    s = statement("bob", RUN1, T1)
    assert s.startswith(b"natchat identity v1\x00\x03bob") and s.endswith(T1.to_bytes(8, "big"))
    assert len(s) == 20 + 1 + 3 + 32 + 8
    # the ID's length comes first: no other (ID, key) pair gives the same bytes
    assert statement("bob", RUN1, T1) != statement("bo", RUN1, T1)
    for bad in (lambda: statement("b b", RUN1, T1), lambda: statement("bob", RUN1[:31], T1)):
        with pytest.raises(IdentityError):
            bad()
    with pytest.raises(IdentityError, match="outside"):
        statement("bob", RUN1, 2**63)
    with pytest.raises(IdentityError):
        Identity.from_seed(bytes(31))
    assert "34190" in repr(ALICE) and ALICE.private.private_bytes_raw().hex() not in repr(ALICE)


def test_fresh_identities_differ() -> None:
    assert Identity().public != Identity().public


# --- fingerprints -------------------------------------------------------------------------------------


def test_fingerprints_are_six_groups_of_five_digits_and_stable() -> None:
    assert fingerprint(ALICE.public) == "34190 20925 44024 07048 47956 34811"
    assert fingerprint(BOB.public) == "49755 03683 62911 79425 70300 98242"
    assert fingerprint(ALICE.public) == fingerprint(Identity.from_seed(bytes(range(32))).public)
    assert re.fullmatch(r"(\d{5} ){5}\d{5}", fingerprint(MALLORY.public))
    with pytest.raises(IdentityError):
        fingerprint(b"short")


def test_the_safety_number_is_the_same_on_both_sides_and_names_the_pair() -> None:
    ab = safety_number("alice", ALICE.public, "bob", BOB.public)
    assert ab == safety_number("bob", BOB.public, "alice", ALICE.public)
    assert ab == "10959 57141 90978 76306 10592 00145 18197 34363 35532 48350 20948 55278"
    assert re.fullmatch(r"(\d{5} ){11}\d{5}", ab)
    assert ab != safety_number("alice", ALICE.public, "bob", MALLORY.public)  # an impostor's key
    assert ab != safety_number("alice", ALICE.public, "carol", BOB.public)  # the same key under another ID
    # each side's half is 30 digits; the smaller comes first
    halves = ab.replace(" ", "")
    assert halves[:30] <= halves[30:]


# --- the pin book -------------------------------------------------------------------------------------


def test_check_new_pinned_changed_replayed() -> None:
    book = PinBook()
    assert book.check(SERVER, "bob", BOB.public, T1).verdict is Verdict.NEW
    book.pin(SERVER, "bob", BOB.public, T1)
    assert book.check(SERVER, "bob", BOB.public, T1).verdict is Verdict.PINNED  # the same run again
    assert book.check(SERVER, "bob", BOB.public, T2).verdict is Verdict.PINNED  # a later run
    changed = book.check(SERVER, "bob", MALLORY.public, T2)
    assert changed.verdict is Verdict.CHANGED and changed.pinned == Pin(SERVER, "bob", BOB.public, T1)
    book.pin(SERVER, "bob", BOB.public, T2)
    assert book.check(SERVER, "bob", BOB.public, T1).verdict is Verdict.REPLAYED
    assert book.check(SERVER, "bob", BOB.public, T2 - 1).verdict is Verdict.REPLAYED  # one nanosecond older
    assert book.check(SERVER, "bob", BOB.public, T2).verdict is Verdict.PINNED  # the same run registering again
    # per server: the same ID elsewhere is someone else
    assert book.check("chat.example.org:10080", "bob", MALLORY.public, T1).verdict is Verdict.NEW


def test_pin_never_replaces_silently_and_trust_does() -> None:
    book = PinBook()
    book.pin(SERVER, "bob", BOB.public, T2)
    with pytest.raises(IdentityError, match="trust it explicitly"):
        book.pin(SERVER, "bob", MALLORY.public, T2)
    with pytest.raises(IdentityError, match="newer"):
        book.pin(SERVER, "bob", BOB.public, T1)
    assert book.get(SERVER, "bob") == Pin(SERVER, "bob", BOB.public, T2)
    book.trust(SERVER, "bob", MALLORY.public, T1)
    assert book.check(SERVER, "bob", MALLORY.public, T1).verdict is Verdict.PINNED
    assert book.check(SERVER, "bob", BOB.public, T2).verdict is Verdict.CHANGED


def test_dirty_tracks_what_changed_since_saving() -> None:
    book = PinBook()
    assert not book.dirty
    book.pin(SERVER, "bob", BOB.public, T1)
    assert book.dirty and book.changed() == [Pin(SERVER, "bob", BOB.public, T1)]
    book.mark_saved()
    book.pin(SERVER, "bob", BOB.public, T1)  # nothing new
    assert not book.dirty
    book.pin(SERVER, "bob", BOB.public, T2)  # a newer statement: saved, so a replay of T1 is caught later
    assert book.dirty


def test_the_file_form_round_trips_sorted() -> None:
    book = PinBook()
    book.pin(SERVER, "carol", MALLORY.public, 0)
    book.pin(SERVER, "bob", BOB.public, T2)
    book.pin("[::1]:10080", "bob", ALICE.public, T1)
    text = book.dumps()
    assert text.startswith(FILE_HEADER)
    body = [line for line in text.splitlines() if not line.startswith("#")]
    assert body == [
        f"127.0.0.1:10080 bob {base64.b64encode(BOB.public).decode()} {T2}",
        f"127.0.0.1:10080 carol {base64.b64encode(MALLORY.public).decode()} 0",
        f"[::1]:10080 bob {base64.b64encode(ALICE.public).decode()} {T1}",
    ]
    again = PinBook.loads(text)
    assert list(again) == list(book) and not again.dirty
    assert PinBook.loads("").dumps() == FILE_HEADER
    assert len(PinBook.loads(text.replace("\n", "\r\n"))) == 3  # edited on Windows: still read


KEY = base64.b64encode(BOB.public).decode()


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (f"{SERVER} bob {KEY}", "expected 4 fields"),
        (f"{SERVER} bob {KEY} 1 extra", "expected 4 fields"),
        (f"{SERVER}  bob {KEY} 1", "expected 4 fields"),  # two spaces
        (f"{SERVER}\tbob {KEY} 1", "expected 4 fields"),
        (f"{SERVER} bob {KEY} 1 ", "expected 4 fields"),  # a trailing space
        (f"{SERVER} bad/id {KEY} 1", "invalid client ID"),
        (f"{SERVER} bob {KEY[:-4]} 1", "not 32 bytes"),
        (f"{SERVER} bob {KEY.rstrip('=')} 1", "not base64"),
        (f"{SERVER} bob {KEY[:-2]}!= 1", "not base64"),
        (f"{SERVER} bob {KEY} -1", "without sign"),
        (f"{SERVER} bob {KEY} 01", "leading zeros"),
        (f"{SERVER} bob {KEY} 1e9", "not a decimal"),
        (f"{SERVER} bob {KEY} {2**63}", "outside"),
        (f"{SERVER} bob {KEY} 99999999999999999999", "not a decimal"),
        (f"sérveur:1 bob {KEY} 1", "invalid server name"),
    ],
)
def test_bad_lines_are_refused_with_their_number_and_reason(line: str, reason: str) -> None:
    text = f"# comment\n\n{SERVER} alice {base64.b64encode(ALICE.public).decode()} 5\n{line}\n"
    with pytest.raises(PinFileError) as info:
        PinBook.loads(text)
    assert str(info.value).startswith("line 4: ") and reason in str(info.value)
    assert [bad.number for bad in info.value.bad] == [4]


def test_a_second_line_for_the_same_peer_and_every_bad_line_are_reported() -> None:
    good = f"{SERVER} bob {KEY} 1"
    with pytest.raises(PinFileError, match=r"^line 2: a second line for bob on 127\.0\.0\.1:10080$"):
        PinBook.loads(f"{good}\n{good}\n")
    with pytest.raises(PinFileError, match=r"^line 1: .* \(and 2 more bad lines\)$") as info:
        PinBook.loads("junk\njunk\njunk\n")
    assert [bad.number for bad in info.value.bad] == [1, 2, 3]


def test_a_merged_save_keeps_what_another_process_pinned() -> None:
    on_disk = PinBook([Pin(SERVER, "bob", BOB.public, T1)])
    mine = PinBook.loads(on_disk.dumps())
    mine.pin(SERVER, "carol", ALICE.public, T1)
    # meanwhile another natchat pinned dave and a newer statement of bob
    on_disk.pin(SERVER, "dave", MALLORY.public, T2)
    on_disk.pin(SERVER, "bob", BOB.public, T2)
    merged = mine.merged_into(on_disk)
    assert {(p.peer_id, p.issued) for p in merged} == {("bob", T2), ("carol", T1), ("dave", T2)}
    mine.absorb(merged)
    mine.mark_saved()
    assert mine.check(SERVER, "bob", BOB.public, T1).verdict is Verdict.REPLAYED  # learnt from the other


# --- a session's view: PeerIdentities -----------------------------------------------------------------


def details(
    who: Identity, session_key: bytes, issued: int, peer_id: str = "bob"
) -> tuple[str, bytes, bytes, bytes, int]:
    return peer_id, session_key, who.public, who.sign(peer_id, session_key, issued), issued


def test_first_contact_pins_and_a_later_run_is_as_pinned() -> None:
    book = PinBook()
    ids = PeerIdentities(SERVER, book)
    seen, warn = ids.observe(*details(BOB, RUN1, T1))
    assert seen.status is Status.NEW and seen.usable and not warn
    assert book.get(SERVER, "bob") == Pin(SERVER, "bob", BOB.public, T1)
    assert ids.observe(*details(BOB, RUN1, T1))[0].status is Status.NEW  # still this run's first contact
    # bob's next run: a new session key, signed later; a new session of alice sees it as pinned
    later = PeerIdentities(SERVER, book)
    seen, _ = later.observe(*details(BOB, RUN2, T2))
    assert seen.status is Status.PINNED and seen.usable and later.blocked("bob") is None
    assert book.get(SERVER, "bob") == Pin(SERVER, "bob", BOB.public, T2)


def test_a_server_that_lists_another_key_under_a_pinned_id_is_noticed_and_blocked() -> None:
    book = PinBook([Pin(SERVER, "bob", BOB.public, T1)])
    ids = PeerIdentities(SERVER, book)
    # the server signs its own session key with its own identity and lists it as bob
    seen, warn = ids.observe(*details(MALLORY, EVIL, T2))
    assert seen.status is Status.CHANGED and not seen.usable and warn
    assert ids.blocked("bob") == seen
    assert book.get(SERVER, "bob") == Pin(SERVER, "bob", BOB.public, T1)  # the pin stands
    assert ids.observe(*details(MALLORY, EVIL, T2)) == (seen, False)  # warned once, not per lookup
    event = ev.refused_event(seen, SERVER)
    assert isinstance(event, ev.IdentityChanged)
    assert event.pinned == fingerprint(BOB.public) and event.seen == fingerprint(MALLORY.public)
    assert event.line() == (
        "warning: bob's identity on 127.0.0.1:10080 changed: pinned 49755 03683 62911 79425 70300 98242, "
        f"now {fingerprint(MALLORY.public)}; nothing is sent to or shown from bob. If its owner confirms the "
        "new fingerprint (@whois bob), type @trust bob"
    )
    assert event.as_dict()["code"] == "identity_changed" and event.as_dict()["event"] == "warning"
    blocked = ev.SendBlocked("bob", seen.status)
    assert blocked.line().startswith("error: bob's identity changed; nothing sent.")
    assert blocked.as_dict() == {
        "event": "error",
        "code": "identity_changed",
        "peer": "bob",
        "message": blocked.message,
    }


def test_taking_the_key_without_the_identity_fails_the_signature() -> None:
    """The server keeps bob's identity key and signature but lists its own session key: refused as a bad
    seal is, and good details seen before stay in use."""
    ids = PeerIdentities(SERVER, PinBook())
    good, _ = ids.observe(*details(BOB, RUN1, T1))
    forged = ("bob", EVIL, BOB.public, BOB.sign("bob", RUN1, T1), T1)
    seen, warn = ids.observe(*forged)
    assert seen.status is Status.BAD_SIGNATURE and not seen.usable and warn
    assert ids.seen("bob") == good and ids.blocked("bob") is None
    assert isinstance(ev.refused_event(seen, SERVER), ev.BadSignature)
    # a peer whose first details are forged is blocked
    fresh = PeerIdentities(SERVER, PinBook())
    assert fresh.observe(*forged)[0].status is Status.BAD_SIGNATURE
    assert fresh.blocked("bob") is not None
    assert ev.trust(fresh, "bob")[1] is None  # no trust mends a bad signature


def test_a_replayed_registration_of_an_old_signed_key_is_refused() -> None:
    book = PinBook()
    first = PeerIdentities(SERVER, book)
    first.observe(*details(BOB, RUN1, T1))
    second = PeerIdentities(SERVER, book)  # alice's next session, bob's next run
    second.observe(*details(BOB, RUN2, T2))
    seen, warn = second.observe(*details(BOB, RUN1, T1))  # someone replays bob's first registration
    assert seen.status is Status.REPLAYED and not seen.usable and warn
    assert isinstance(ev.refused_event(seen, SERVER), ev.KeyReplayed)
    assert book.get(SERVER, "bob") == Pin(SERVER, "bob", BOB.public, T2)


def test_trust_moves_on_to_the_new_identity() -> None:
    book = PinBook([Pin(SERVER, "bob", BOB.public, T1)])
    ids = PeerIdentities(SERVER, book)
    event, usable = ev.trust(ids, "bob")
    assert isinstance(event, ev.NothingToTrust) and usable is None  # nothing seen yet
    assert event.line() == "error: nothing to trust for bob: no signed details from it yet"
    ids.observe(*details(MALLORY, EVIL, T2))
    event, usable = ev.trust(ids, "bob")
    assert isinstance(event, ev.Trusted) and usable is not None and usable.session_key == EVIL
    assert event.line() == (
        f"bob on 127.0.0.1:10080 is now pinned as {fingerprint(MALLORY.public)}; messages to and from it flow again"
    )
    assert ids.blocked("bob") is None and book.get(SERVER, "bob") == Pin(SERVER, "bob", MALLORY.public, T2)
    assert ids.observe(*details(MALLORY, EVIL, T2))[0].status is Status.PINNED
    assert ids.observe(*details(BOB, RUN2, T2))[0].status is Status.CHANGED  # and the old one is now foreign
    event, _ = ev.trust(PeerIdentities(SERVER, book), "bob")
    assert isinstance(event, ev.NothingToTrust)


def test_ephemeral_pins_nothing_but_still_checks_signatures() -> None:
    ids = PeerIdentities(SERVER, None)
    seen, warn = ids.observe(*details(BOB, RUN1, T1))
    assert seen.status is Status.UNPINNED and seen.usable and not warn
    assert ids.observe(*details(MALLORY, EVIL, T2))[0].status is Status.UNPINNED  # nothing to compare with
    assert ids.observe("bob", EVIL, BOB.public, bytes(64), T2)[0].status is Status.BAD_SIGNATURE
    assert ev.trust(ids, "bob")[1] is None and ids.listed("bob", BOB.public, T1) is None


def test_whois_pinned_new_changed_unknown() -> None:
    book = PinBook([Pin(SERVER, "bob", BOB.public, T1)])
    ids = PeerIdentities(SERVER, book)
    assert ev.whois(ids, "bob", "alice", ALICE.public).lines() == [
        "bob: identity not known yet (no signed details from 127.0.0.1:10080)"
    ]
    ids.observe(*details(BOB, RUN2, T2))
    safety = safety_number("alice", ALICE.public, "bob", BOB.public)
    pinned = ev.whois(ids, "bob", "alice", ALICE.public)
    assert pinned.lines() == [
        "bob: identity 49755 03683 62911 79425 70300 98242 (pinned for 127.0.0.1:10080)",
        f"safety number with bob: {safety}",
    ]
    assert pinned.as_dict() == {
        "event": "whois",
        "peer": "bob",
        "server": SERVER,
        "status": "pinned",
        "fingerprint": fingerprint(BOB.public),
        "safety_number": safety,
        "pinned": None,
    }
    ids.observe(*details(ALICE, RUN1, T1, peer_id="carol"))
    assert (
        ev.whois(ids, "carol", "alice", ALICE.public)
        .lines()[0]
        .endswith("(new: first contact on 127.0.0.1:10080, pinned now)")
    )
    ids.observe(*details(MALLORY, EVIL, T2 + 1))
    changed = ev.whois(ids, "bob", "alice", ALICE.public)
    assert changed.lines()[:2] == [
        f"bob: identity {fingerprint(MALLORY.public)} (CHANGED on 127.0.0.1:10080, blocked until @trust bob)",
        f"bob: pinned identity was {fingerprint(BOB.public)}",
    ]
    # bob's own @whois alice shows the same safety number
    bobs = PeerIdentities(SERVER, PinBook())
    bobs.observe(*details(ALICE, RUN1, T1, peer_id="alice"))
    assert ev.whois(bobs, "alice", "bob", BOB.public).safety == safety


def test_show_list_marks_only_changed_identities() -> None:
    ids = PeerIdentities(SERVER, PinBook([Pin(SERVER, "bob", BOB.public, T1)]))
    line = "bob 10.0.0.1:53002"
    assert ev.show_list_line(line, ids.listed("bob", BOB.public, T2)) == line  # the assignment's line, exact
    assert ev.show_list_line("carol 10.0.0.2:1", ids.listed("carol", ALICE.public, T1)) == "carol 10.0.0.2:1"
    assert ev.show_list_line(line, ids.listed("bob", MALLORY.public, T2)) == line + " [identity changed]"
    # from what the session saw (the list pages need not carry identities)
    assert ev.show_list_line(line, None) == line
    ids.observe(*details(BOB, RUN2, T2))
    assert ev.show_list_line(line, ids.seen("bob").status) == line
    ids.observe(*details(MALLORY, EVIL, T2))
    assert ev.show_list_line(line, ids.seen("bob").status) == line + " [identity changed]"


def test_own_identity_event() -> None:
    own = ev.OwnIdentity.of(ALICE.public, "/home/a/.config/natchat/identity", created=True)
    assert own.lines() == [
        "fingerprint 34190 20925 44024 07048 47956 34811",
        "identity key /home/a/.config/natchat/identity (created now)",
    ]
    assert own.as_dict()["key"] == base64.b64encode(ALICE.public).decode()
    assert (
        ev.OwnIdentity.of(ALICE.public, None, created=False).lines()[1] == "identity key in memory only (--ephemeral)"
    )
