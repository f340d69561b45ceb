"""What two hosts' drivers tell each other during a migration.

:class:`MigrateData` is built by ``check_can_migrate_source`` on the source,
completed by ``check_can_migrate_destination`` and ``pre_live_migration`` on
the destination, and carried between them by the conductor (stored on the
migration record, so a restarted conductor can finish or clean up). Each
step returns a new value (``dataclasses.replace``); none is mutated.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from compute.virt import power_state

OUTGOING = "outgoing"
INCOMING = "incoming"


@dataclasses.dataclass(frozen=True)
class MigrateData:
    """The facts of one migration that the drivers need.

    ``dest_uri`` is how the source's hypervisor reaches the destination's
    (libvirt: the peer-to-peer URI); ``guest_cpu`` the CPU the guest runs
    with, as the source's hypervisor describes it (live only);
    ``local_disks`` the devices whose data moves with the guest (root,
    ephemeral); ``volume_ids`` the network disks that stay where they are;
    ``dest_config`` the guest definition the destination rendered for
    itself with its own paths (opaque to everyone but the drivers);
    ``same_host`` a cold resize whose destination is its source (``[DEFAULT]
    allow_resize_to_same_host``: set by the conductor, which alone may
    allow it; a driver refuses the source as destination otherwise);
    ``guest`` the facts of the guest a destination checks it can run.
    """

    live: bool = True
    source_host: str = ""
    dest_host: str = ""
    dest_uri: str = ""
    guest_cpu: str = ""
    local_disks: tuple[str, ...] = ()
    volume_ids: tuple[str, ...] = ()
    dest_config: str = ""
    same_host: bool = False
    # The guest as the source's hypervisor describes it (libvirt: virt
    # type, arch, machine type, the CPU it was defined with), for the
    # destination's compatibility check (live only; absent from an older
    # source: then only ``guest_cpu`` is compared).
    guest: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["local_disks"] = list(self.local_disks)
        data["volume_ids"] = list(self.volume_ids)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MigrateData:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("local_disks", "volume_ids"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)

    @classmethod
    def coerce(cls, value: MigrateData | Mapping[str, Any]) -> MigrateData:
        return value if isinstance(value, MigrateData) else cls.from_dict(value)


@dataclasses.dataclass(frozen=True)
class MigrationProgress:
    """A running live migration as the source's hypervisor reports it.

    Byte counts are what was copied so far, what is left and the total, for
    the guest's memory and for its local disks. ``downtime_ms`` is the
    expected pause at switch-over while the job runs and the measured one
    once it completed (0 when the hypervisor does not say).
    """

    memory_total_bytes: int = 0
    memory_processed_bytes: int = 0
    memory_remaining_bytes: int = 0
    disk_total_bytes: int = 0
    disk_processed_bytes: int = 0
    disk_remaining_bytes: int = 0
    elapsed_ms: int = 0
    downtime_ms: int = 0

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class GuestPresence:
    """Whether one host holds a guest, what it does, and whether a migration
    job involves it here (``migration`` is "", OUTGOING or INCOMING).

    Asked of both hosts after a crash, it says where the guest really runs.
    """

    defined: bool
    power_state: int = power_state.NOSTATE
    migration: str = ""

    @property
    def running(self) -> bool:
        return self.defined and self.power_state == power_state.RUNNING
