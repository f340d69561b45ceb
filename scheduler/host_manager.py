"""Host state for one scheduling request, read from the database.

Rules:

* :meth:`HostManager.get_host_states` runs ONE query (compute nodes joined
  with their services and allocation counts) per request; the states are
  then filtered, weighed and consumed in memory for every instance of the
  request. Nothing is cached across requests: a decision made on stale data
  would only lose its claim (the generation moved), but it would also miss
  capacity freed meanwhile.
* Free capacity applies the allocation ratios: ``total * ratio - used``.
* A host whose compute service never reported is kept, marked down: the
  ComputeFilter removes it and says so in the NoValidHost reason.
"""

from __future__ import annotations

import dataclasses

from flotilla.db import scheduling as sched_db


@dataclasses.dataclass(slots=True, eq=False)
class HostState:
    host: str
    vcpus: int
    memory_mb: int
    disk_gb: int
    vcpus_used: int
    memory_mb_used: int
    disk_gb_used: int
    cpu_allocation_ratio: float
    ram_allocation_ratio: float
    disk_allocation_ratio: float
    hypervisor_type: str | None
    cpu_arch: str | None
    availability_zone: str | None
    generation: int
    service_up: bool
    service_disabled: bool
    num_instances: int

    @property
    def free_ram_mb(self) -> float:
        return self.memory_mb * self.ram_allocation_ratio - self.memory_mb_used

    @property
    def free_vcpus(self) -> float:
        return self.vcpus * self.cpu_allocation_ratio - self.vcpus_used

    @property
    def free_disk_gb(self) -> float:
        return self.disk_gb * self.disk_allocation_ratio - self.disk_gb_used

    def consume(self, resources: dict[str, int], generation: int | None = None) -> None:
        """Account a claim made on this host during the current request."""
        self.vcpus_used += resources.get("vcpus", 0)
        self.memory_mb_used += resources.get("memory_mb", 0)
        self.disk_gb_used += resources.get("disk_gb", 0)
        self.num_instances += 1
        if generation is not None:
            self.generation = generation


def state_from_row(row) -> HostState:
    (host, vcpus, memory_mb, disk_gb, vcpus_used, memory_mb_used, disk_gb_used,
     cpu_ratio, ram_ratio, disk_ratio, hv_type, arch, az, generation,
     up, disabled, count) = row
    return HostState(host, vcpus or 0, memory_mb or 0, disk_gb or 0,
                     vcpus_used or 0, memory_mb_used or 0, disk_gb_used or 0,
                     cpu_ratio, ram_ratio, disk_ratio, hv_type, arch, az,
                     generation, bool(up), bool(disabled), count or 0)


class HostManager:
    """Builds :class:`HostState` s from the database."""

    def __init__(self, down_time: float) -> None:
        self.down_time = down_time

    def get_host_states(self) -> list[HostState]:
        return [state_from_row(row) for row in sched_db.host_state_rows(self.down_time)]

    def refresh(self, host: str) -> HostState | None:
        """The current state of one host (after a lost claim)."""
        row = sched_db.host_state_row(host, self.down_time)
        return state_from_row(row) if row is not None else None
