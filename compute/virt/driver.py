"""The virt driver interface: what the compute agent may ask of a hypervisor.

Rules every driver follows:

* Instances are :class:`flotilla.objects.Instance` (or its record form,
  accepted through ``Instance.coerce``); images are ``ImageMeta``.
* Methods block until the operation is done and may take seconds; the agent
  calls them from a worker, never from its RPC loop. A driver sends every
  blocking hypervisor call through ``flotilla.concurrency.run_blocking``.
* Failures raise :mod:`flotilla.exception` classes: ``InstanceNotFound`` when
  the guest does not exist (except where a method says it is idempotent),
  ``HypervisorUnavailable`` when the hypervisor cannot be reached,
  ``NotSupported`` for what this driver or hypervisor cannot do. Callers
  check :attr:`ComputeDriver.capabilities` first rather than catching it.
* A driver never calls back into a manager or the database; it reports power
  changes through the listener given to :meth:`register_event_listener`.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any

from compute.virt.events import EventListener
from flotilla.objects import ImageMeta, Instance

SOFT = "SOFT"
HARD = "HARD"
REBOOT_TYPES = (SOFT, HARD)


@dataclasses.dataclass(frozen=True)
class DriverCapabilities:
    """What a driver can do, so callers ask instead of catching errors."""

    supports_pause: bool = True
    supports_suspend: bool = True
    supports_soft_reboot: bool = True
    supports_acpi_shutdown: bool = True
    supports_console_log: bool = False
    supports_diagnostics: bool = False
    supports_image_cache: bool = False
    supports_attach: bool = False
    supports_live_migration: bool = False
    supports_snapshots: bool = False


@dataclasses.dataclass(frozen=True)
class InstanceInfo:
    """A guest's state as the hypervisor reports it right now."""

    power_state: int      # compute.virt.power_state
    memory_kb: int        # current memory
    max_memory_kb: int
    vcpus: int
    cpu_time_ns: int      # CPU time used since the guest started

    @property
    def memory_mb(self) -> int:
        return self.memory_kb // 1024


class ComputeDriver(abc.ABC):
    """A hypervisor as the compute agent drives it."""

    #: Overridden per driver (and per connection: libvirt's test driver can
    #: do less than QEMU).
    capabilities: DriverCapabilities = DriverCapabilities()

    @abc.abstractmethod
    def init_host(self, host: str) -> None:
        """Connect to the hypervisor of ``host`` (the agent's [DEFAULT] host).

        Called once before any other method; raises HypervisorUnavailable
        when the hypervisor cannot be reached.
        """

    def cleanup_host(self) -> None:  # noqa: B027 - optional hook
        """Release connections and threads; the driver is not used after."""

    @abc.abstractmethod
    def spawn(self, instance: Instance, image_meta: ImageMeta | None,
              network_info: list | None = None) -> None:
        """Create the guest with a root disk from ``image_meta`` and start it.

        Returns once the guest runs. All or nothing: on any failure whatever
        was created (disk, definition, directory) is removed and
        InstanceDeployFailure (or ImageChecksumMismatch, with the original
        cause) is raised. A guest of the same uuid that already exists is an
        InstanceDeployFailure, never replaced.
        """

    @abc.abstractmethod
    def destroy(self, instance: Instance) -> None:
        """Stop the guest at once and delete it with its disks and files.

        Idempotent: a guest that does not exist (or only partly exists)
        is not an error, and a second call does nothing.
        """

    @abc.abstractmethod
    def reboot(self, instance: Instance, reboot_type: str = SOFT) -> None:
        """Restart the guest; it runs again when this returns.

        SOFT asks the OS to shut down (ACPI) and starts the guest again once
        it is off, falling back to HARD after [compute] reboot_timeout.
        HARD resets the guest at once. A guest that is shut off is started.
        """

    @abc.abstractmethod
    def power_off(self, instance: Instance, timeout: int | None = None,
                  retry_interval: int | None = None) -> None:
        """Shut the guest off; it exists but does not run when this returns.

        Sends ACPI shutdown requests every ``retry_interval`` seconds and,
        once ``timeout`` seconds passed (defaults: [compute]
        shutdown_timeout and shutdown_retry_interval), pulls the plug.
        ``timeout=0`` pulls the plug at once. A guest already off is fine.
        """

    @abc.abstractmethod
    def power_on(self, instance: Instance) -> None:
        """Start a shut-off guest (restoring a suspended one). A running
        guest is left alone."""

    @abc.abstractmethod
    def pause(self, instance: Instance) -> None:
        """Freeze the guest's vCPUs; its memory stays in the host's RAM."""

    @abc.abstractmethod
    def unpause(self, instance: Instance) -> None:
        """Let a paused guest run again."""

    @abc.abstractmethod
    def suspend(self, instance: Instance) -> None:
        """Save the guest's memory to disk and stop it (power_state
        SUSPENDED); :meth:`resume` brings it back where it was."""

    @abc.abstractmethod
    def resume(self, instance: Instance) -> None:
        """Restore a suspended guest; it runs when this returns."""

    @abc.abstractmethod
    def get_info(self, instance: Instance) -> InstanceInfo:
        """The guest's current power state and size; InstanceNotFound when
        it does not exist."""

    @abc.abstractmethod
    def list_instances(self) -> list[str]:
        """UUIDs of the guests this driver manages on this host, running or
        not (guests the operator created by other means are left out)."""

    @abc.abstractmethod
    def get_console_output(self, instance: Instance) -> str:
        """The tail of the guest's serial console (bounded size, decoded
        leniently). NotSupported unless capabilities.supports_console_log."""

    @abc.abstractmethod
    def get_diagnostics(self, instance: Instance) -> dict[str, Any]:
        """Counters of the guest: ``{"state", "cpu_time_ns", "memory_kb",
        "disks": {dev: {read_bytes, write_bytes, read_requests,
        write_requests, errors}}, "interfaces": {dev: {rx_bytes, rx_packets,
        tx_bytes, tx_packets, ...}}, "memory": {...}}``; sections the
        hypervisor cannot report are empty."""

    @abc.abstractmethod
    def get_available_resource(self) -> dict[str, Any]:
        """This host's resources for the resource tracker: ``vcpus``,
        ``memory_mb``, ``disk_gb`` (totals), ``vcpus_used``,
        ``memory_mb_used``, ``disk_gb_used``, ``hypervisor_type``,
        ``hypervisor_version`` (int), ``hypervisor_hostname``,
        ``cpu_arch``."""

    @abc.abstractmethod
    def register_event_listener(self, callback: EventListener | None) -> None:
        """Send every guest lifecycle event to ``callback`` (None stops).

        The callback runs on a driver thread and must return quickly.
        """

    def manage_image_cache(self) -> list[str]:
        """Remove cached base images no guest uses any more and that are
        older than the configured age; returns what was removed. Drivers
        without an image cache remove nothing."""
        return []
