"""One libvirt domain and its lifecycle primitives.

Each method is one libvirt operation (through :meth:`Host.call`) plus the
state check that makes it safe to repeat: destroying a stopped domain or
undefining a missing one is not an error here. Multi-step policies (soft
reboot with fallback, power off with timeout) live in the driver.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import libvirt
from lxml import etree

from compute.virt import power_state
from compute.virt.driver import InstanceInfo
from compute.virt.libvirt.host import Host
from flotilla import concurrency

_POWER_STATE = {
    libvirt.VIR_DOMAIN_NOSTATE: power_state.NOSTATE,
    libvirt.VIR_DOMAIN_RUNNING: power_state.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: power_state.RUNNING,   # idle, still running
    libvirt.VIR_DOMAIN_PAUSED: power_state.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: power_state.RUNNING,  # shutting down
    libvirt.VIR_DOMAIN_SHUTOFF: power_state.SHUTDOWN,
    libvirt.VIR_DOMAIN_CRASHED: power_state.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: power_state.SUSPENDED,
}

_UNDEFINE_FLAGS = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                   | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                   | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)


def _ignore(codes: set[int], fn: Callable, *args) -> None:
    try:
        fn(*args)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in codes:
            raise


class Guest:
    """A defined domain on a :class:`Host`."""

    def __init__(self, host: Host, domain: libvirt.virDomain) -> None:
        self.host = host
        self.domain = domain

    @property
    def uuid(self) -> str:
        return self.domain.UUIDString()

    # --- state ---------------------------------------------------------------

    def state(self) -> tuple[int, int]:
        """libvirt's (state, reason)."""
        return tuple(self.host.call(self.domain.state))

    def is_active(self) -> bool:
        return bool(self.host.call(self.domain.isActive))

    def has_managed_save(self) -> bool:
        return bool(self.host.call(self.domain.hasManagedSaveImage))

    def power_state(self) -> int:
        state, _reason = self.state()
        if (state == libvirt.VIR_DOMAIN_SHUTOFF and self.has_managed_save()):
            return power_state.SUSPENDED
        return _POWER_STATE.get(state, power_state.NOSTATE)

    def info(self) -> InstanceInfo:
        _state, max_mem, mem, vcpus, cpu_time = self.host.call(self.domain.info)
        return InstanceInfo(power_state=self.power_state(), memory_kb=mem,
                            max_memory_kb=max_mem, vcpus=vcpus,
                            cpu_time_ns=cpu_time)

    def wait_for(self, predicate: Callable[[int], bool], timeout: float,
                 poll: float = 0.2) -> bool:
        """Poll the power state until ``predicate(state)``; False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate(self.power_state()):
                return True
            if time.monotonic() >= deadline:
                return False
            concurrency.sleep(min(poll, max(0.0, deadline - time.monotonic())))

    # --- operations ----------------------------------------------------------

    def start(self) -> None:
        """Start (or restore from managed save) unless already running."""
        if not self.is_active():
            self.host.call(self.domain.create)

    def shutdown(self) -> None:
        """Ask the guest OS to shut down (ACPI power button)."""
        try:
            _ignore({libvirt.VIR_ERR_OPERATION_INVALID}, self.host.call,
                    self.domain.shutdownFlags,
                    libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in (libvirt.VIR_ERR_INVALID_ARG,
                                            libvirt.VIR_ERR_NO_SUPPORT):
                raise
            # No ACPI flag (the test driver): the hypervisor's default way.
            _ignore({libvirt.VIR_ERR_OPERATION_INVALID}, self.host.call,
                    self.domain.shutdown)

    def destroy(self) -> None:
        """Pull the plug; nothing to do when it is not running."""
        _ignore({libvirt.VIR_ERR_OPERATION_INVALID, libvirt.VIR_ERR_NO_DOMAIN},
                self.host.call, self.domain.destroy)

    def undefine(self) -> None:
        """Remove the definition with its managed save image and snapshot
        metadata; nothing to do when it is gone already."""
        try:
            self.host.call(self.domain.undefineFlags, _UNDEFINE_FLAGS)
        except libvirt.libvirtError as exc:
            code = exc.get_error_code()
            if code == libvirt.VIR_ERR_NO_DOMAIN:
                return
            if code not in (libvirt.VIR_ERR_INVALID_ARG,
                            libvirt.VIR_ERR_NO_SUPPORT):
                raise
            # A driver that knows fewer flags (the test driver and NVRAM).
            self.host.call(self.domain.undefineFlags,
                           libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)

    def pause(self) -> None:
        self.host.call(self.domain.suspend)

    def unpause(self) -> None:
        self.host.call(self.domain.resume)

    def managed_save(self) -> None:
        self.host.call(self.domain.managedSave)

    # --- inspection ----------------------------------------------------------

    def xml(self) -> etree._Element:
        return etree.fromstring(self.host.call(self.domain.XMLDesc).encode())

    def devices(self) -> tuple[list[str], list[str]]:
        """Target names of the disks and of the NICs."""
        root = self.xml()
        disks = [t.get("dev") for t in root.findall("devices/disk/target")]
        nics = [t.get("dev") for t in root.findall("devices/interface/target")]
        return [d for d in disks if d], [n for n in nics if n]

    def block_stats(self, dev: str) -> dict:
        rd_req, rd_bytes, wr_req, wr_bytes, errs = self.host.call(
            self.domain.blockStats, dev)
        return {"read_requests": rd_req, "read_bytes": rd_bytes,
                "write_requests": wr_req, "write_bytes": wr_bytes,
                "errors": errs}

    def interface_stats(self, dev: str) -> dict:
        keys = ("rx_bytes", "rx_packets", "rx_errors", "rx_drop",
                "tx_bytes", "tx_packets", "tx_errors", "tx_drop")
        return dict(zip(keys, self.host.call(self.domain.interfaceStats, dev),
                        strict=True))

    def memory_stats(self) -> dict:
        return dict(self.host.call(self.domain.memoryStats))
