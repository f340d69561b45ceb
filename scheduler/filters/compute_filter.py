"""ComputeFilter: the host's compute service is enabled and up.

Up means a heartbeat no older than ``[DEFAULT] service_down_time``; a host
whose service never reported is down. Disabled (by an operator) hosts take
no new instances even when up.
"""

from __future__ import annotations

from scheduler.filters import BaseHostFilter
from scheduler.host_manager import HostState
from scheduler.scheduling_request import SchedulingRequest


class ComputeFilter(BaseHostFilter):
    def host_passes(self, host: HostState, spec: SchedulingRequest) -> bool:
        return host.service_up and not host.service_disabled

    def filter_all(self, hosts, spec):
        return [h for h in hosts if h.service_up and not h.service_disabled]
