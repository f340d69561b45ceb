"""Finding and running the endpoint method a request names.

Rules:

* An endpoint is any object; it states its API version in
  ``RPC_API_VERSION`` ("X.Y", default "1.0"). Its RPC methods are the plain
  functions defined on its class (or a base class) whose name does not
  start with an underscore and that are not marked :func:`private` (service
  hooks such as ``init_host``; periodic tasks are private too); they are
  called as ``method(ctxt, **args)`` with every versioned object in the
  arguments rebuilt (:mod:`flotilla.objects`); a result's objects are sent
  in their primitive form.
* Several endpoints may be served together: the first one (in the order
  given) that has the method and a compatible version handles it.
* No endpoint has the method: :class:`~flotilla.exception.UnknownMethod`.
  Some have it, none at a compatible version:
  :class:`~flotilla.exception.UnsupportedVersion`. Arguments that do not
  bind to the signature, or an object primitive that cannot be rebuilt:
  :class:`~flotilla.exception.InvalidMessage`. All of
  these are raised before any endpoint code runs.
* The method runs inside ``with ctxt:`` so log lines carry the request id.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from flotilla import exception, objects
from flotilla.rpc import envelope, versioning


def private(func):
    """Mark a public endpoint method as not callable over RPC."""
    func._rpc_private = True
    return func


def rpc_methods(endpoint_class: type) -> dict[str, Any]:
    """The functions of ``endpoint_class`` callable over RPC, by name (see
    the module rules)."""
    return {name: func for name, func in inspect.getmembers(endpoint_class, inspect.isfunction)
            if not name.startswith("_") and not getattr(func, "_rpc_private", False)}


class _Target:
    __slots__ = ("version", "func", "signature", "names", "required")

    def __init__(self, version: str, func, signature: inspect.Signature):
        self.version = version
        self.func = func
        self.signature = signature
        all_params = list(signature.parameters.values())
        params = all_params[1:]  # after ctxt
        simple = {inspect.Parameter.POSITIONAL_OR_KEYWORD,
                  inspect.Parameter.KEYWORD_ONLY}
        if all_params and all_params[0].kind in (
                inspect.Parameter.POSITIONAL_ONLY,
                inspect.Parameter.POSITIONAL_OR_KEYWORD) \
                and all(p.kind in simple for p in params):
            # The common case, checked with two set operations instead of
            # Signature.bind for every message.
            self.names = frozenset(p.name for p in params)
            self.required = frozenset(p.name for p in params
                                      if p.default is p.empty)
        else:
            self.names = self.required = None

    def check_args(self, ctxt, args: dict) -> None:
        """TypeError when ``args`` do not fit the method's signature."""
        if self.names is not None:
            keys = args.keys()
            if keys <= self.names and self.required <= keys:
                return
        self.signature.bind(ctxt, **args)


class Dispatcher:
    """Maps method names to endpoint methods; see the module rules."""

    def __init__(self, endpoints: Iterable[object], topic: str) -> None:
        self.topic = topic
        self._methods: dict[str, list[_Target]] = {}
        for endpoint in endpoints:
            version = getattr(endpoint, "RPC_API_VERSION", "1.0")
            versioning.parse(version)  # fail at start-up, not per message
            for name in rpc_methods(type(endpoint)):
                bound = getattr(endpoint, name)
                # Computed once: binding arguments per message is then cheap.
                self._methods.setdefault(name, []).append(
                    _Target(version, bound, inspect.signature(bound)))

    def methods(self) -> list[str]:
        return sorted(self._methods)

    def dispatch(self, request: envelope.Request) -> Any:
        """Run the method; its exceptions propagate to the caller."""
        targets = self._methods.get(request.method)
        if not targets:
            raise exception.UnknownMethod(topic=self.topic,
                                          method=request.method)
        for target in targets:
            if versioning.is_compatible(target.version, request.version):
                break
        else:
            raise exception.UnsupportedVersion(
                topic=self.topic, version=request.version,
                server_version=max((t.version for t in targets),
                                   key=versioning.parse))
        try:
            target.check_args(request.context, request.args)
        except TypeError as exc:
            raise exception.InvalidMessage(
                reason="arguments do not match %s: %s"
                % (request.method, exc)) from None
        args = objects.deserialize(request.args)
        with request.context:
            return objects.serialize(target.func(request.context, **args))
