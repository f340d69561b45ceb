"""The request spec: what the instances of one request need.

It arrives as a JSON dict (see :func:`RequestSpec.from_dict`) from the
conductor::

    {"flavor": {"memory_mb", "vcpus", "root_gb", "ephemeral_gb"?},
     "image": {"id", "properties": {"arch"?, "hypervisor_type"?},
               "min_ram", "min_disk"},
     "availability_zone": str | None, "group": uuid | None,
     "num_instances": int}

The scheduler adds what it learns while deciding: the group's policy and
the hosts its members occupy (updated as it places this request's
instances), and the hosts excluded because they were already tried.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from flotilla import exception


@dataclasses.dataclass
class RequestSpec:
    memory_mb: int
    vcpus: int
    disk_gb: int
    image_properties: dict[str, Any] = dataclasses.field(default_factory=dict)
    image_min_ram: int = 0
    image_min_disk: int = 0
    availability_zone: str | None = None
    group: str | None = None
    num_instances: int = 1
    excluded_hosts: set[str] = dataclasses.field(default_factory=set)
    # Filled in by the scheduler.
    group_policy: str | None = None
    group_hosts: set[str] = dataclasses.field(default_factory=set)

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any],
                  excluded_hosts: Iterable[str] | None = None) -> RequestSpec:
        flavor = spec.get("flavor") or {}
        try:
            memory_mb = int(flavor["memory_mb"])
            vcpus = int(flavor["vcpus"])
        except (KeyError, TypeError, ValueError):
            raise exception.Invalid(
                reason="request spec needs flavor memory_mb and vcpus") from None
        image = spec.get("image") or {}
        return cls(
            memory_mb=memory_mb, vcpus=vcpus,
            disk_gb=int(flavor.get("root_gb") or 0) + int(flavor.get("ephemeral_gb") or 0),
            image_properties=dict(image.get("properties") or {}),
            image_min_ram=int(image.get("min_ram") or 0),
            image_min_disk=int(image.get("min_disk") or 0),
            availability_zone=spec.get("availability_zone") or None,
            group=spec.get("group") or None,
            num_instances=max(1, int(spec.get("num_instances") or 1)),
            excluded_hosts=set(excluded_hosts or ()))

    @property
    def resources(self) -> dict[str, int]:
        """What one instance claims on its host."""
        return {"vcpus": self.vcpus, "memory_mb": self.memory_mb,
                "disk_gb": self.disk_gb}
