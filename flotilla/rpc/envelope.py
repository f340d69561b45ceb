"""The envelope: the JSON body of every request and reply.

A request is a JSON object with exactly these fields (plus ``sig`` when
signed):

``method`` (str, public method name), ``args`` (object of keyword
arguments), ``version`` ("X.Y"), ``context`` (request_id, user_id,
project_id, roles), ``msg_id`` (str, unique), ``reply_to`` (str for a call,
null for a cast), ``sent_at`` (float, UNIX time at the sender), ``ttl``
(seconds after ``sent_at`` the message is worth handling: its deadline; at
most :data:`MAX_TTL`; every message has one, so a copy of it can only be
replayed within a bounded window, see :mod:`flotilla.rpc.replay`).

A reply is ``{"msg_id", "result"}`` or ``{"msg_id", "failure"}`` (plus
``sig``); ``failure`` is described in :mod:`flotilla.rpc.serializer`.

A request or reply sent by an agent also names its ``signer`` (the agent's
host): the receiver checks the signature with that host's key
(:class:`flotilla.rpc.signing.Keyring`), so a verified signer is
authenticated, and the request's context carries it as ``agent_host`` (never
taken from the context's own fields).

Rules enforced by :func:`decode_request` (each failure raises
:class:`~flotilla.exception.InvalidMessage` with the reason, or
:class:`Expired`, before any endpoint code runs): size before parsing, JSON
(nested at most :data:`MAX_DEPTH` deep), signature when a key is set, field
presence and types, version syntax, ttl, and ``sent_at`` at most
``max_skew`` seconds in the future. The deadline is compared against this
host's clock, so hosts must run NTP; a clock skew larger than a ttl drops
calls.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

from flotilla import context as flotilla_context
from flotilla import exception
from flotilla.rpc import serializer, signing, versioning

REQUEST_FIELDS = ("method", "args", "version", "context", "msg_id",
                  "reply_to", "sent_at", "ttl")
SIGNER_FIELD = "signer"

#: The key a body must verify with: one key, or a function of the body's
#: claimed signer (None when it names none).
KeyChoice = str | None | Callable[[str | None], str | None]

#: Longest deadline a message may ask for (a day): bounds the window in
#: which a copy could be replayed and what a replay store keeps.
MAX_TTL = 86400
#: Deepest nesting of arrays and objects accepted in a body; Flotilla's own
#: messages nest a handful of levels.
MAX_DEPTH = 32
#: Default tolerance for a sender's clock being ahead of ours.
DEFAULT_MAX_SKEW = 30.0


class Expired(exception.InvalidMessage):
    """A request past its ttl: dropped without a reply (nobody waits)."""

    msg_fmt = "Message %(msg_id)s expired %(age).3fs after it was sent (ttl %(ttl)ss)"


@dataclasses.dataclass
class Request:
    method: str
    args: dict
    version: str
    context: flotilla_context.RequestContext
    msg_id: str
    reply_to: str | None
    sent_at: float
    ttl: float
    signer: str | None = None

    @property
    def deadline(self) -> float:
        """UNIX time after which the message is refused."""
        return self.sent_at + self.ttl


_ids: tuple | None = None


def new_msg_id() -> str:
    """A message id unique across processes and time: a random prefix per
    process and a counter (os.urandom per message costs ~100 us on some
    VMs; an id needs to be unique, not secret: the signature covers it)."""
    global _ids
    ids = _ids
    if ids is None or ids[0] != os.getpid():  # new process (or a fork)
        ids = _ids = (os.getpid(), uuid.uuid4().hex[:20], itertools.count())
    return "%s%x" % (ids[1], next(ids[2]))


def build_request(ctxt: flotilla_context.RequestContext | None, method: str,
                  args: dict, version: str, *, reply_to: str | None,
                  ttl: float, msg_id: str | None = None) -> dict:
    """A request dict, ready for :func:`encode`."""
    if not ttl or ttl <= 0 or ttl > MAX_TTL:
        raise ValueError("a message needs a ttl in (0, %d]" % MAX_TTL)
    ctxt = ctxt or flotilla_context.get_admin_context()
    return {"method": method, "args": args, "version": version,
            "context": ctxt.to_dict(), "msg_id": msg_id or new_msg_id(),
            "reply_to": reply_to, "sent_at": time.time(), "ttl": ttl}


def build_reply(msg_id: str | None, *, result: Any = None,
                failure: dict | None = None) -> dict:
    if failure is not None:
        return {"msg_id": msg_id, "failure": failure}
    return {"msg_id": msg_id, "result": result}


def encode(body: dict, key: str | None, signer: str | None = None) -> bytes:
    """Sign (when ``key``) and serialise; TypeError for non-JSON-able data.
    ``signer`` (an agent's host) is added to the body before signing.

    A signed body goes out in its canonical form with ``sig`` appended, so
    it is encoded once (the receiver re-derives the canonical form anyway).
    """
    if signer is not None:
        body = dict(body, **{SIGNER_FIELD: signer})
    if not key or not body or signing.SIG_FIELD in body:
        return serializer.dumps(signing.sign(body, key))
    data = serializer.canonical(body)
    return b"%s,\"%s\":\"%s\"}" % (data[:-1], signing.SIG_FIELD.encode(),
                                    signing.digest_of(key, data).encode())


def _brackets(data: bytes | bytearray | memoryview | str) -> int:
    """How many ``{`` and ``[`` ``data`` holds (an upper bound of its depth)."""
    if isinstance(data, str):
        return data.count("{") + data.count("[")
    if isinstance(data, memoryview):
        data = data.tobytes()
    return data.count(b"{") + data.count(b"[")


def _parse(data: bytes, key: KeyChoice, max_size: int) -> tuple[dict, bool]:
    """The body, and whether a key checked its signature."""
    if len(data) > max_size:
        raise exception.InvalidMessage(
            reason="message of %d bytes exceeds max_message_size %d"
            % (len(data), max_size))
    try:
        body = serializer.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise exception.InvalidMessage(reason="not JSON: %s" % exc) from None
    except RecursionError:
        raise exception.InvalidMessage(
            reason="JSON nested deeper than %d levels" % MAX_DEPTH) from None
    if not isinstance(body, dict):
        raise exception.InvalidMessage(reason="body is not a JSON object")
    # A body with no more than MAX_DEPTH brackets in all cannot nest deeper
    # (brackets inside strings only make the count larger): counting is C
    # speed, walking the parsed body is not, and most bodies have a few.
    if _brackets(data) > MAX_DEPTH and serializer.depth(body) > MAX_DEPTH:
        raise exception.InvalidMessage(
            reason="JSON nested deeper than %d levels" % MAX_DEPTH)
    signer = body.get(SIGNER_FIELD)
    if signer is not None and not (isinstance(signer, str) and 0 < len(signer) <= 255):
        raise exception.InvalidMessage(reason="bad signer")
    if callable(key):
        key = key(signer)
    problem = None if signing.verify_wire(data, key) else signing.verify(body, key)
    if problem:
        raise exception.InvalidMessage(reason=problem)
    return body, bool(key)


def _check(cond: bool, reason: str) -> None:
    if not cond:
        raise exception.InvalidMessage(reason=reason)


def decode_request(data: bytes, *, key: KeyChoice, max_size: int,
                   now: float | None = None,
                   max_skew: float = DEFAULT_MAX_SKEW) -> Request:
    """Validate a request body; see the module rules."""
    body, verified = _parse(data, key, max_size)
    missing = [f for f in REQUEST_FIELDS if f not in body]
    _check(not missing, "missing fields: %s" % ", ".join(missing))
    method, args, ctx = body["method"], body["args"], body["context"]
    _check(isinstance(method, str) and method.isidentifier()
           and not method.startswith("_"), "bad method name %r" % (method,))
    _check(isinstance(args, dict), "args is not an object")
    _check(isinstance(ctx, dict), "context is not an object")
    roles = ctx.get("roles") or []
    _check(isinstance(roles, list) and all(isinstance(r, str) for r in roles),
           "context roles is not a list of strings")
    _check(isinstance(body["msg_id"], str) and body["msg_id"] != "",
           "bad msg_id")
    _check(body["reply_to"] is None or isinstance(body["reply_to"], str),
           "bad reply_to")
    sent_at, ttl = body["sent_at"], body["ttl"]
    _check(isinstance(sent_at, (int, float)) and not isinstance(sent_at, bool),
           "bad sent_at")
    _check(ttl is not None, "no ttl: every message must carry a deadline")
    _check(isinstance(ttl, (int, float)) and not isinstance(ttl, bool)
           and 0 < ttl <= MAX_TTL, "bad ttl (0 < ttl <= %d)" % MAX_TTL)
    versioning.parse(body["version"])
    age = (time.time() if now is None else now) - sent_at
    _check(-age <= max_skew, "sent_at is %.1fs in the future (more than the "
           "allowed clock skew of %ss)" % (-age, max_skew))
    if age > ttl:
        raise Expired(msg_id=body["msg_id"], age=age, ttl=ttl)
    context = flotilla_context.RequestContext.from_dict(ctx)
    # Authenticated only when a key checked it (an unkeyed service trusts all).
    signer = body.get(SIGNER_FIELD)
    context.agent_host = signer if verified else None
    return Request(method=method, args=args, version=body["version"],
                   context=context, msg_id=body["msg_id"], reply_to=body["reply_to"],
                   sent_at=float(sent_at), ttl=ttl, signer=signer)


def decode_reply(data: bytes, *, key: KeyChoice, max_size: int) -> dict:
    """A validated reply dict (``msg_id`` and ``result`` or ``failure``)."""
    body, _verified = _parse(data, key, max_size)
    _check("msg_id" in body and ("result" in body or "failure" in body),
           "reply without msg_id and result or failure")
    if "failure" in body:
        _check(isinstance(body["failure"], dict), "failure is not an object")
    return body
