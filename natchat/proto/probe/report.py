"""What a probe run found, for people and for machines: :class:`Report` and its parts.

Owns: the kinds of mapping and what each means (:class:`Kind`), a kind's lifetime bracket
(:class:`Lifetime`), the whole answer (:class:`Report`) with its prose (:meth:`Report.lines`) and JSON
(:meth:`Report.to_json`), the progress snapshot (:class:`Progress`), and the sentences that say why a
run failed. Every sentence ``natchat probe-mapping`` prints is here.

May not touch: the measurement. It formats values the prober hands it and decides nothing (the
classification and the bracketing are ``analysis.py``'s).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Final

from ..wire import Addr
from .analysis import Finding, Outcome, finding


class Kind(enum.StrEnum):
    """What a measured mapping has carried before it is left idle."""

    OUTBOUND = "outbound"
    REPLY = "reply"
    STREAM = "stream"

    @property
    def meaning(self) -> str:
        return _MEANING[self]


_MEANING: Final = {
    Kind.OUTBOUND: "after one outbound datagram",
    Kind.REPLY: "after one request and its answer",
    Kind.STREAM: "after an exchange lasting over 2 s",
}


@dataclass(frozen=True, slots=True)
class Lifetime:
    """What was found for one kind of mapping: it survived ``survived`` s idle and not ``expired`` s."""

    kind: Kind
    survived: float | None
    """Longest idle time that survived (with every shorter one); None: not even the shortest did."""
    expired: float | None
    """Shortest idle time that expired; None: none did (the lifetime is longer than the longest test)."""
    results: tuple[tuple[float, Outcome], ...]
    """Every idle time whose outcome was known when the answer was, in order."""
    answered_after: float
    """Seconds from the start of the run until this answer."""

    @property
    def known(self) -> bool:
        return self.survived is not None or self.expired is not None

    @property
    def keepalive(self) -> float | None:
        """The longest interval between datagrams that keeps such a mapping (None: none found)."""
        return self.survived

    def describe(self, max_idle: float, resolution: float) -> str:
        if not self.known:
            return "unknown: no test got an answer from the server"
        if self.expired is None:
            return f"longer than {_s(max_idle)} (every idle time up to {_s(max_idle)} survived)"
        if self.survived is None:
            return f"shorter than {_s(self.expired)} (the server's datagram did not get in after {_s(self.expired)})"
        low, high = _s(self.survived), _s(self.expired)
        return f"between {low} and {high} (survived {low} idle, not {high})"


def _s(seconds: float) -> str:
    return f"{seconds:g} s"


@dataclass(frozen=True, slots=True)
class Report:
    """Everything ``natchat probe-mapping`` found; :meth:`lines` for people, :meth:`to_json` for machines."""

    server: Addr
    alt_port: int
    rtt: float
    local: Addr | None
    public: Addr
    mapping: tuple[str, ...]
    """The RFC 4787 mapping behaviours consistent with what was seen (one: conclusive; all: unknown)."""
    mapping_seen: tuple[Addr | None, Addr | None]
    """The public address the main port and the alt port saw for the same socket."""
    filtering: tuple[str, ...]
    """The RFC 4787 filtering behaviours consistent with what was seen."""
    lifetimes: tuple[Lifetime, ...]
    max_idle: float
    resolution: float
    tests_per_kind: int
    elapsed: float

    @property
    def nat(self) -> bool | None:
        """Whether the server saw another address than the control socket's own (None: unknown)."""
        return None if self.local is None else self.local != self.public

    @property
    def keepalive(self) -> float | None:
        """The longest keepalive interval that keeps every measured kind of mapping."""
        known = [lt.survived for lt in self.lifetimes if lt.survived is not None]
        return min(known) if known else None

    @property
    def drops_everything(self) -> bool:
        """No kind survived even the shortest idle time although the server answered."""
        return all(lt.known and lt.survived is None for lt in self.lifetimes)

    def to_json(self) -> dict[str, Any]:
        return {
            "server": str(self.server),
            "alt_port": self.alt_port,
            "rtt_ms": round(self.rtt * 1000, 3),
            "local": str(self.local) if self.local else None,
            "public": str(self.public),
            "nat": self.nat,
            "mapping": list(self.mapping),
            "mapping_seen": {"main": _opt(self.mapping_seen[0]), "alt": _opt(self.mapping_seen[1])},
            "filtering": list(self.filtering),
            "lifetimes": [
                {
                    "kind": str(lt.kind),
                    "meaning": lt.kind.meaning,
                    "survived": lt.survived,
                    "expired": lt.expired,
                    "longer_than_max": lt.known and lt.expired is None,
                    "keepalive": lt.keepalive,
                    "answered_after": round(lt.answered_after, 3),
                    "results": [[idle, outcome] for idle, outcome in lt.results],
                }
                for lt in self.lifetimes
            ],
            "keepalive": self.keepalive,
            "drops_everything": self.drops_everything,
            "tested": {
                "from": self.resolution,
                "to": self.max_idle,
                "step": self.resolution,
                "per_kind": self.tests_per_kind,
            },
            "elapsed": round(self.elapsed, 3),
        }

    def lines(self) -> list[str]:
        out = [f"server {self.server} (second port {self.alt_port}), round trip {self.rtt * 1000:.1f} ms"]
        if self.nat is False:
            out.append(f"public address {self.public}: the same as the local one, no NAT on the way")
        elif self.nat:
            out.append(f"public address {self.public} (local {self.local}): behind a NAT")
        else:
            out.append(f"public address {self.public}")
        out.append(f"mapping:   {_describe_mapping(self.mapping, self.mapping_seen, self.alt_port)}")
        out.append(f"filtering: {_describe_filtering(self.filtering, self.alt_port)}")
        out.append("mapping lifetime (how long the NAT keeps a UDP mapping that carries no traffic):")
        width = max(len(lt.kind.meaning) for lt in self.lifetimes) + 1
        for lt in self.lifetimes:
            out.append(f"  {(lt.kind.meaning + ':').ljust(width)} {lt.describe(self.max_idle, self.resolution)}")
        if self.drops_everything:
            out.append(
                f"the NAT dropped every datagram from the server after {_s(self.resolution)} of idleness"
                " (or drops everything inbound): no keepalive interval can be recommended"
            )
        elif (keepalive := self.keepalive) is not None:
            if all(lt.expired is None for lt in self.lifetimes if lt.known):
                out.append(f"keepalive: every {_s(keepalive)} is enough (nothing expired; longer was not tested)")
            else:
                out.append(
                    f"keepalive: send at least every {_s(keepalive)} to keep a mapping"
                    f" (every {_s(keepalive / 2)} to survive one lost datagram)"
                )
        out.append(
            f"tested: idle times {_s(self.resolution)} to {_s(self.max_idle)} every {_s(self.resolution)},"
            f" {self.tests_per_kind} fresh mappings per kind, all at once; took {self.elapsed:.1f} s"
        )
        return out


def _opt(addr: Addr | None) -> str | None:
    return None if addr is None else str(addr)


def _describe_mapping(behaviours: tuple[str, ...], seen: tuple[Addr | None, Addr | None], alt: int) -> str:
    main, other = seen
    found = finding(behaviours)
    if found is Finding.PORT_DEPENDENT:
        return (
            f'address-and-port-dependent ("symmetric"): a new public port per destination'
            f" ({main} toward the main port, {other} toward port {alt})"
        )
    if found is Finding.NOT_PORT_DEPENDENT:
        return (
            f"endpoint-independent, or address-dependent: the same public address {main} toward both ports"
            " (telling these two apart needs a second server address)"
        )
    return f"unknown: the server's port {alt} did not answer (a firewall in front of the server?)"


def _describe_filtering(behaviours: tuple[str, ...], alt: int) -> str:
    found = finding(behaviours)
    if found is Finding.PORT_DEPENDENT:
        return (
            f"address-and-port-dependent: a datagram from the server's port {alt}, to which nothing had been"
            " sent, did not get in"
        )
    if found is Finding.NOT_PORT_DEPENDENT:
        return (
            f"endpoint-independent, or address-dependent: a datagram from the server's port {alt}, to which"
            " nothing had been sent, got in (telling these two apart needs a second server address)"
        )
    return "unknown: the server did not answer the filtering test"


@dataclass(frozen=True, slots=True)
class Progress:
    """For a progress bar: time so far, the latest the run can take, and what each kind knows yet."""

    elapsed: float
    horizon: float
    kinds: tuple[tuple[Kind, float | None, bool], ...]
    """(kind, longest idle time survived so far, answered)."""


# --- why a run failed ---------------------------------------------------------------------------------


def no_answer(server: Addr, within: float) -> str:
    return (
        f"no answer from {server} within {_s(within)}: the server is down, does"
        " not answer probes (natchat serve --no-probe, or not natchat), or UDP is blocked on the way"
    )


def refused(text: str) -> str:
    return f"the server refused the probe: {text}"


def too_large(max_tests: int, max_delay: float, needed: int, max_idle: float) -> str:
    return (
        f"the server allows {max_tests} tests of at most {_s(max_delay)}; this run needs {needed}"
        f" of up to {_s(max_idle)} (use a larger --resolution or a smaller --max)"
    )


def stopped_answering(within: float) -> str:
    return (
        f"the server stopped answering for {_s(within)} during the measurement, so"
        " missing probes cannot be told from expired mappings; try again"
    )


def only_control_answered(measurement_sockets: int) -> str:
    return (
        f"the server answered the control socket but no datagram from the {measurement_sockets}"
        " measurement sockets: a firewall or the NAT lets only one flow through?"
    )
