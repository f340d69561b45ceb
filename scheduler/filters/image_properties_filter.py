"""ImagePropertiesFilter: the host can run the image.

* ``arch`` property: equals the host's cpu_arch (x86_64 also written amd64);
* ``hypervisor_type`` property: equals the host's hypervisor type
  (case-insensitive; QEMU and KVM hosts both report ``QEMU`` in libvirt);
* ``min_ram`` / ``min_disk``: the flavor is at least that big. This does
  not depend on the host, so every host is eliminated, and the reason says
  it was this filter.

A property the host does not report (None) does not eliminate it.
"""

from __future__ import annotations

from scheduler.filters import BaseHostFilter
from scheduler.host_manager import HostState
from scheduler.scheduling_request import SchedulingRequest

_ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}


def _arch(value: str) -> str:
    value = value.lower()
    return _ARCH_ALIASES.get(value, value)


class ImagePropertiesFilter(BaseHostFilter):
    def run_filter_for_request(self, spec: SchedulingRequest) -> bool:
        props = spec.image_properties
        return bool(props.get("arch") or props.get("hypervisor_type")
                    or spec.image_min_ram or spec.image_min_disk)

    def host_passes(self, host: HostState, spec: SchedulingRequest) -> bool:
        if spec.image_min_ram > spec.memory_mb or spec.image_min_disk > spec.disk_gb:
            return False
        props = spec.image_properties
        arch = props.get("arch")
        if arch and host.cpu_arch and _arch(arch) != _arch(host.cpu_arch):
            return False
        hv_type = props.get("hypervisor_type")
        if hv_type and host.hypervisor_type and \
                hv_type.lower() != host.hypervisor_type.lower():
            return False
        return True
