"""The strict JSON codec both natchat wire formats use: one UTF-8 JSON object per UDP datagram.

Owns: the checks every incoming datagram passes, in order (size, UTF-8, the ``v``/``t`` header and its
version, the strict typed decode, then a caller's own check), the size check of every outgoing one, and
:class:`WireError`. The chat protocol (``wire.py``) and the mapping probes (``probe/wire.py``) each build
one :class:`StrictCodec` from their message union, version and size limit.

May not touch: the messages themselves (their fields and tags belong to the format that defines them),
and any I/O: it is fed bytes and returns structs or raises.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import msgspec
from msgspec import Struct

M = TypeVar("M")


class WireError(ValueError):
    """A datagram that is not a valid natchat message (the reason is the text)."""


class _Header(Struct):
    """Read first, so that a missing or foreign version is reported as such."""

    v: int
    t: str


_encoder = msgspec.json.Encoder()
_header_decoder = msgspec.json.Decoder(_Header)


def to_json(obj: object) -> bytes:
    """``obj`` in JSON, unchecked (for sizes and for the associated data of sealed messages)."""
    return _encoder.encode(obj)


class StrictCodec(Generic[M]):
    """Encodes and decodes the messages of one union (tagged in ``t``, versioned in ``v``).

    ``messages``: the union of the message structs; ``version``: the only ``v`` accepted; ``max_size``: no
    datagram larger than this is encoded or read; ``check``: called on every decoded message, raises
    :class:`WireError` for what the types cannot say (an address that is not an IP address, say).
    """

    def __init__(self, messages: Any, *, version: int, max_size: int, check: Callable[[M], None] | None = None) -> None:
        self.version = version
        self.max_size = max_size
        self._check = check
        self._decoder: msgspec.json.Decoder[M] = msgspec.json.Decoder(messages)

    def encode(self, msg: Struct) -> bytes:
        """Serialize ``msg``; raises :class:`WireError` if it would exceed ``max_size``."""
        data = _encoder.encode(msg)
        if len(data) > self.max_size:
            raise WireError(f"{type(msg).__name__} is {len(data)} bytes, over {self.max_size}")
        return data

    def decode_untrusted(self, data: bytes) -> M:
        """Parse one datagram strictly; raises :class:`WireError` with the reason on any defect."""
        if len(data) > self.max_size:
            raise WireError(f"datagram of {len(data)} bytes is over {self.max_size}")
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            raise WireError("not UTF-8") from None
        try:
            header = _header_decoder.decode(data)
            if header.v != self.version:
                raise WireError(f"unsupported protocol version {header.v}")
            msg = self._decoder.decode(data)
        except msgspec.DecodeError as exc:  # ValidationError is a subclass
            raise WireError(str(exc)) from None
        if self._check is not None:
            self._check(msg)
        return msg

    def peek_type_untrusted(self, data: bytes) -> str | None:
        """The ``t`` of a datagram no larger than ``max_size`` whose header parses (any version), else
        None. Reads the header properly (no byte-prefix guessing on untrusted input); never raises."""
        if len(data) > self.max_size:
            return None
        try:
            return _header_decoder.decode(data).t
        except (msgspec.DecodeError, UnicodeDecodeError):
            return None
