"""DiskWeigher: weight is the free disk (after allocation ratio), times
``[scheduler] disk_weight_multiplier``."""

from __future__ import annotations

from scheduler.host_manager import HostState
from scheduler.scheduling_request import SchedulingRequest
from scheduler.weighers import BaseWeigher


class DiskWeigher(BaseWeigher):
    def multiplier(self) -> float:
        return self.conf.scheduler.disk_weight_multiplier

    def raw_weight(self, host: HostState, spec: SchedulingRequest) -> float:
        return host.free_disk_gb

    def raw_weights(self, hosts, spec):
        return [h.disk_gb * h.disk_allocation_ratio - h.disk_gb_used for h in hosts]
