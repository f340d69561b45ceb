"""RetryFilter: a rescheduled build never goes back to a host it already
failed on (the build flow passes them as ``excluded_hosts``)."""

from __future__ import annotations

from scheduler.filters import BaseHostFilter
from scheduler.host_manager import HostState
from scheduler.scheduling_request import SchedulingRequest


class RetryFilter(BaseHostFilter):
    def run_filter_for_request(self, spec: SchedulingRequest) -> bool:
        return bool(spec.excluded_hosts)

    def host_passes(self, host: HostState, spec: SchedulingRequest) -> bool:
        return host.host not in spec.excluded_hosts
