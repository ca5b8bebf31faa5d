"""The prober's settings: :class:`ProbeConfig` (what ``natchat probe-mapping``'s options build).

Owns: the values a run is made with, their validation (a bad combination is a :class:`ValueError` whose
text the command line prints as is), and the grid of idle times they imply.

May not touch: any run's state; a config is frozen.
"""

from __future__ import annotations

from dataclasses import dataclass

from .report import Kind


@dataclass(frozen=True, slots=True)
class ProbeConfig:
    kinds: tuple[Kind, ...] = (Kind.OUTBOUND, Kind.REPLY, Kind.STREAM)
    max_idle: float = 300.0
    """Longest idle time tested; a mapping that survives it is reported as "longer than" it."""
    resolution: float = 1.0
    """Spacing of the tested idle times: the bracket is this wide."""
    answer_within: float = 4.0
    """Give up if the server does not answer the control socket's hello within this many seconds."""
    retry: float = 0.5
    """Retransmit an unanswered request after this long (or three round trips, if longer)."""
    tries: int = 6
    """Transmissions of one request before it is given up as lost."""
    grace: float = 0.5
    """How much later than expected the server's delayed datagram may arrive (or three round trips)."""
    stream_gap: float = 3.0
    """For the ``stream`` kind: seconds between the two exchanges (Linux needs more than 2)."""
    pace: int = 10
    """Tests started per pacing tick (every 10 ms): 1000 new mappings per second at most."""
    ping_every: float = 0.5
    """Heartbeat on the control socket while measuring (see :class:`~.wire.Ping`)."""
    confirm: int = 1
    """An expiry counts once this many next longer idle times (that got an answer) expired too: one lost
    datagram must not pass for the NAT forgetting the mapping. Costs that many resolution steps."""
    filter_tries: int = 3
    """Filtering is called port-dependent only after this many rounds in which the alt port's datagram
    did not arrive although the main port's did."""

    def __post_init__(self) -> None:
        if not self.kinds:
            raise ValueError("no kind of mapping to measure")
        if not 0 < self.resolution <= self.max_idle:
            raise ValueError("the resolution must be positive and no more than the longest idle time")
        if self.confirm < 0 or self.tries < 1 or self.filter_tries < 1 or self.pace < 1:
            raise ValueError("confirm must be >= 0, tries, filter_tries and pace >= 1")
        if self.max_idle / self.resolution > 20_000:
            raise ValueError(f"{self.max_idle:g} s at {self.resolution:g} s resolution is too many tests")

    def grid(self) -> list[float]:
        """The idle times tested for each kind: every ``resolution`` up to ``max_idle`` (included)."""
        times: list[float] = []
        k = 1
        while (d := round(k * self.resolution, 6)) < self.max_idle - 1e-6:
            times.append(d)
            k += 1
        times.append(round(self.max_idle, 6))
        return times
