"""Who may register: address-validation cookies and the optional pre-shared secret, as pure functions.

**Cookies** (return routability, as QUIC's Retry and DTLS's HelloVerifyRequest do): a ``register``
without a valid cookie gets only a small ``challenge`` carrying one, never the peer list, so a forged
source address cannot turn the server against a victim. A cookie is a MAC of the source address and
the current time window under a key only the server knows: the server keeps no state per stranger, and
a cookie is good for one address for :data:`COOKIE_WINDOW` to twice that.

**Secret** (``--secret``): when the server has one, a registration must carry ``proof``, a MAC under
the secret of the cookie, the ID, the private address, the public key and the identity key. The
secret never travels; a proof is good only with its cookie (so only from that address, and only for a
minute or so) and only for that ID.
"""

from __future__ import annotations

import hashlib
import hmac
import math

from .wire import Addr

COOKIE_WINDOW = 30.0
"""Seconds per cookie time window; a cookie is accepted in its window and the next."""


def cookie(key: bytes, addr: Addr, now: float, *, previous: bool = False) -> str:
    """The cookie for ``addr`` in the time window of ``now`` (or the window before it)."""
    window = math.floor(now / COOKIE_WINDOW) - (1 if previous else 0)
    return _mac(key, f"cookie|{addr.host}|{addr.port}|{window}")


def cookie_ok(key: bytes, addr: Addr, now: float, presented: str | None) -> bool:
    if presented is None:
        return False
    return any(hmac.compare_digest(presented, cookie(key, addr, now, previous=p)) for p in (False, True))


def proof(secret: bytes, cookie_value: str, client_id: str, priv: Addr, key: bytes, ident: bytes | None = None) -> str:
    """What a client that knows ``secret`` sends with its registration (its public ``key`` and its
    identity key ``ident`` included, so that nobody on the way can swap the key that peers will seal for,
    or the identity they pin)."""
    signed = "" if ident is None else f"|{ident.hex()}"
    return _mac(secret, f"register|{cookie_value}|{client_id}|{priv.host}|{priv.port}|{key.hex()}{signed}")


def proof_ok(
    secret: bytes,
    cookie_value: str,
    client_id: str,
    priv: Addr,
    key: bytes,
    presented: str | None,
    ident: bytes | None = None,
) -> bool:
    if presented is None:
        return False
    return hmac.compare_digest(presented, proof(secret, cookie_value, client_id, priv, key, ident))


def _mac(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()[:32]
