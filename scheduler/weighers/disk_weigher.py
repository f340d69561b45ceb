"""DiskWeigher: weight is the free disk (after allocation ratio), times
``[scheduler] disk_weight_multiplier``."""

from __future__ import annotations

from scheduler.host_manager import HostState
from scheduler.request_spec import RequestSpec
from scheduler.weighers import BaseWeigher


class DiskWeigher(BaseWeigher):
    def multiplier(self) -> float:
        return self.conf.scheduler.disk_weight_multiplier

    def raw_weight(self, host: HostState, spec: RequestSpec) -> float:
        return host.free_disk_gb

    def raw_weights(self, hosts, spec):
        return [h.disk_gb * h.disk_allocation_ratio - h.disk_gb_used for h in hosts]
