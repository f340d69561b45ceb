"""NumInstancesFilter: a host holds fewer than ``[scheduler]
max_instances_per_host`` instances (counted by allocations, which claims
keep exact, not by the agent's periodic report)."""

from __future__ import annotations

from scheduler.filters import BaseHostFilter
from scheduler.host_manager import HostState
from scheduler.scheduling_request import SchedulingRequest


class NumInstancesFilter(BaseHostFilter):
    def host_passes(self, host: HostState, spec: SchedulingRequest) -> bool:
        return host.num_instances < self.conf.scheduler.max_instances_per_host

    def filter_all(self, hosts, spec):
        limit = self.conf.scheduler.max_instances_per_host
        return [h for h in hosts if h.num_instances < limit]
