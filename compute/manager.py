"""The compute agent's RPC endpoint (topic ``compute.<host>``).

Thin: each RPC method names the operation and hands it to
:class:`compute.lifecycle.Lifecycle`, which owns the state rules. The agent
never opens the database; the conductor does every write for it.
"""

from __future__ import annotations

import logging

from oslo_config import cfg

from compute.lifecycle import Lifecycle
from compute.ops.live_migration import LiveMigrationOps
from compute.ops.rebuild import RebuildOps
from compute.ops.resize import ResizeOps
from compute.ops.snapshot import SnapshotOps
from compute.ops.volumes import VolumeOps
from compute.reconcile import Reconciler
from compute.virt import driver as virt_driver
from compute.virt import power_state
from conductor.rpcapi import ConductorAPI
from flotilla import concurrency, exception
from flotilla import states as st
from flotilla.context import RequestContext, get_admin_context
from flotilla.objects import ImageMeta, Instance
from flotilla.periodic import periodic_task
from flotilla.rpc import private
from flotilla.rpc.retry import call_with_retry

LOG = logging.getLogger(__name__)

# Inventory a compute node reports; usage follows the scheduler's claims.
_REPORTED = ("vcpus", "memory_mb", "disk_gb", "hypervisor_type",
             "hypervisor_version", "hypervisor_hostname", "cpu_arch")


class ComputeManager:
    RPC_API_VERSION = "1.13"

    def __init__(self, conf: cfg.ConfigOpts, driver: virt_driver.ComputeDriver,
                 conductor: ConductorAPI, host: str | None = None) -> None:
        self.conf = conf
        self.host = host or conf.host
        self.driver = driver
        self.conductor = conductor
        self.lifecycle = Lifecycle(self.host, driver, conductor)
        self.snapshots = SnapshotOps(conf, self.lifecycle)
        self.rebuilds = RebuildOps(self.lifecycle)
        self.live_migrations = LiveMigrationOps(conf, self.lifecycle)
        self.resizes = ResizeOps(conf, self.lifecycle)
        self.reconciler = Reconciler(self.lifecycle, self.snapshots, self.rebuilds,
                                     self.live_migrations)
        self.volumes = VolumeOps(self.lifecycle, self.reconciler)
        self._build_slots = concurrency.WorkerPool(conf.compute.max_concurrent_builds,
                                                   name="build")

    # --- service hooks --------------------------------------------------------

    @private
    def init_host(self) -> None:
        self.driver.init_host(self.host)
        self._wait_for_conductor()
        self.reconciler.init_host()
        self.volumes.remove_orphan_disks(get_admin_context())   # issue 11 faults
        self.volumes.resume_io_error_paused(get_admin_context())   # online extend
        self.reconciler.start_event_worker()
        self.update_available_resource()

    @private
    def after_start(self) -> None:
        """Called once this agent consumes its queue."""
        self.reconciler.after_start()

    def _wait_for_conductor(self) -> None:
        # Agents often start before the conductor (or with it restarting):
        # wait for it, as long as it takes, rather than exit.
        call_with_retry(
            lambda: self.conductor.instance_get_all_by_host(get_admin_context(), self.host),
            retry_on=(exception.MessageUndeliverable, exception.MessagingTimeout),
            max_delay=10, deadline=None, what="reaching the conductor",
            where="topic conductor", initial_delay=0.5)

    @private
    def cleanup_host(self) -> None:
        self.reconciler.stop_event_worker()
        self._build_slots.shutdown(timeout=self.conf.graceful_shutdown_timeout)
        self.snapshots.shutdown(timeout=self.conf.graceful_shutdown_timeout)
        self.live_migrations.shutdown(timeout=self.conf.graceful_shutdown_timeout)
        self.resizes.shutdown(timeout=self.conf.graceful_shutdown_timeout)
        self.driver.cleanup_host()

    # --- RPC: operations (casts) ----------------------------------------------

    def build_and_run_instance(self, ctxt: RequestContext, instance_uuid: str,
                               image: ImageMeta | dict | None,
                               block_device_mapping: list | None = None) -> None:
        # Bounded: at most [compute] max_concurrent_builds spawns at once.
        self._build_slots.submit(self.lifecycle.build, ctxt, instance_uuid, image,
                                 block_device_mapping).result()

    def terminate_instance(self, ctxt: RequestContext, instance_uuid: str) -> None:
        self.lifecycle.terminate(ctxt, instance_uuid)

    def reboot_instance(self, ctxt: RequestContext, instance_uuid: str,
                        reboot_type: str = virt_driver.SOFT) -> None:
        if reboot_type not in virt_driver.REBOOT_TYPES:
            raise exception.Invalid(reason="reboot_type must be SOFT or HARD")
        op = st.operation("reboot_soft" if reboot_type == virt_driver.SOFT else "reboot_hard")
        self.lifecycle.run(ctxt, op, instance_uuid,
                           lambda inst: self.driver.reboot(inst, reboot_type))

    def stop_instance(self, ctxt: RequestContext, instance_uuid: str) -> None:
        self.lifecycle.run(ctxt, st.operation("stop"), instance_uuid, self.driver.power_off)

    def start_instance(self, ctxt: RequestContext, instance_uuid: str) -> None:
        self.lifecycle.run(ctxt, st.operation("start"), instance_uuid, self.driver.power_on)

    def soft_delete_instance(self, ctxt: RequestContext, instance_uuid: str) -> None:
        self.lifecycle.run(ctxt, st.operation("soft_delete"), instance_uuid,
                           self._power_off_if_running)

    def restore_instance(self, ctxt: RequestContext, instance_uuid: str) -> None:
        self.lifecycle.run(ctxt, st.operation("restore"), instance_uuid,
                           self.driver.power_on)

    def _power_off_if_running(self, instance: Instance) -> None:
        # A soft delete keeps the guest defined but stopped, whatever state
        # it was in (a stopped guest has nothing to power off).
        if self.driver.get_info(instance).power_state != power_state.SHUTDOWN:
            self.driver.power_off(instance)

    def pause_instance(self, ctxt: RequestContext, instance_uuid: str) -> None:
        self.lifecycle.run(ctxt, st.operation("pause"), instance_uuid, self.driver.pause)

    def unpause_instance(self, ctxt: RequestContext, instance_uuid: str) -> None:
        self.lifecycle.run(ctxt, st.operation("unpause"), instance_uuid, self.driver.unpause)

    def suspend_instance(self, ctxt: RequestContext, instance_uuid: str) -> None:
        self.lifecycle.run(ctxt, st.operation("suspend"), instance_uuid, self.driver.suspend)

    def resume_instance(self, ctxt: RequestContext, instance_uuid: str) -> None:
        self.lifecycle.run(ctxt, st.operation("resume"), instance_uuid, self.driver.resume)

    def snapshot_instance(self, ctxt: RequestContext, instance_uuid: str, image_id: str,
                          upload_url: str, base_image: ImageMeta | dict | None = None
                          ) -> None:
        # Runs on the snapshot pool: an upload may take minutes.
        self.snapshots.start(ctxt, instance_uuid, image_id, upload_url, base_image)

    def rebuild_instance(self, ctxt: RequestContext, instance_uuid: str,
                         image: ImageMeta | dict | None, power_on: bool = True,
                         block_device_mapping: list | None = None) -> None:
        # A rebuild fetches an image and boots: it shares the build slots.
        self._build_slots.submit(self.rebuilds.rebuild, ctxt, instance_uuid, image,
                                 power_on, block_device_mapping).result()

    # --- RPC: volumes (calls from the conductor's attach and detach flows) ----

    def attach_volume(self, ctxt: RequestContext, instance_uuid: str, connection: dict,
                      device_name: str | None = None) -> str:
        return self.volumes.attach(ctxt, instance_uuid, connection, device_name)

    def detach_volume(self, ctxt: RequestContext, instance_uuid: str, volume_id: str,
                      timeout: float = 30) -> str | None:
        return self.volumes.detach(ctxt, instance_uuid, volume_id, timeout)

    def reserve_volume_device(self, ctxt: RequestContext, instance_uuid: str,
                              volume_id: str) -> str:
        """1.12, a call from the API before an attach: the device the
        volume will take (the attach flow then asks for it)."""
        return self.volumes.reserve_device(ctxt, instance_uuid, volume_id)

    def get_volume_devices(self, ctxt: RequestContext, instance_uuid: str) -> dict:
        return self.driver.get_volume_devices(self._local_instance(ctxt, instance_uuid))

    def extend_volume(self, ctxt: RequestContext, instance_uuid: str, volume_id: str,
                      new_size_bytes: int) -> None:
        """1.11, a call from the conductor's extend flow: the running guest
        sees its attached volume grown (the volume host serves it so)."""
        self.volumes.extend(ctxt, instance_uuid, volume_id, new_size_bytes)

    # --- RPC: live migration (1.4; see compute/ops/live_migration.py) -------------

    def check_can_live_migrate_source(self, ctxt: RequestContext,
                                      instance_uuid: str) -> dict:
        return self.live_migrations.check_source(ctxt, instance_uuid)

    def check_can_live_migrate_destination(self, ctxt: RequestContext, instance_uuid: str,
                                           migrate_data: dict) -> dict:
        return self.live_migrations.check_destination(ctxt, instance_uuid, migrate_data)

    def pre_live_migration(self, ctxt: RequestContext, instance_uuid: str,
                           image: ImageMeta | dict | None, migrate_data: dict,
                           block_device_mapping: list | None = None) -> dict:
        return self.live_migrations.prepare(ctxt, instance_uuid, image, migrate_data,
                                            block_device_mapping)

    def live_migration(self, ctxt: RequestContext, instance_uuid: str,
                       migration_uuid: str, migrate_data: dict) -> None:
        self.live_migrations.start(ctxt, instance_uuid, migration_uuid, migrate_data)

    def post_live_migration_at_destination(self, ctxt: RequestContext, instance_uuid: str,
                                           migrate_data: dict) -> None:
        self.live_migrations.finish_at_destination(ctxt, instance_uuid, migrate_data)

    def post_live_migration(self, ctxt: RequestContext, instance_uuid: str,
                            migrate_data: dict) -> None:
        self.live_migrations.finish_at_source(ctxt, instance_uuid, migrate_data)

    def rollback_live_migration_at_destination(self, ctxt: RequestContext,
                                               instance_uuid: str,
                                               migrate_data: dict) -> None:
        self.live_migrations.rollback_at_destination(ctxt, instance_uuid, migrate_data)

    def live_migration_abort(self, ctxt: RequestContext, instance_uuid: str) -> None:
        self.live_migrations.abort(ctxt, instance_uuid)

    def live_migration_force_complete(self, ctxt: RequestContext,
                                      instance_uuid: str) -> None:
        self.live_migrations.force_complete(ctxt, instance_uuid)

    def find_guest(self, ctxt: RequestContext, instance_uuid: str) -> dict:
        """Whether this host holds the guest (after a crash: where it runs)."""
        instance = Instance.from_record(self.conductor.instance_get(ctxt, instance_uuid))
        presence = self.driver.find_guest(instance)
        return {"defined": presence.defined, "power_state": presence.power_state,
                "migration": presence.migration}

    # --- RPC: resize and cold migration (1.6, volumes 1.10; compute/ops/resize.py) -

    def check_can_cold_migrate_source(self, ctxt: RequestContext,
                                      instance_uuid: str) -> dict:
        return self.resizes.check_source(ctxt, instance_uuid)

    def check_can_cold_migrate_destination(self, ctxt: RequestContext, instance_uuid: str,
                                           migrate_data: dict) -> dict:
        return self.resizes.check_destination(ctxt, instance_uuid, migrate_data)

    def resize_instance(self, ctxt: RequestContext, instance_uuid: str,
                        migration_uuid: str, migrate_data: dict) -> None:
        self.resizes.start(ctxt, instance_uuid, migration_uuid, migrate_data)

    def finish_resize(self, ctxt: RequestContext, instance_uuid: str, flavor: dict,
                      image: ImageMeta | dict | None, migrate_data: dict,
                      power_on: bool = True,
                      block_device_mapping: list | None = None) -> None:
        self.resizes.finish(ctxt, instance_uuid, flavor, image, migrate_data, power_on,
                            block_device_mapping)

    def confirm_resize(self, ctxt: RequestContext, instance_uuid: str,
                       migrate_data: dict) -> None:
        self.resizes.confirm(ctxt, instance_uuid, migrate_data)

    def revert_resize(self, ctxt: RequestContext, instance_uuid: str,
                      migrate_data: dict) -> None:
        self.resizes.revert_at_destination(ctxt, instance_uuid, migrate_data)

    def finish_revert_resize(self, ctxt: RequestContext, instance_uuid: str, flavor: dict,
                             migrate_data: dict, power_on: bool = True,
                             block_device_mapping: list | None = None) -> None:
        self.resizes.finish_revert(ctxt, instance_uuid, flavor, migrate_data, power_on,
                                   block_device_mapping)

    # --- RPC: reads (calls) -----------------------------------------------------

    def get_console_output(self, ctxt: RequestContext, instance_uuid: str,
                           length: int | None = None) -> str:
        instance = self._local_instance(ctxt, instance_uuid)
        if not self.driver.capabilities.supports_console_log:
            raise exception.NotSupported(operation="console output",
                                         what="this host's hypervisor")
        output = self.driver.get_console_output(instance)
        if length is not None and length >= 0:
            output = "\n".join(output.splitlines()[-length:]) if length else ""
        return output

    def get_diagnostics(self, ctxt: RequestContext, instance_uuid: str) -> dict:
        return self.driver.get_diagnostics(self._local_instance(ctxt, instance_uuid))

    def get_host_uptime(self, ctxt: RequestContext) -> str:
        return self.driver.get_host_uptime()

    def _local_instance(self, ctxt, instance_uuid: str) -> Instance:
        record = self.conductor.instance_get(ctxt, instance_uuid)
        if record.get("host") != self.host:
            raise exception.InstanceNotFound(instance_uuid=instance_uuid)
        return Instance.from_record(record)

    # --- periodic tasks -----------------------------------------------------------

    @periodic_task(spacing=lambda self: self.conf.compute.resource_report_interval)
    def update_available_resource(self) -> None:
        resources = self.driver.get_available_resource()
        report = {k: resources[k] for k in _REPORTED if k in resources}
        # The node is named after the agent's host: two agents on libvirt's
        # test driver (or two rig hosts) would otherwise share a name.
        report["hypervisor_hostname"] = self.host
        report["running_vms"] = len(self.driver.list_instances())
        if self.conductor.can_report_capabilities():
            # What the API asks before it lets a feature through (1.11).
            report["capabilities"] = virt_driver.capability_names(self.driver.capabilities)
        self.conductor.compute_node_update(get_admin_context(), self.host, report)

    @periodic_task(spacing=lambda self: self.conf.compute.sync_power_state_interval)
    def sync_power_states(self) -> None:
        self.reconciler.sync_power_states()

    @periodic_task(spacing=lambda self: self.conf.compute.image_cache_manager_interval)
    def manage_image_cache(self) -> None:
        removed = self.driver.manage_image_cache()
        if removed:
            LOG.info("removed %d unused base images", len(removed))

