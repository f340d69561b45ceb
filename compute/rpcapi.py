"""Client of a compute agent's RPC API (topic ``compute.<host>``).

Operations that change a guest are casts: the caller has already recorded
the intent and the agent reports progress through the conductor. Reads the
caller waits on (console, diagnostics) are calls. A cast to a host whose
agent has no queue raises MessageUndeliverable at once.

Each method sends the lowest version that has its form; ``version_cap``
(``[upgrade_levels] compute``) makes newer forms fall back or fail with
UnsupportedVersion.

Version history:

* 1.0 - build_and_run_instance, terminate_instance, reboot_instance,
  stop_instance, start_instance, pause_instance, unpause_instance,
  suspend_instance, resume_instance, get_console_output, get_diagnostics.
* 1.1 - build_and_run_instance takes an ImageMeta object (and reports
  through conductor build_done).
* 1.2 - snapshot_instance (reports through conductor snapshot_done) and
  rebuild_instance (reports through conductor rebuild_done).
* 1.3 - attach_volume, detach_volume, get_volume_devices (calls from the
  conductor's volume flows).
* 1.4 - live migration: check_can_live_migrate_source,
  check_can_live_migrate_destination, pre_live_migration,
  post_live_migration_at_destination, post_live_migration,
  rollback_live_migration_at_destination, find_guest (calls; migrate data
  as compute.virt.migration.MigrateData dicts); live_migration (a cast: the
  source reports with conductor migration_progress and
  live_migration_done), live_migration_abort, live_migration_force_complete.
* 1.5 - get_host_uptime, soft_delete_instance, restore_instance.
* 1.6 - resize and cold migration (calls from conductor/flows/resize.py):
  check_can_cold_migrate_source, check_can_cold_migrate_destination,
  resize_instance (a cast to the source: power off, send the disk; it
  reports with conductor resize_disk_done), finish_resize
  (destination: the new flavor), confirm_resize (source), revert_resize
  (destination), finish_revert_resize (source: the old flavor).
* 1.7 - build_and_run_instance takes ``block_device_mapping``
  (BlockDeviceMapping objects with their NBD connections: the boot volume
  and the volumes attached at boot; issue 11).
* 1.8 - pre_live_migration takes ``block_device_mapping`` (the volume
  disks the guest keeps across a live migration: their NBD connections
  and device names; issue 12).
* 1.9 - rebuild_instance takes ``block_device_mapping`` (an evacuated
  server's volumes, its root among them when it boots from one; issue 12).
* 1.10 - finish_resize and finish_revert_resize take ``block_device_mapping``
  (the volume disks a resized or cold-migrated server keeps: the same NBD
  exports, defined again on the destination, or on the source after a
  revert; issue 12).
* 1.11 - extend_volume (a call from the conductor's online extend flow: the
  running guest sees its attached volume at the new size; issue 11).
* 1.12 - reserve_volume_device (a call from the API's attach: the device
  the agent sets aside for the volume, shown in the attach's answer).
* 1.13 - attach_volume (and the block device mappings of the 1.7+ calls)
  honour the connection's ``read_only``: the disk gets ``<readonly/>`` (a
  volume made read-only with os-update_readonly_flag). An attach of a
  read-only connection is sent 1.13, so an older agent refuses it.
* 1.14 - set_guest_power (a call from the rebuild flow of a volume-backed
  server: the guest off while its root volume is re-imaged, or on again
  when that fails untouched); rebuild_instance takes ``volume_backed``
  (``image`` None: the guest is defined again around its root volume, the
  domain kept; compute 2.93).
"""

from __future__ import annotations

from conductor.rpcapi import image_1_1
from flotilla import exception, rpc
from flotilla.context import RequestContext
from flotilla.objects import ImageMeta
from flotilla.rpc.upgrade import VersionCap

TOPIC = "compute"


class ComputeAPI:
    VERSION = "1.14"

    def __init__(self, transport, version_cap: VersionCap = None) -> None:
        self.client = rpc.RPCClient(transport, topic=TOPIC, version="1.0",
                                    version_cap=version_cap)

    def _host(self, host: str, version: str = "1.0"):
        return self.client.prepare(server=host, version=version)

    def build_and_run_instance(self, ctxt: RequestContext, host: str,
                               instance_uuid: str, image: ImageMeta | None,
                               block_device_mapping: list | None = None) -> None:
        """Spawn the recorded instance from ``image`` (what to fetch) with
        the volume disks of ``block_device_mapping`` (needs 1.7); the agent
        reports the outcome with conductor build_done."""
        if block_device_mapping:
            self._host(host, "1.7").cast(ctxt, "build_and_run_instance",
                                         instance_uuid=instance_uuid, image=image,
                                         block_device_mapping=list(block_device_mapping))
            return
        if self.client.can_send_version("1.1"):
            self._host(host, "1.1").cast(ctxt, "build_and_run_instance",
                                         instance_uuid=instance_uuid, image=image)
            return
        self._host(host).cast(ctxt, "build_and_run_instance", instance_uuid=instance_uuid,
                              image=image_1_1(image) if image else None)

    def terminate_instance(self, ctxt: RequestContext, host: str,
                           instance_uuid: str) -> None:
        self._host(host).cast(ctxt, "terminate_instance", instance_uuid=instance_uuid)

    def reboot_instance(self, ctxt: RequestContext, host: str, instance_uuid: str,
                        reboot_type: str = "SOFT") -> None:
        self._host(host).cast(ctxt, "reboot_instance", instance_uuid=instance_uuid,
                              reboot_type=reboot_type)

    def stop_instance(self, ctxt: RequestContext, host: str, instance_uuid: str) -> None:
        self._host(host).cast(ctxt, "stop_instance", instance_uuid=instance_uuid)

    def start_instance(self, ctxt: RequestContext, host: str, instance_uuid: str) -> None:
        self._host(host).cast(ctxt, "start_instance", instance_uuid=instance_uuid)

    def pause_instance(self, ctxt: RequestContext, host: str, instance_uuid: str) -> None:
        self._host(host).cast(ctxt, "pause_instance", instance_uuid=instance_uuid)

    def unpause_instance(self, ctxt: RequestContext, host: str, instance_uuid: str) -> None:
        self._host(host).cast(ctxt, "unpause_instance", instance_uuid=instance_uuid)

    def suspend_instance(self, ctxt: RequestContext, host: str, instance_uuid: str) -> None:
        self._host(host).cast(ctxt, "suspend_instance", instance_uuid=instance_uuid)

    def resume_instance(self, ctxt: RequestContext, host: str, instance_uuid: str) -> None:
        self._host(host).cast(ctxt, "resume_instance", instance_uuid=instance_uuid)

    def snapshot_instance(self, ctxt: RequestContext, host: str, instance_uuid: str,
                          image_id: str, upload_url: str,
                          base_image: ImageMeta | None = None) -> None:
        """Copy the server's root disk (running or not, never pausing it)
        and upload it through ``upload_url`` (signed, one use) as the data
        of ``image_id``; ``base_image`` (id and sha256) is the image its
        disk was made from, whose cached copy is checked before use. The
        agent reports with conductor snapshot_done. Needs 1.2."""
        self._host(host, "1.2").cast(ctxt, "snapshot_instance",
                                     instance_uuid=instance_uuid, image_id=image_id,
                                     upload_url=upload_url, base_image=base_image)

    def rebuild_instance(self, ctxt: RequestContext, host: str, instance_uuid: str,
                         image: ImageMeta | None, power_on: bool = True,
                         block_device_mapping: list | None = None,
                         volume_backed: bool = False) -> None:
        """Replace the server's root disk with one from ``image`` (what to
        fetch) and start it when ``power_on``; a guest the host does not
        have (an evacuation) is spawned with the volume disks of
        ``block_device_mapping`` (needs 1.9; ``image`` None for a server
        booted from a volume). ``volume_backed``: a server booted from a
        volume keeps its guest, defined again around its (re-imaged) root
        volume; needs 1.14. The agent reports with conductor
        rebuild_done. Needs 1.2."""
        if volume_backed:
            self._host(host, "1.14").cast(ctxt, "rebuild_instance",
                                          instance_uuid=instance_uuid, image=None,
                                          power_on=power_on,
                                          block_device_mapping=list(block_device_mapping or ()),
                                          volume_backed=True)
            return
        if block_device_mapping:
            self._host(host, "1.9").cast(ctxt, "rebuild_instance",
                                         instance_uuid=instance_uuid, image=image,
                                         power_on=power_on,
                                         block_device_mapping=list(block_device_mapping))
            return
        self._host(host, "1.2").cast(ctxt, "rebuild_instance",
                                     instance_uuid=instance_uuid, image=image,
                                     power_on=power_on)

    def set_guest_power(self, ctxt: RequestContext, host: str, instance_uuid: str,
                        power_on: bool, timeout: float | None = None) -> int:
        """Power the rebuilding server's guest off (a clean shutdown, then
        destroyed) or on; its power state after. Needs 1.14."""
        return self.client.prepare(server=host, version="1.14", timeout=timeout).call(
            ctxt, "set_guest_power", instance_uuid=instance_uuid, power_on=power_on)

    def can_rebuild_volume_backed(self) -> bool:
        """Whether agents may be sent set_guest_power and a volume-backed
        rebuild_instance (1.14)."""
        return self.client.can_send_version("1.14")

    def attach_volume(self, ctxt: RequestContext, host: str, instance_uuid: str,
                      connection: dict, device_name: str | None = None) -> str:
        """Plug the export ``connection`` into the guest (live and
        persistent); the device name the agent chose. A read-only
        connection needs 1.13 (an older agent would plug it writable)."""
        version = "1.13" if connection.get("read_only") else "1.3"
        return self._host(host, version).call(ctxt, "attach_volume",
                                            instance_uuid=instance_uuid,
                                            connection=connection, device_name=device_name)

    def detach_volume(self, ctxt: RequestContext, host: str, instance_uuid: str,
                      volume_id: str, timeout: float) -> str | None:
        """Until the guest let go of the volume (up to ``timeout`` s); the
        device it had, None when it was not attached."""
        return self.client.prepare(server=host, version="1.3", timeout=timeout + 30).call(
            ctxt, "detach_volume", instance_uuid=instance_uuid, volume_id=volume_id,
            timeout=timeout)

    def reserve_volume_device(self, ctxt: RequestContext, host: str,
                              instance_uuid: str, volume_id: str) -> str | None:
        """The device the agent sets aside for ``volume_id`` in the guest
        (DeviceNameUnavailable when none is free); None when agents may
        not be sent 1.12 (the attach flow then lets the agent choose)."""
        if not self.client.can_send_version("1.12"):
            return None
        return self._host(host, "1.12").call(ctxt, "reserve_volume_device",
                                             instance_uuid=instance_uuid,
                                             volume_id=volume_id)

    def get_volume_devices(self, ctxt: RequestContext, host: str,
                           instance_uuid: str) -> dict:
        return self._host(host, "1.3").call(ctxt, "get_volume_devices",
                                            instance_uuid=instance_uuid)

    def extend_volume(self, ctxt: RequestContext, host: str, instance_uuid: str,
                      volume_id: str, new_size_bytes: int, timeout: float) -> None:
        """Until the running guest sees the volume at ``new_size_bytes``
        (the agent may take up to a minute to make its disk connect
        again). Needs 1.11."""
        self.client.prepare(server=host, version="1.11", timeout=timeout).call(
            ctxt, "extend_volume", instance_uuid=instance_uuid, volume_id=volume_id,
            new_size_bytes=new_size_bytes)

    def can_extend_volume(self) -> bool:
        """Whether agents may be sent extend_volume (1.11)."""
        return self.client.can_send_version("1.11")

    def can_attach_read_only(self) -> bool:
        """Whether agents may be sent a read-only volume connection (1.13)."""
        return self.client.can_send_version("1.13")

    # --- live migration (1.4) -------------------------------------------------------

    def check_can_live_migrate_source(self, ctxt: RequestContext, host: str,
                                      instance_uuid: str) -> dict:
        return self._host(host, "1.4").call(ctxt, "check_can_live_migrate_source",
                                            instance_uuid=instance_uuid)

    def check_can_live_migrate_destination(self, ctxt: RequestContext, host: str,
                                           instance_uuid: str, migrate_data: dict) -> dict:
        return self._host(host, "1.4").call(ctxt, "check_can_live_migrate_destination",
                                            instance_uuid=instance_uuid,
                                            migrate_data=migrate_data)

    def pre_live_migration(self, ctxt: RequestContext, host: str, instance_uuid: str,
                           image: ImageMeta | None, migrate_data: dict,
                           block_device_mapping: list | None = None) -> dict:
        """On the destination: directory, base image, overlay, the volume
        disks of ``block_device_mapping`` (needs 1.8), its own XML."""
        if block_device_mapping:
            return self._host(host, "1.8").call(
                ctxt, "pre_live_migration", instance_uuid=instance_uuid, image=image,
                migrate_data=migrate_data, block_device_mapping=list(block_device_mapping))
        return self._host(host, "1.4").call(ctxt, "pre_live_migration",
                                            instance_uuid=instance_uuid, image=image,
                                            migrate_data=migrate_data)

    def live_migration(self, ctxt: RequestContext, host: str, instance_uuid: str,
                       migration_uuid: str, migrate_data: dict) -> None:
        """On the source: run the job; reported with conductor
        live_migration_done (progress with migration_progress)."""
        self._host(host, "1.4").cast(ctxt, "live_migration", instance_uuid=instance_uuid,
                                     migration_uuid=migration_uuid,
                                     migrate_data=migrate_data)

    def post_live_migration_at_destination(self, ctxt: RequestContext, host: str,
                                           instance_uuid: str, migrate_data: dict) -> None:
        self._host(host, "1.4").call(ctxt, "post_live_migration_at_destination",
                                     instance_uuid=instance_uuid, migrate_data=migrate_data)

    def post_live_migration(self, ctxt: RequestContext, host: str, instance_uuid: str,
                            migrate_data: dict) -> None:
        self._host(host, "1.4").call(ctxt, "post_live_migration",
                                     instance_uuid=instance_uuid, migrate_data=migrate_data)

    def rollback_live_migration_at_destination(self, ctxt: RequestContext, host: str,
                                               instance_uuid: str,
                                               migrate_data: dict) -> None:
        self._host(host, "1.4").call(ctxt, "rollback_live_migration_at_destination",
                                     instance_uuid=instance_uuid, migrate_data=migrate_data)

    def live_migration_abort(self, ctxt: RequestContext, host: str,
                             instance_uuid: str) -> None:
        self._host(host, "1.4").call(ctxt, "live_migration_abort",
                                     instance_uuid=instance_uuid)

    def live_migration_force_complete(self, ctxt: RequestContext, host: str,
                                      instance_uuid: str) -> None:
        self._host(host, "1.4").call(ctxt, "live_migration_force_complete",
                                     instance_uuid=instance_uuid)

    def find_guest(self, ctxt: RequestContext, host: str, instance_uuid: str) -> dict:
        return self._host(host, "1.4").call(ctxt, "find_guest", instance_uuid=instance_uuid)

    def get_console_output(self, ctxt: RequestContext, host: str, instance_uuid: str,
                           length: int | None = None) -> str:
        return self._host(host).call(ctxt, "get_console_output",
                                     instance_uuid=instance_uuid, length=length)

    def get_diagnostics(self, ctxt: RequestContext, host: str, instance_uuid: str) -> dict:
        return self._host(host).call(ctxt, "get_diagnostics", instance_uuid=instance_uuid)

    def soft_delete_instance(self, ctxt: RequestContext, host: str,
                             instance_uuid: str) -> None:
        """Power the guest off and leave it soft-deleted (restorable)."""
        self._host(host, "1.5").cast(ctxt, "soft_delete_instance",
                                     instance_uuid=instance_uuid)

    def restore_instance(self, ctxt: RequestContext, host: str, instance_uuid: str) -> None:
        """Power a soft-deleted guest back on."""
        self._host(host, "1.5").cast(ctxt, "restore_instance", instance_uuid=instance_uuid)

    def get_host_uptime(self, ctxt: RequestContext, host: str) -> str:
        """The host's uptime(1) line; UnsupportedVersion under a cap below
        1.5 (an agent too old to answer)."""
        return self._host(host, "1.5").call(ctxt, "get_host_uptime")

    # --- resize and cold migration (1.6) ------------------------------------------

    def check_can_cold_migrate_source(self, ctxt: RequestContext, host: str,
                                      instance_uuid: str) -> dict:
        return self._host(host, "1.6").call(ctxt, "check_can_cold_migrate_source",
                                            instance_uuid=instance_uuid)

    def check_can_cold_migrate_destination(self, ctxt: RequestContext, host: str,
                                           instance_uuid: str, migrate_data: dict) -> dict:
        return self._host(host, "1.6").call(ctxt, "check_can_cold_migrate_destination",
                                            instance_uuid=instance_uuid,
                                            migrate_data=migrate_data)

    def resize_instance(self, ctxt: RequestContext, host: str, instance_uuid: str,
                        migration_uuid: str, migrate_data: dict) -> None:
        """On the source: power the guest off and send its disk to the
        destination (a cast: the agent reports with conductor
        resize_disk_done)."""
        self._host(host, "1.6").cast(ctxt, "resize_instance", instance_uuid=instance_uuid,
                                     migration_uuid=migration_uuid,
                                     migrate_data=migrate_data)

    def finish_resize(self, ctxt: RequestContext, host: str, instance_uuid: str,
                      flavor: dict, image: ImageMeta | None, migrate_data: dict,
                      power_on: bool = True, timeout: float = 600,
                      block_device_mapping: list | None = None) -> None:
        """On the destination: define (and start) the guest with ``flavor``
        and the volume disks of ``block_device_mapping`` (needs 1.10: an
        older agent would define it without them, so it is refused)."""
        if block_device_mapping:
            self._require_volume_moves()
            self.client.prepare(server=host, version="1.10", timeout=timeout).call(
                ctxt, "finish_resize", instance_uuid=instance_uuid, flavor=flavor,
                image=image, migrate_data=migrate_data, power_on=power_on,
                block_device_mapping=list(block_device_mapping))
            return
        self.client.prepare(server=host, version="1.6", timeout=timeout).call(
            ctxt, "finish_resize", instance_uuid=instance_uuid, flavor=flavor, image=image,
            migrate_data=migrate_data, power_on=power_on)

    def confirm_resize(self, ctxt: RequestContext, host: str, instance_uuid: str,
                       migrate_data: dict) -> None:
        """On the source: remove the copy kept for a revert."""
        self._host(host, "1.6").call(ctxt, "confirm_resize", instance_uuid=instance_uuid,
                                     migrate_data=migrate_data)

    def revert_resize(self, ctxt: RequestContext, host: str, instance_uuid: str,
                      migrate_data: dict) -> None:
        """On the destination: destroy the guest and the disk that arrived."""
        self._host(host, "1.6").call(ctxt, "revert_resize", instance_uuid=instance_uuid,
                                     migrate_data=migrate_data)

    def finish_revert_resize(self, ctxt: RequestContext, host: str, instance_uuid: str,
                             flavor: dict, migrate_data: dict, power_on: bool = True,
                             timeout: float = 600,
                             block_device_mapping: list | None = None) -> None:
        """On the source: the kept guest back with the old ``flavor`` and
        the volume disks of ``block_device_mapping`` (needs 1.10)."""
        if block_device_mapping:
            self._require_volume_moves()
            self.client.prepare(server=host, version="1.10", timeout=timeout).call(
                ctxt, "finish_revert_resize", instance_uuid=instance_uuid, flavor=flavor,
                migrate_data=migrate_data, power_on=power_on,
                block_device_mapping=list(block_device_mapping))
            return
        self.client.prepare(server=host, version="1.6", timeout=timeout).call(
            ctxt, "finish_revert_resize", instance_uuid=instance_uuid, flavor=flavor,
            migrate_data=migrate_data, power_on=power_on)

    def can_move_volumes_cold(self) -> bool:
        """Whether agents may be sent the 1.10 forms (a resize or cold
        migration of a server with volumes attached)."""
        return self.client.can_send_version("1.10")

    def _require_volume_moves(self) -> None:
        if not self.can_move_volumes_cold():
            raise exception.UnsupportedVersion(
                "compute agents capped below RPC 1.10 cannot resize or cold-migrate "
                "a server with volumes attached")
