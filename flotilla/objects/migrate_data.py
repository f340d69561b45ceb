"""MigrateData: what the two hosts of a migration tell each other."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from flotilla.objects.base import FlotillaObject, register
from flotilla.objects.block_device import BlockDeviceMapping
from flotilla.objects.flavor import Flavor

MIGRATION_TYPES = ("live-migration", "migration", "resize", "evacuation")


@register
@dataclasses.dataclass(frozen=True)
class MigrateData(FlotillaObject):
    """The facts of one migration that cross between hosts.

    The conductor fills the identity and the choice (``block_migration``,
    ``disks_to_copy``); the destination's prepare step adds where it put
    things (``dest_instances_path``, volumes' ``bdms`` with its own
    connection info) and the source's migrate step reads them.
    ``driver_data`` carries what only one virt driver understands (for
    libvirt: the destination's domain XML), so the object does not grow a
    field per hypervisor.

    History: 1.0 - first version.
    """

    VERSION = "1.0"

    migration_uuid: str
    migration_type: str
    source_host: str
    dest_host: str
    block_migration: bool = True
    disks_to_copy: tuple[str, ...] = ()
    dest_instances_path: str | None = None
    bdms: tuple[BlockDeviceMapping, ...] = ()
    new_flavor: Flavor | None = None
    driver_data: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.migration_type not in MIGRATION_TYPES:
            raise ValueError("migration_type must be one of %s" % ", ".join(MIGRATION_TYPES))
        if self.source_host == self.dest_host and self.migration_type == "live-migration":
            raise ValueError("a live migration needs two different hosts")
        object.__setattr__(self, "disks_to_copy", tuple(self.disks_to_copy))
        object.__setattr__(self, "bdms", tuple(self.bdms))
