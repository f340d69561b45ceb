"""DifferentHostFilter: the ``different_host`` scheduler hint (a server
uuid or a list of them): the hosts those servers run on do not pass."""

from __future__ import annotations

from scheduler.filters import BaseHostFilter
from scheduler.host_manager import HostState
from scheduler.scheduling_request import SchedulingRequest


class DifferentHostFilter(BaseHostFilter):
    def run_filter_for_request(self, spec: SchedulingRequest) -> bool:
        return bool(spec.different_hosts)

    def host_passes(self, host: HostState, spec: SchedulingRequest) -> bool:
        return host.host not in (spec.different_hosts or ())
