"""CoreFilter: free vCPUs (total x cpu_allocation_ratio - used) cover the
flavor's vCPUs."""

from __future__ import annotations

from scheduler.filters import BaseHostFilter
from scheduler.host_manager import HostState
from scheduler.scheduling_request import SchedulingRequest


class CoreFilter(BaseHostFilter):
    def host_passes(self, host: HostState, spec: SchedulingRequest) -> bool:
        return host.free_vcpus >= spec.vcpus

    def filter_all(self, hosts, spec):
        need = spec.vcpus
        return [h for h in hosts
                if h.vcpus * h.cpu_allocation_ratio - h.vcpus_used >= need]
