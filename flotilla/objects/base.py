"""Versioned objects: the typed payloads services send each other over RPC.

Rules:

* An object is a dataclass subclassing :class:`FlotillaObject`, registered
  under its class name with :func:`register`, with a ``VERSION`` ("X.Y").
  Adding an optional field is a minor bump; removing or retyping one is a
  major bump. Each class lists its history in its docstring.
* On the wire an object is its primitive form::

      {"flotilla_object.name": "Instance", "flotilla_object.version": "1.0",
       "flotilla_object.data": {field: primitive, ...}}

  Field values are JSON values, other objects (nested primitives) or lists
  and dicts of them. :func:`serialize` and :func:`deserialize` walk any
  argument or result; the RPC layer applies them to every message, so RPC
  APIs take and return objects.
* A primitive of an unknown name, another major version or a newer minor
  version is refused with :class:`~flotilla.exception.InvalidMessage`
  naming the object and both versions (the sender's ``version_cap`` is
  wrong). Unknown fields of the same minor are an error too: two services
  that disagree about an object's shape must say so, not drop data.
* :meth:`FlotillaObject.to_primitive` takes an optional ``target_version``
  for a receiver that only knows an older minor version;
  :meth:`FlotillaObject.make_compatible` drops what that version lacks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from flotilla import exception
from flotilla.rpc import versioning

NAME_KEY = "flotilla_object.name"
VERSION_KEY = "flotilla_object.version"
DATA_KEY = "flotilla_object.data"

_REGISTRY: dict[str, type[FlotillaObject]] = {}

T = TypeVar("T", bound="FlotillaObject")


def register(cls: type[T]) -> type[T]:
    """Class decorator: make ``cls`` known to :func:`deserialize`."""
    versioning.parse(cls.VERSION)
    if cls.__name__ in _REGISTRY and _REGISTRY[cls.__name__] is not cls:
        raise RuntimeError("two objects named %s" % cls.__name__)
    _REGISTRY[cls.__name__] = cls
    return cls


def registered() -> dict[str, type[FlotillaObject]]:
    """Every registered object class by name (for tests and tools)."""
    return dict(_REGISTRY)


class FlotillaObject:
    """Base of every versioned object (subclasses are dataclasses)."""

    VERSION: ClassVar[str] = "1.0"

    # --- wire form -------------------------------------------------------------

    def to_primitive(self, target_version: str | None = None) -> dict[str, Any]:
        data = {f.name: serialize(getattr(self, f.name))
                for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        version = self.VERSION
        if target_version is not None and target_version != self.VERSION:
            if not versioning.is_compatible(self.VERSION, target_version):
                raise exception.InvalidMessage(
                    reason="%s %s cannot be sent as version %s"
                    % (type(self).__name__, self.VERSION, target_version))
            self.make_compatible(data, target_version)
            version = target_version
        return {NAME_KEY: type(self).__name__, VERSION_KEY: version, DATA_KEY: data}

    def make_compatible(self, data: dict[str, Any], target_version: str) -> None:
        """Remove from ``data`` what ``target_version`` does not know."""

    @classmethod
    def from_primitive(cls: type[T], primitive: Mapping[str, Any]) -> T:
        obj = deserialize(primitive)
        if not isinstance(obj, cls):
            raise exception.InvalidMessage(
                reason="expected a %s, got %s" % (cls.__name__, type(obj).__name__))
        return obj

    # --- conveniences ------------------------------------------------------------

    def replace(self: T, **changes: Any) -> T:
        """A copy with ``changes`` applied (objects are treated as values)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def is_primitive(value: Any) -> bool:
    return isinstance(value, Mapping) and NAME_KEY in value and DATA_KEY in value


def serialize(value: Any) -> Any:
    """``value`` with every object replaced by its primitive form."""
    if isinstance(value, FlotillaObject):
        return value.to_primitive()
    if isinstance(value, (list, tuple)):
        return [serialize(v) for v in value]
    if isinstance(value, dict):
        return {k: serialize(v) for k, v in value.items()}
    return value


def deserialize(value: Any) -> Any:
    """``value`` with every primitive form replaced by its object."""
    if isinstance(value, list):
        return [deserialize(v) for v in value]
    if not isinstance(value, dict):
        return value
    if not is_primitive(value):
        return {k: deserialize(v) for k, v in value.items()}
    name, version = value.get(NAME_KEY), value.get(VERSION_KEY)
    cls = _REGISTRY.get(name) if isinstance(name, str) else None
    if cls is None:
        raise exception.InvalidMessage(reason="unknown object %r" % (name,))
    if not isinstance(version, str) or not versioning.is_compatible(cls.VERSION, version):
        raise exception.InvalidMessage(
            reason="%s version %s is not compatible with this service's %s"
            % (name, version, cls.VERSION))
    data = value.get(DATA_KEY)
    if not isinstance(data, dict):
        raise exception.InvalidMessage(reason="%s: data is not an object" % name)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - names
    if unknown:
        raise exception.InvalidMessage(
            reason="%s %s: unknown fields %s" % (name, version, sorted(unknown)))
    try:
        return cls(**{k: deserialize(v) for k, v in data.items()})
    except (TypeError, ValueError) as exc:
        raise exception.InvalidMessage(reason="%s: %s" % (name, exc)) from None
