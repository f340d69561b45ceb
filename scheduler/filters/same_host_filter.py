"""SameHostFilter: the ``same_host`` scheduler hint (a server uuid or a
list of them): only the hosts those servers run on pass. Servers not
found, or without a host yet, occupy no host, so a hint naming only such
servers lets no host pass (as Nova's filter)."""

from __future__ import annotations

from scheduler.filters import BaseHostFilter
from scheduler.host_manager import HostState
from scheduler.scheduling_request import SchedulingRequest


class SameHostFilter(BaseHostFilter):
    def run_filter_for_request(self, spec: SchedulingRequest) -> bool:
        return spec.same_hosts is not None

    def host_passes(self, host: HostState, spec: SchedulingRequest) -> bool:
        return host.host in (spec.same_hosts or ())
