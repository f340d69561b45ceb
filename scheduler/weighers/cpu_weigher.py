"""CPUWeigher: weight is the free vCPUs (after allocation ratio), times
``[scheduler] cpu_weight_multiplier``."""

from __future__ import annotations

from scheduler.host_manager import HostState
from scheduler.scheduling_request import SchedulingRequest
from scheduler.weighers import BaseWeigher


class CPUWeigher(BaseWeigher):
    def multiplier(self) -> float:
        return self.conf.scheduler.cpu_weight_multiplier

    def raw_weight(self, host: HostState, spec: SchedulingRequest) -> float:
        return host.free_vcpus

    def raw_weights(self, hosts, spec):
        return [h.vcpus * h.cpu_allocation_ratio - h.vcpus_used for h in hosts]
