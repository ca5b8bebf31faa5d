"""What the probes' outcomes mean: pure functions, no state.

Owns the two conclusions a probe run draws: the bracket of a mapping's lifetime from the outcomes of its
tests (:func:`bracket`, :func:`longest_survived`), and the RFC 4787 classification of mapping and
filtering from what the server's two ports saw (:func:`classify_mapping`, :func:`classify_filtering`,
:func:`finding`).

May not touch: anything. It reads no state of the prober (which hands it plain values) and says nothing
in prose (``report.py`` does).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from ..wire import Addr

Outcome = Literal["survived", "expired", "lost"]
"""A test's known outcome: the server's delayed datagram got in; it did not; the setup got no answer (or
a datagram was evidently lost: an expiry below a survivor)."""

Seen = Literal["survived", "expired", "lost", "pending"]
"""What one test has shown so far. ``expired`` only once it is final (the server was heard from after the
test's deadline); ``pending``: anything not known yet (or no longer needed)."""


@dataclass(frozen=True, slots=True)
class Bracket:
    """A mapping survived ``survived`` s idle (None: not even the shortest) and not ``expired`` s (None:
    every idle time survived); ``results``: every idle time known when this was, in order."""

    survived: float | None
    expired: float | None
    results: tuple[tuple[float, Outcome], ...]


def bracket(tests: Sequence[tuple[float, Seen]], confirm: int) -> Bracket | None:
    """The answer for one kind, or None while it cannot be given yet. ``tests``: (idle time, what it
    showed), shortest idle time first.

    The answer is the shortest idle time that expired, confirmed by the ``confirm`` next longer ones
    (those that got an answer) expiring too. An expired test followed by a survivor was a lost datagram,
    not the NAT: the mapping evidently lived longer; it is reported as ``lost``, like a test whose setup
    got no answer."""
    answered: list[int] = []
    complete = True
    for i, (_, seen) in enumerate(tests):
        if seen in ("survived", "expired"):
            answered.append(i)
        elif seen != "lost":
            complete = False
            break
    expired: float | None = None
    contradicted: set[int] = set()
    for j, i in enumerate(answered):
        if tests[i][1] != "expired":
            continue
        following = answered[j + 1 : j + 1 + confirm]
        if any(tests[k][1] == "survived" for k in following):
            contradicted.add(i)
            continue
        if len(following) < confirm and not complete:
            return None  # wait for the next longer idle times
        expired = tests[i][0]
        break
    else:
        if not complete:
            return None
    survived = max(
        (tests[i][0] for i in answered if tests[i][1] == "survived" and (expired is None or tests[i][0] < expired)),
        default=None,
    )
    results: list[tuple[float, Outcome]] = []
    for i, (idle, seen) in enumerate(tests):
        if seen != "pending" and (expired is None or idle <= expired):
            results.append((idle, "lost" if i in contradicted else seen))
    return Bracket(survived, expired, tuple(results))


def longest_survived(tests: Iterable[tuple[float, Seen]]) -> float | None:
    """The longest idle time that survived with every shorter one (lost ones aside), so far."""
    longest = None
    for idle, seen in tests:
        if seen == "survived":
            longest = idle
        elif seen != "lost":
            break
    return longest


MAPPING_BEHAVIOURS: Final = ("endpoint-independent", "address-dependent", "address-and-port-dependent")
FILTERING_BEHAVIOURS: Final = MAPPING_BEHAVIOURS
"""RFC 4787's three classes for each; a classification is the subset consistent with what was seen."""

PORT_DEPENDENT: Final = ("address-and-port-dependent",)
"""Conclusive: the NAT treats each server port apart."""
NOT_PORT_DEPENDENT: Final = ("endpoint-independent", "address-dependent")
"""Telling these two apart needs a second server *address*; the probes have one."""


class Finding(enum.Enum):
    """Which of the possible classifications a subset of behaviours is."""

    PORT_DEPENDENT = "port-dependent"
    NOT_PORT_DEPENDENT = "not port-dependent"
    UNKNOWN = "unknown"


def finding(behaviours: tuple[str, ...]) -> Finding:
    if behaviours == PORT_DEPENDENT:
        return Finding.PORT_DEPENDENT
    if behaviours == NOT_PORT_DEPENDENT:
        return Finding.NOT_PORT_DEPENDENT
    return Finding.UNKNOWN


def classify_mapping(main: Addr | None, alt: Addr | None) -> tuple[str, ...]:
    """The mapping behaviours consistent with the public addresses one socket showed the server's main
    port and its alt port (None: that port did not answer)."""
    if main is None or alt is None:
        return MAPPING_BEHAVIOURS
    return NOT_PORT_DEPENDENT if main == alt else PORT_DEPENDENT


def classify_filtering(got_in: bool | None) -> tuple[str, ...]:
    """The filtering behaviours consistent with whether a datagram from the alt port, to which the socket
    had sent nothing, got in (None: unknown, the main port did not answer that socket)."""
    if got_in is None:
        return FILTERING_BEHAVIOURS
    return NOT_PORT_DEPENDENT if got_in else PORT_DEPENDENT
