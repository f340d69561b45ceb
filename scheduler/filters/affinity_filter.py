"""ServerGroupAffinityFilter: members of an affinity group share one host.

Once any member holds a host (a claim or a recorded host), only that host
passes; the first member may go anywhere. Hard: with the group's host full
or down, the request fails with NoValidHost rather than split the group.
"""

from __future__ import annotations

from scheduler.filters import BaseHostFilter
from scheduler.host_manager import HostState
from scheduler.scheduling_request import SchedulingRequest


class ServerGroupAffinityFilter(BaseHostFilter):
    def run_filter_for_request(self, spec: SchedulingRequest) -> bool:
        return spec.group_policy == "affinity" and bool(spec.group_hosts)

    def host_passes(self, host: HostState, spec: SchedulingRequest) -> bool:
        return host.host in spec.group_hosts
