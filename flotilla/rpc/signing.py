"""HMAC-SHA256 signatures over envelopes.

Rules:

* The signature covers :func:`flotilla.rpc.serializer.canonical` of the
  envelope without its ``sig`` field, so key order and whitespace never
  matter and every field (method, args, context, msg_id, ttl...) is covered.
* ``sig`` is the lowercase hex digest.
* With no key configured nothing is signed and nothing is checked; with a
  key, :func:`verify` fails for a missing or a wrong signature. Comparison
  uses :func:`hmac.compare_digest` (constant time) so a forger learns
  nothing from how long a rejection takes.
"""

from __future__ import annotations

import hashlib
import hmac

from flotilla.rpc import serializer

SIG_FIELD = "sig"


def digest_of(key: str | bytes, canonical: bytes) -> str:
    """The signature of an unsigned body's canonical bytes."""
    if isinstance(key, str):
        key = key.encode("utf-8")
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()


def _digest(key: str | bytes, body: dict) -> str:
    unsigned = {k: v for k, v in body.items() if k != SIG_FIELD}
    return digest_of(key, serializer.canonical(unsigned))


def sign(body: dict, key: str | bytes | None) -> dict:
    """``body`` with its ``sig`` set (a new dict); unchanged without key."""
    if not key:
        return body
    signed = dict(body)
    signed[SIG_FIELD] = _digest(key, body)
    return signed


def verify(body: dict, key: str | bytes | None) -> str | None:
    """None when ``body`` is acceptable, else the reason it is not."""
    if not key:
        return None
    sig = body.get(SIG_FIELD)
    if not sig:
        return "unsigned message (a signing key is set)"
    if not isinstance(sig, str):
        return "signature is not a string"
    if not hmac.compare_digest(sig.encode("ascii", "replace"),
                               _digest(key, body).encode("ascii")):
        return "bad signature"
    return None
