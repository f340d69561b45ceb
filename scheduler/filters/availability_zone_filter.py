"""AvailabilityZoneFilter: the host is in the zone the request names.

A host in an aggregate with a zone is in that zone; else in the zone its
node reports; a host that reports none is in ``[scheduler]
default_availability_zone``.
A request that names no zone may go anywhere.
"""

from __future__ import annotations

from scheduler.filters import BaseHostFilter
from scheduler.host_manager import HostState
from scheduler.scheduling_request import SchedulingRequest


class AvailabilityZoneFilter(BaseHostFilter):
    def run_filter_for_request(self, spec: SchedulingRequest) -> bool:
        return spec.availability_zone is not None

    def host_passes(self, host: HostState, spec: SchedulingRequest) -> bool:
        zone = (spec.host_zone(host.host) or host.availability_zone
                or self.conf.scheduler.default_availability_zone)
        return zone == spec.availability_zone
