"""Mapping probes without I/O: how long a NAT keeps an idle UDP mapping, and what kind of NAT it is.

Two objects, fed datagrams and ``now`` like the rest of ``natchat.proto``:

* :class:`ProbeResponder` (``responder.py``) is the server side (``natchat serve`` runs one in its
  nursery). It sends a datagram to a mapping a requested time after the mapping last carried traffic,
  from the address and port the mapping was created toward, and answers the classification questions
  from the server's main port and from its second ("alt") port.
* :class:`MappingProber` (``prober.py``) is the client (``natchat probe-mapping``). It decides which
  idle times to test, opens one fresh socket -- hence one fresh NAT mapping -- per tested idle time,
  starts them all at once, and hands what arrives (or does not arrive by a deadline) to the pure
  functions of ``analysis.py``, which bracket each kind's lifetime and classify the NAT (RFC 4787).
  :class:`Report` (``report.py``) is the result, in prose and in JSON.

Their messages are ``wire.py``'s; the settings are ``config.py``'s. This package re-exports the public
names, so ``from natchat.proto.probe import X`` is the way in.

Why it is built this way (``docs/PROBE.md`` has the long version):

* **A measured mapping stays idle.** Control traffic (hello, acknowledgements, heartbeat) uses a
  separate control socket. A test's socket sends its request, and from then on nothing but the server's
  one delayed datagram touches that mapping: any packet would refresh the NAT's timer.
* **Same address and port.** The delayed datagram comes from the port the mapping was created toward
  (the server's main port). From any other port it would measure the NAT's filtering, not the
  mapping's lifetime.
* **One fresh mapping per idle time.** A datagram that gets through refreshes the mapping, so a
  mapping answers exactly one question: "still there after d seconds idle?".
* **All idle times at once.** Tests for d = r, 2r, ... max start together, so the first expired test
  ends the measurement at about lifetime + resolution, not after the sum of all waits.
* **Kinds.** Linux conntrack keeps an entry that has only seen outbound traffic for
  ``nf_conntrack_udp_timeout`` (30 s); after a reply it still uses that value (the reply refreshes the
  entry *before* it is marked as replied) until a packet arrives when the entry has seen a reply and
  is older than 2 s: from then on ``nf_conntrack_udp_timeout_stream`` (120 s) applies. So the prober
  measures three kinds: ``outbound`` (one datagram out, no answer), ``reply`` (one request and its
  answer), ``stream`` (request/answer, and again 3 s later). Other NATs may treat the first two
  differently; Linux does not.
* **Classification with one server address.** Mapping: the same socket asks the main and the alt port
  which public address they see (same port: endpoint-independent, or address-dependent, which needs a
  second server *address* to tell apart; different: address-and-port-dependent). Filtering: a socket
  that has sent only to the main port is sent a datagram from the alt port (arrives: endpoint-
  independent or address-dependent; does not: address-and-port-dependent).
* **A missing datagram means "expired" only when it cannot mean anything else.** The server sends each
  delayed datagram three times; an expiry counts once the next longer idle time has expired too (an
  isolated one below a survivor was loss); and only once the server has answered a heartbeat sent
  after it (a server that died would otherwise pass for a NAT that forgets everything).
* **No amplification.** The server never sends more bytes to an address it has not verified than the
  request from that address carried (clients pad their requests); see :data:`REQUEST_SIZE`.
"""

from .analysis import FILTERING_BEHAVIOURS, MAPPING_BEHAVIOURS, Outcome
from .config import ProbeConfig
from .lifetimes import PACE_INTERVAL, TestState
from .prober import MappingProber, ProbeFailed
from .report import Kind, Lifetime, Progress, Report
from .responder import SESSION_IDLE, ProbeResponder
from .wire import (
    DUE_COPIES,
    PREFIX,
    PROBE_VERSION,
    REQUEST_SIZE,
    AnyProbeMessage,
    Bye,
    Cancel,
    Due,
    Echo,
    FilterQuery,
    FromAlt,
    Held,
    Hello,
    Hold,
    Mapped,
    MapQuery,
    Ping,
    Pong,
    ProbeMessage,
    Refusal,
    Via,
    Welcome,
    decode,
    encode,
    encode_padded,
    is_probe_message,
)

__all__ = [
    "DUE_COPIES",
    "FILTERING_BEHAVIOURS",
    "MAPPING_BEHAVIOURS",
    "PACE_INTERVAL",
    "PREFIX",
    "PROBE_VERSION",
    "REQUEST_SIZE",
    "SESSION_IDLE",
    "AnyProbeMessage",
    "Bye",
    "Cancel",
    "Due",
    "Echo",
    "FilterQuery",
    "FromAlt",
    "Held",
    "Hello",
    "Hold",
    "Kind",
    "Lifetime",
    "MapQuery",
    "Mapped",
    "MappingProber",
    "Outcome",
    "Ping",
    "Pong",
    "ProbeConfig",
    "ProbeFailed",
    "ProbeMessage",
    "ProbeResponder",
    "Progress",
    "Refusal",
    "Report",
    "TestState",
    "Via",
    "Welcome",
    "decode",
    "encode",
    "encode_padded",
    "is_probe_message",
]
