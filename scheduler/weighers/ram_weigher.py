"""RAMWeigher: weight is the free RAM (after allocation ratio), times
``[scheduler] ram_weight_multiplier``."""

from __future__ import annotations

from scheduler.host_manager import HostState
from scheduler.scheduling_request import SchedulingRequest
from scheduler.weighers import BaseWeigher


class RAMWeigher(BaseWeigher):
    def multiplier(self) -> float:
        return self.conf.scheduler.ram_weight_multiplier

    def raw_weight(self, host: HostState, spec: SchedulingRequest) -> float:
        return host.free_ram_mb

    def raw_weights(self, hosts, spec):
        return [h.memory_mb * h.ram_allocation_ratio - h.memory_mb_used for h in hosts]
