"""RamFilter: free RAM (total x ram_allocation_ratio - used) covers the
flavor's memory."""

from __future__ import annotations

from scheduler.filters import BaseHostFilter
from scheduler.host_manager import HostState
from scheduler.scheduling_request import SchedulingRequest


class RamFilter(BaseHostFilter):
    def host_passes(self, host: HostState, spec: SchedulingRequest) -> bool:
        return host.free_ram_mb >= spec.memory_mb

    def filter_all(self, hosts, spec):
        # Inlined: this runs on every host of every request.
        need = spec.memory_mb
        return [h for h in hosts
                if h.memory_mb * h.ram_allocation_ratio - h.memory_mb_used >= need]
