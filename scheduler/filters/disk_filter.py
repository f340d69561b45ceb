"""DiskFilter: free disk (total x disk_allocation_ratio - used) covers the
flavor's root plus ephemeral disk. A flavor with no disk passes anywhere."""

from __future__ import annotations

from scheduler.filters import BaseHostFilter
from scheduler.host_manager import HostState
from scheduler.scheduling_request import SchedulingRequest


class DiskFilter(BaseHostFilter):
    def run_filter_for_request(self, spec: SchedulingRequest) -> bool:
        return spec.disk_gb > 0

    def host_passes(self, host: HostState, spec: SchedulingRequest) -> bool:
        return host.free_disk_gb >= spec.disk_gb

    def filter_all(self, hosts, spec):
        need = spec.disk_gb
        return [h for h in hosts
                if h.disk_gb * h.disk_allocation_ratio - h.disk_gb_used >= need]
