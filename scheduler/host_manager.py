"""Host state for scheduling, read from the database and kept between requests.

Rules:

* States are cached per scheduler process and brought up to date at each
  request with ONE query for the compute nodes changed since the last read
  (every claim, free and report moves a node's ``updated_at``), so a request
  at 10,000 hosts reads a handful of rows instead of all of them. Liveness
  (heartbeats change every ``report_interval``) is re-read whole every
  ``[scheduler] host_liveness_refresh`` seconds, and everything every
  ``[scheduler] host_state_full_refresh`` seconds, which also picks up
  deleted nodes and any write that committed out of timestamp order.
* A stale view is safe: a claim is made on the generation the decision used,
  so a decision on old data loses its claim and the host is re-read; and a
  request refused on the cached view is decided again on a full read before
  NoValidHost is raised (capacity freed meanwhile is not missed).
* Free capacity applies the allocation ratios: ``total * ratio - used``.
* A host whose compute service never reported is kept, marked down: the
  ComputeFilter removes it and says so in the NoValidHost reason.
* Callers hold the scheduler's lock: the cached states are updated in place
  by claims (to what the database then holds).
"""

from __future__ import annotations

import dataclasses
import datetime
import time

from flotilla.db import scheduling as sched_db
from flotilla.db.types import utcnow

# Writes commit in a different order than their timestamps were taken (a
# writer waits for the lock after stamping): re-read this far back.
_COMMIT_SLACK = datetime.timedelta(seconds=2)


@dataclasses.dataclass(slots=True, eq=False)
class HostState:
    host: str
    vcpus: int
    memory_mb: int
    disk_gb: int
    vcpus_used: int
    memory_mb_used: int
    disk_gb_used: int
    cpu_allocation_ratio: float
    ram_allocation_ratio: float
    disk_allocation_ratio: float
    hypervisor_type: str | None
    cpu_arch: str | None
    availability_zone: str | None
    generation: int
    last_seen_at: datetime.datetime | None
    service_disabled: bool
    num_instances: int
    changed_at: datetime.datetime | None = None
    service_up: bool = False    # set from last_seen_at at each request

    @property
    def free_ram_mb(self) -> float:
        return self.memory_mb * self.ram_allocation_ratio - self.memory_mb_used

    @property
    def free_vcpus(self) -> float:
        return self.vcpus * self.cpu_allocation_ratio - self.vcpus_used

    @property
    def free_disk_gb(self) -> float:
        return self.disk_gb * self.disk_allocation_ratio - self.disk_gb_used

    def consume(self, resources: dict[str, int], generation: int | None = None) -> None:
        """Account a claim made on this host during the current request."""
        self.vcpus_used += resources.get("vcpus", 0)
        self.memory_mb_used += resources.get("memory_mb", 0)
        self.disk_gb_used += resources.get("disk_gb", 0)
        self.num_instances += 1
        if generation is not None:
            self.generation = generation


def state_from_row(row) -> HostState:
    (host, vcpus, memory_mb, disk_gb, vcpus_used, memory_mb_used, disk_gb_used,
     cpu_ratio, ram_ratio, disk_ratio, hv_type, arch, az, generation,
     last_seen, disabled, count, changed_at) = row
    return HostState(host, vcpus or 0, memory_mb or 0, disk_gb or 0,
                     vcpus_used or 0, memory_mb_used or 0, disk_gb_used or 0,
                     cpu_ratio, ram_ratio, disk_ratio, hv_type, arch, az,
                     generation, last_seen, bool(disabled), count or 0, changed_at)


class HostManager:
    """The cached :class:`HostState` s of one scheduler; see the module rules."""

    def __init__(self, down_time: float, full_refresh: float = 10.0,
                 liveness_refresh: float = 2.0) -> None:
        self.down_time = down_time
        self.full_refresh = full_refresh
        self.liveness_refresh = liveness_refresh
        self._states: dict[str, HostState] = {}
        self._watermark: datetime.datetime | None = None
        self._full_at = float("-inf")
        self._liveness_at = float("-inf")

    def get_host_states(self, fresh: bool = False) -> list[HostState]:
        """Every host, up to date; ``fresh`` forces a full read."""
        now = time.monotonic()
        if fresh or now - self._full_at >= self.full_refresh:
            self._states = {}
            self._watermark = None
            self._apply(sched_db.host_state_rows())
            self._full_at = self._liveness_at = now
        else:
            since = self._watermark - _COMMIT_SLACK if self._watermark else None
            self._apply(sched_db.host_state_rows(changed_since=since))
            if now - self._liveness_at >= self.liveness_refresh:
                for host, last_seen, disabled in sched_db.compute_service_liveness():
                    state = self._states.get(host)
                    if state is not None:
                        state.last_seen_at, state.service_disabled = last_seen, bool(disabled)
                self._liveness_at = now
        threshold = utcnow() - datetime.timedelta(seconds=self.down_time)
        for state in self._states.values():
            state.service_up = state.last_seen_at is not None \
                and state.last_seen_at >= threshold
        return list(self._states.values())

    def _apply(self, rows) -> None:
        for row in rows:
            state = state_from_row(row)
            self._states[state.host] = state
            if state.changed_at is not None and (
                    self._watermark is None or state.changed_at > self._watermark):
                self._watermark = state.changed_at

    def refresh(self, host: str) -> HostState | None:
        """The current state of one host (after a lost claim)."""
        row = sched_db.host_state_row(host)
        if row is None:
            return None
        state = state_from_row(row)
        state.service_up = state.last_seen_at is not None and state.last_seen_at >= (
            utcnow() - datetime.timedelta(seconds=self.down_time))
        return state
