"""The vetting unit alone: which peers' details the session may use, whom it blocks, and what
``@whois``, ``@trust`` and ``@show_list`` show (no session, no network)."""

from __future__ import annotations

from natchat.proto import seal, wire
from natchat.proto.events import ClientEvent, ListShown, Notice
from natchat.proto.identity import Identity, PeerIdentities, PinBook, Status
from natchat.proto.identity_events import BadSignature, IdentityChanged, NothingToTrust, Trusted, WhoisReport
from natchat.proto.vetting import Vetting
from natchat.proto.wire import Addr, PeerInfo

SERVER = "10.0.0.3:10080"
ISSUED = 1_764_000_000_000_000_000


def signed(peer: str, identity: Identity, issued: int = ISSUED) -> PeerInfo:
    key = seal.KeyPair().public
    addr = Addr("10.0.0.1", 10081)
    return PeerInfo(peer, addr, addr, key, wire.signed(identity.public, identity.sign(peer, key, issued), issued))


def vetting(pins: PinBook | None = None) -> tuple[Vetting, list[ClientEvent]]:
    events: list[ClientEvent] = []
    ids = PeerIdentities(SERVER, pins if pins is not None else PinBook())
    return Vetting("a", ids, Identity().public, events.append), events


def test_without_an_identity_everything_passes_and_nothing_is_pinned() -> None:
    events: list[ClientEvent] = []
    vet = Vetting("a", None, None, events.append)
    infos = [signed("b", Identity())]
    assert vet.judged(infos) == (infos, [])
    assert not vet.checks and vet.blocked("b") is None
    assert vet.whois("b", listed=True) == "shown" and vet.trust("b") is False
    assert [e.code for e in events if isinstance(e, Notice)] == ["no_identity", "no_identity"]
    assert vet.marked(ListShown(tuple(infos))) == ListShown(tuple(infos))


def test_first_contact_is_usable_and_pinned() -> None:
    pins = PinBook()
    vet, events = vetting(pins)
    ib = Identity()
    info = signed("b", ib)
    assert vet.judged([info]) == ([info], [])
    pin = pins.get(SERVER, "b")
    assert pin is not None and pin.identity_key == ib.public
    assert events == []


def test_another_identity_under_a_pinned_id_is_blocked_and_said_once() -> None:
    vet, events = vetting()
    vet.judged([signed("b", Identity())])
    impostor = signed("b", Identity())
    usable, blocked = vet.judged([impostor])
    assert usable == [] and [s.status for s in blocked] == [Status.CHANGED]
    assert vet.blocked("b") is not None
    vet.judged([impostor])  # the same details again: blocked still, not said again
    assert [type(e) for e in events] == [IdentityChanged]
    shown = vet.marked(ListShown((impostor, signed("c", Identity()))))
    assert isinstance(shown, ListShown) and shown.changed == frozenset({"b"})


def test_a_bad_signature_does_not_replace_details_that_verified() -> None:
    vet, events = vetting()
    good = signed("b", Identity())
    vet.judged([good])
    forged = PeerInfo("b", good.pub, good.priv, seal.KeyPair().public, good.signed)
    assert vet.judged([forged]) == ([], [])  # refused, but b stays usable with what verified
    assert vet.blocked("b") is None
    assert [type(e) for e in events] == [BadSignature]


def test_an_issued_time_past_2_63_is_a_bad_signature_not_a_crash() -> None:
    vet, events = vetting()
    identity, key = Identity(), seal.KeyPair().public
    addr = Addr("10.0.0.1", 10081)
    late = 2**64 - 1  # the field's 8 bytes hold it; no natchat signs it, and no pin may hold it
    info = PeerInfo("b", addr, addr, key, wire.signed(identity.public, bytes(64), late))
    assert info.issued == late
    usable, blocked = vet.judged([info])
    assert usable == [] and [s.status for s in blocked] == [Status.BAD_SIGNATURE]  # (nothing pinned)
    assert [type(e) for e in events] == [BadSignature]


def test_whois_waits_for_the_lookup_of_an_unseen_peer() -> None:
    vet, events = vetting()
    assert vet.whois("nobody", listed=False) == "unknown_peer"
    assert vet.whois("b", listed=True) == "look_up"
    assert events == []
    vet.judged([signed("b", Identity())])
    (report,) = events
    assert isinstance(report, WhoisReport) and report.status is Status.NEW and report.safety is not None
    vet.judged([signed("c", Identity())])  # answered once only
    assert len(events) == 1
    assert vet.whois("b", listed=True) == "shown" and len(events) == 2


def test_a_peer_that_left_is_no_longer_asked_about() -> None:
    vet, events = vetting()
    vet.whois("b", listed=True)
    vet.forget("b")
    vet.judged([signed("b", Identity())])
    assert events == []


def test_trust_pins_the_new_identity_and_unblocks() -> None:
    pins = PinBook()
    vet, events = vetting(pins)
    vet.judged([signed("b", Identity())])
    assert vet.trust("b") is False  # nothing blocks b
    new = Identity()
    vet.judged([signed("b", new)])
    assert vet.trust("b") is True
    assert vet.blocked("b") is None
    pin = pins.get(SERVER, "b")
    assert pin is not None and pin.identity_key == new.public
    assert [type(e) for e in events] == [NothingToTrust, IdentityChanged, Trusted]
