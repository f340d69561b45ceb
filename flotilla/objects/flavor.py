"""Flavor: the size of an instance, as the instance keeps it."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from flotilla.objects.base import FlotillaObject, register


@register
@dataclasses.dataclass(frozen=True)
class Flavor(FlotillaObject):
    """Size of an instance: a snapshot taken at boot (or resize), so editing
    the flavor later never changes a running server. ``extra_specs`` holds
    the flavor's extra specs (e.g. ``{"network": "true"}`` asks the driver
    for a NIC).

    History: 1.0 - first version.
    """

    VERSION = "1.0"

    flavorid: str = ""
    name: str = "custom"
    memory_mb: int = 64
    vcpus: int = 1
    root_gb: int = 0
    ephemeral_gb: int = 0
    swap: int = 0
    extra_specs: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.memory_mb < 1 or self.vcpus < 1 or self.root_gb < 0 \
                or self.ephemeral_gb < 0 or self.swap < 0:
            raise ValueError("flavor %r has a non-positive size" % self.name)

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> Flavor:
        """From a flavor row's or an instance's flavor snapshot dict; keys
        this object does not know are kept as extra specs."""
        known = {f.name for f in dataclasses.fields(cls)}
        extra = dict(data.get("extra_specs") or data.get("extra") or {})
        extra.update({k: v for k, v in data.items()
                      if k not in known and k not in ("extra", "id")})
        return cls(flavorid=str(data.get("flavorid") or ""),
                   name=str(data.get("name") or "custom"),
                   memory_mb=int(data["memory_mb"]),
                   vcpus=int(data.get("vcpus") or 1),
                   root_gb=int(data.get("root_gb") or 0),
                   ephemeral_gb=int(data.get("ephemeral_gb") or 0),
                   swap=int(data.get("swap") or 0),
                   extra_specs=extra)

    @classmethod
    def coerce(cls, value: Flavor | Mapping[str, Any]) -> Flavor:
        return value if isinstance(value, Flavor) else cls.from_record(value)

    def wants_network(self) -> bool:
        value = self.extra_specs.get("network", False)
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes", "on")
        return bool(value)

    @property
    def disk_gb(self) -> int:
        """What the instance's local disks may grow to: root + ephemeral +
        swap (MiB, rounded up to GiB), as Nova claims DISK_GB."""
        return self.root_gb + self.ephemeral_gb + -(-self.swap // 1024)
