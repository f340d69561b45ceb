"""JSON on the wire, and exceptions in and out of replies.

Rules:

* Every body is UTF-8 JSON. :func:`canonical` is the one byte form a
  signature is computed over: sorted keys, no whitespace, so two services
  that build the same dict sign the same bytes whatever their dict order.
* Arguments and results must be JSON-able; :func:`dumps` raises
  ``TypeError`` otherwise so a caller learns it before anything is sent.
* A remote exception travels as ``{"exc_type", "message", "kwargs"}``.
  :func:`exception_from_failure` rebuilds the class of the same name from
  :mod:`flotilla.exception` when there is one (and only then: a name never
  reaches ``getattr`` on any other module, so a remote peer cannot make us
  instantiate arbitrary classes), else :class:`~flotilla.exception.RemoteError`.
"""

from __future__ import annotations

import json
from typing import Any

from flotilla import exception

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"),
                            allow_nan=False)
_CANONICAL = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"),
                              sort_keys=True, allow_nan=False)


def dumps(obj: Any) -> bytes:
    """The wire form of ``obj`` (compact JSON, UTF-8)."""
    return _ENCODER.encode(obj).encode("utf-8")


def canonical(obj: Any) -> bytes:
    """The canonical form of ``obj``: what a signature covers."""
    return _CANONICAL.encode(obj).encode("utf-8")


def loads(data: bytes | str) -> Any:
    """Parse a body; raises ``ValueError`` for anything that is not JSON."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = bytes(data).decode("utf-8")
    return json.loads(data)


def depth(obj: Any) -> int:
    """How deeply arrays and objects nest in ``obj`` (a scalar is 0);
    iterative, so a hostile body cannot exhaust the stack."""
    deepest = 0
    stack = [(obj, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children
                     if isinstance(child, (dict, list)))
    return deepest


def _jsonable(value: Any) -> bool:
    try:
        _ENCODER.encode(value)
    except (TypeError, ValueError):
        return False
    return True


def failure_from_exception(exc: BaseException) -> dict:
    """What a server sends back for an exception a method raised."""
    kwargs = getattr(exc, "kwargs", None)
    if not isinstance(kwargs, dict) or not _jsonable(kwargs):
        # Only data that survives JSON crosses the wire; the message
        # (already formatted from the kwargs) still carries the details.
        kwargs = {}
    return {"exc_type": type(exc).__name__, "message": str(exc),
            "kwargs": kwargs}


def exception_from_failure(failure: dict) -> Exception:
    """The local exception for a failure dict from a reply.

    Same class from :mod:`flotilla.exception` when it exists there (with the
    remote message and kwargs), else ``RemoteError(exc_type, message)``.
    """
    exc_type = str(failure.get("exc_type") or "Exception")
    message = str(failure.get("message") or "")
    kwargs = failure.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        kwargs = {}
    cls = getattr(exception, exc_type, None)
    if (isinstance(cls, type) and issubclass(cls, exception.FlotillaException)
            and cls.__module__ == exception.__name__):
        if cls is exception.RemoteError:
            return exception.RemoteError(
                str(kwargs.get("exc_type", exc_type)),
                str(kwargs.get("value", message)))
        try:
            exc = cls(message, **kwargs)
        except Exception:  # a subclass with its own __init__ signature
            try:
                exc = cls(message)
            except Exception:
                return exception.RemoteError(exc_type, message)
        return exc
    return exception.RemoteError(exc_type, message)
