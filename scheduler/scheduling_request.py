"""The scheduler's working view of one request.

Made from the :class:`flotilla.objects.RequestSpec` the conductor sends
(:meth:`SchedulingRequest.from_spec`): the sizes one instance claims, the
image's needs, the zone and group asked for. The scheduler adds what it
learns while deciding: the group's policy and the hosts its members occupy
(updated as it places this request's instances), and the hosts excluded
because they were already tried.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from flotilla import exception, objects


@dataclasses.dataclass
class SchedulingRequest:
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
    flavor_extra_specs: dict[str, Any] = dataclasses.field(default_factory=dict)
    scheduler_hints: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Filled in by the scheduler.
    group_policy: str | None = None
    group_hosts: set[str] = dataclasses.field(default_factory=set)
    # Hosts of the servers named by the same_host / different_host hints
    # (None: no such hint).
    same_hosts: set[str] | None = None
    different_hosts: set[str] | None = None
    # host -> [(zone, metadata)] of the aggregates it is in.
    host_aggregates: dict[str, list] = dataclasses.field(default_factory=dict)

    def host_zone(self, host: str) -> str | None:
        """The zone an aggregate puts ``host`` in, if any."""
        return next((zone for zone, _ in self.host_aggregates.get(host, ()) if zone), None)

    def hint_uuids(self, name: str) -> list[str] | None:
        """A same_host / different_host hint as a list of server uuids."""
        value = self.scheduler_hints.get(name)
        if value is None:
            return None
        return [value] if isinstance(value, str) else list(value)

    @classmethod
    def from_spec(cls, spec: objects.RequestSpec | Mapping[str, Any],
                  excluded_hosts: Iterable[str] | None = None) -> SchedulingRequest:
        """From the request spec (or its pre-1.1 dict form)."""
        try:
            spec = objects.RequestSpec.coerce(spec)
        except (KeyError, TypeError, ValueError) as exc:
            raise exception.Invalid(
                reason="request spec needs a flavor with memory_mb and vcpus: %s"
                % exc) from None
        image = spec.image
        return cls(
            memory_mb=spec.flavor.memory_mb, vcpus=spec.flavor.vcpus,
            disk_gb=spec.flavor.disk_gb,
            image_properties=dict(image.properties) if image else {},
            image_min_ram=image.min_ram_mb if image else 0,
            image_min_disk=image.min_disk_gb if image else 0,
            availability_zone=spec.availability_zone,
            group=spec.group,
            num_instances=spec.num_instances,
            excluded_hosts=set(excluded_hosts or ()) | set(spec.ignore_hosts),
            flavor_extra_specs=dict(spec.flavor.extra_specs),
            scheduler_hints=dict(spec.scheduler_hints))

    @property
    def resources(self) -> dict[str, int]:
        """What one instance claims on its host."""
        return {"vcpus": self.vcpus, "memory_mb": self.memory_mb,
                "disk_gb": self.disk_gb}
