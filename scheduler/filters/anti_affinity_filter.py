"""ServerGroupAntiAffinityFilter: no two members of an anti-affinity group
on one host (hard: NoValidHost rather than share)."""

from __future__ import annotations

from scheduler.filters import BaseHostFilter
from scheduler.host_manager import HostState
from scheduler.scheduling_request import SchedulingRequest


class ServerGroupAntiAffinityFilter(BaseHostFilter):
    def run_filter_for_request(self, spec: SchedulingRequest) -> bool:
        return spec.group_policy == "anti-affinity" and bool(spec.group_hosts)

    def host_passes(self, host: HostState, spec: SchedulingRequest) -> bool:
        return host.host not in spec.group_hosts
