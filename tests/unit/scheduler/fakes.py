"""Host states and request specs for scheduler unit tests."""

from __future__ import annotations

from scheduler.host_manager import HostState
from scheduler.scheduling_request import SchedulingRequest


def host(name: str = "h1", **kw) -> HostState:
    values = dict(host=name, vcpus=8, memory_mb=8192, disk_gb=100, vcpus_used=0,
                  memory_mb_used=0, disk_gb_used=0, cpu_allocation_ratio=1.0,
                  ram_allocation_ratio=1.0, disk_allocation_ratio=1.0,
                  hypervisor_type="QEMU", cpu_arch="x86_64", availability_zone=None,
                  generation=0, last_seen_at=None, service_up=True, service_disabled=False,
                  num_instances=0)
    values.update(kw)
    return HostState(**values)


def spec(memory_mb: int = 512, vcpus: int = 1, root_gb: int = 10, **kw) -> SchedulingRequest:
    base = {"flavor": {"memory_mb": memory_mb, "vcpus": vcpus, "root_gb": root_gb}}
    excluded = kw.pop("excluded_hosts", None)
    image = kw.pop("image", None)
    if image:
        base["image"] = {"id": "image", **image}
    base.update(kw)
    return SchedulingRequest.from_spec(base, excluded)
