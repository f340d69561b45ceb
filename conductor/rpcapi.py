"""Client of the conductor's RPC API (topic ``conductor``).

Compute agents never open the database: every write they need goes through
these calls, so a compromised hypervisor host cannot read or rewrite the
whole cloud. Each method sends the lowest version that has its form;
``version_cap`` (``[upgrade_levels] conductor``) makes newer forms fall
back or fail with UnsupportedVersion naming what needs the upgrade.

Version history:

* 1.0 - service_heartbeat, instance_get, instance_get_all_by_host,
  instance_update (compare-and-swap), instance_destroy, instance_fault_create,
  action_event_start, action_event_finish, compute_node_update.
* 1.1 - build_instances, build_failed, delete_instance (casts that start
  or continue conductor flows).
* 1.2 - build_instances takes a RequestSpec and an ImageMeta object;
  build_done (an agent's report on a spawn, success or failure; replaces
  build_failed); action_finish; action_event_finish takes ``traceback`` and
  ``finish_action`` (before 1.2 every finished event finished its action);
  service_heartbeat takes ``rpc_version``.
* 1.3 - snapshot_instance and snapshot_done (createImage/createBackup),
  rebuild_instance and rebuild_done (rebuild): casts that start the flows
  and the agents' reports on their part.
* 1.4 - attach_volume and detach_volume (casts from the API that start the
  volume flows; only the control plane may send them).
* 1.5 - live migration: live_migrate_instance (a cast from the API that
  starts the flow on an accepted migration record), live_migration_abort and
  live_migration_force_complete (from the API), and from the source agent
  migration_progress (a cast) and live_migration_done (its report).
* 1.6 - resize and cold migration: resize_instance (a cast from the API
  that starts the flow on an accepted migration record), confirm_resize and
  revert_resize (casts from the API), resize_disk_done (the source agent's
  report on its disk copy).
* 1.7 - evacuate_instance (a cast from the API that starts the evacuate
  flow on an accepted migration record of type evacuation; the destination
  agent reports with rebuild_done).
* 1.8 - build_instances takes ``block_device_mapping`` (BlockDeviceMapping
  objects: the volumes a server boots from or gets at boot; issue 11).
* 1.9 - migration_get_in_progress (an agent restarting reads the live
  migration it was the source of, to watch the job that outlived it).
* 1.10 - volume_attachments_by_host (an agent's call at start: which
  volumes its instances should have, so it removes the disks of the others).
* 1.11 - extend_volume (a cast from the API that starts the online extend
  flow of an in-use volume); compute_node_update takes ``capabilities``
  (the driver's flags) in its resources.
* 1.12 - build_instances takes blank volume mappings (``source_type``
  blank: the build makes an empty volume for each server).
* 1.13 - build_instances takes snapshot volume mappings (``source_type``
  snapshot: the build makes a volume from a volume snapshot for each
  server).
* 1.14 - rebuild_instance takes ``volume_backed`` and ``reimage_boot_volume``
  (a server booted from a volume: its guest defined again around its root
  volume, re-imaged in place first when asked; compute 2.93).
"""

from __future__ import annotations

from typing import Any

from flotilla import exception, rpc
from flotilla.context import RequestContext, get_admin_context
from flotilla.objects import ImageMeta, RequestSpec
from flotilla.rpc import retry
from flotilla.rpc.upgrade import VersionCap

TOPIC = "conductor"


class ConductorAPI:
    VERSION = "1.14"

    def __init__(self, transport, version_cap: VersionCap = None,
                 timeout: float | None = None) -> None:
        self.client = rpc.RPCClient(transport, topic=TOPIC, version="1.0",
                                    version_cap=version_cap)
        self._timeout = timeout

    def _prepare(self, version: str):
        if self._timeout:
            return self.client.prepare(version=version, timeout=self._timeout)
        return self.client.prepare(version=version)

    def _call(self, ctxt, method: str, version: str = "1.0", **kwargs):
        return self._prepare(version).call(ctxt, method, **kwargs)

    def _cast(self, ctxt, method: str, version: str, **kwargs) -> None:
        self.client.prepare(version=version).cast(ctxt, method, **kwargs)

    # --- on behalf of compute agents -------------------------------------------------

    def service_heartbeat(self, ctxt: RequestContext, host: str, binary: str,
                          topic: str, rpc_version: str | None = None,
                          timeout: float | None = None) -> None:
        """``timeout``: seconds to wait for the answer instead of the
        client's (see :func:`flotilla.service.heartbeat_timeout`)."""
        if self.client.can_send_version("1.2"):
            version, kwargs = "1.2", {"rpc_version": rpc_version}
        else:
            version, kwargs = "1.0", {}
        client = self._prepare(version)
        if timeout is not None:
            client = client.prepare(timeout=timeout)
        client.call(ctxt, "service_heartbeat", host=host, binary=binary, topic=topic,
                    **kwargs)

    def report_heartbeat(self, host: str, binary: str, topic: str,
                         rpc_version: str | None = None,
                         timeout: float | None = None) -> None:
        """The heartbeat of a service without database access (a compute
        agent): fits :class:`flotilla.service.Heartbeat` (bind ``timeout``)."""
        self.service_heartbeat(get_admin_context(), host, binary, topic, rpc_version,
                               timeout=timeout)

    def volume_attachments_by_host(self, ctxt: RequestContext, host: str
                                   ) -> dict[str, list[str]] | None:
        """``{instance uuid: [volume id, ...]}`` of the attachments on
        ``host``; None when the conductor is older than 1.10."""
        if not self.client.can_send_version("1.10"):
            return None
        return self._call(ctxt, "volume_attachments_by_host", "1.10", host=host)

    def instance_get(self, ctxt: RequestContext, instance_uuid: str) -> dict:
        """The instance's record (its row as a dict)."""
        return self._call(ctxt, "instance_get", instance_uuid=instance_uuid)

    def instance_get_all_by_host(self, ctxt: RequestContext, host: str,
                                 read_deleted: bool = False) -> list[dict]:
        return self._call(ctxt, "instance_get_all_by_host", host=host,
                          read_deleted=read_deleted)

    def instance_update(self, ctxt: RequestContext, instance_uuid: str,
                        values: dict[str, Any], expected: dict | None = None) -> dict:
        """Set ``values``; ``expected`` maps vm_state/task_state to a value or
        a list of values (None means NULL); a key left out is not checked.
        Raises InstanceStateConflict when the state is not as expected.

        A reply lost with the broker connection (MessagingUnavailable: the
        update may or may not have run) or in a cut the connection did not
        notice (MessagingTimeout; the request expired with it) is no
        answer: the update is sent again, with the reconnect policy, for up
        to ``[rpc] reconnect_timeout`` (what a client gives one message to
        get through; the first attempt may have waited a whole broker
        outage already).
        If the first one ran, the compare-and-swap conflicts the second
        time; a record whose vm_state and task_state are then the ones
        ``values`` set is taken as that first one's answer. Without this an
        agent's state change cut off by a broker blip ended its whole
        operation, to be found by the reaper minutes later."""
        lost = False

        def attempt() -> dict:
            nonlocal lost
            try:
                return self._call(ctxt, "instance_update", instance_uuid=instance_uuid,
                                  values=values, expected=expected or {})
            except (exception.MessagingUnavailable, exception.MessagingTimeout):
                lost = True
                raise
            except exception.InstanceStateConflict:
                states = [k for k in ("vm_state", "task_state") if k in values]
                if not (lost and states):
                    raise
                record = self.instance_get(ctxt, instance_uuid)
                if any(record.get(k) != values[k] for k in states):
                    raise
                return record

        options = self.client.transport.options
        return retry.call_with_retry(
            attempt, retry_on=(exception.MessagingUnavailable, exception.MessagingTimeout),
            max_delay=options.reconnect_max_delay,
            deadline=options.reconnect_timeout,
            what="instance_update of %s" % instance_uuid, where="topic conductor")

    def instance_destroy(self, ctxt: RequestContext, instance_uuid: str,
                         expected: dict | None = None) -> dict:
        """Soft-delete the instance and free its resource claims."""
        return self._call(ctxt, "instance_destroy", instance_uuid=instance_uuid,
                          expected=expected or {})

    def instance_fault_create(self, ctxt: RequestContext, instance_uuid: str,
                              code: int, message: str, details: str | None = None,
                              host: str | None = None) -> None:
        self._call(ctxt, "instance_fault_create", instance_uuid=instance_uuid,
                   code=code, message=message, details=details, host=host)

    def action_event_start(self, ctxt: RequestContext, instance_uuid: str,
                           action: str, event: str, host: str) -> None:
        """Start ``event`` on the request's action, first starting the
        action ``action`` if the request has none."""
        self._call(ctxt, "action_event_start", instance_uuid=instance_uuid,
                   action=action, event=event, host=host)

    def action_event_finish(self, ctxt: RequestContext, instance_uuid: str,
                            event: str, result: str, details: str | None = None,
                            traceback: str | None = None) -> None:
        """Finish ``event`` (``details`` public, ``traceback`` for admins).
        Never finishes the action (see :meth:`action_finish`); a conductor
        capped below 1.2 does, and gets no traceback."""
        if self.client.can_send_version("1.2"):
            self._call(ctxt, "action_event_finish", "1.2", instance_uuid=instance_uuid,
                       event=event, result=result, details=details, traceback=traceback,
                       finish_action=False)
        else:
            self._call(ctxt, "action_event_finish", instance_uuid=instance_uuid,
                       event=event, result=result, details=details)

    def action_finish(self, ctxt: RequestContext, instance_uuid: str, result: str) -> None:
        """End the request's action with ``result`` (Success or Error). Below
        1.2 there is nothing to send: the last event finished it."""
        if self.client.can_send_version("1.2"):
            self._call(ctxt, "action_finish", "1.2", instance_uuid=instance_uuid,
                       result=result)

    def compute_node_update(self, ctxt: RequestContext, host: str,
                            resources: dict[str, Any]) -> None:
        """``resources`` may hold ``capabilities`` only for a 1.11
        conductor (see can_report_capabilities)."""
        version = "1.11" if "capabilities" in resources else "1.0"
        self._call(ctxt, "compute_node_update", version, host=host, resources=resources)

    def can_report_capabilities(self) -> bool:
        """Whether compute_node_update may carry ``capabilities`` (1.11)."""
        return self.client.can_send_version("1.11")

    # --- flows ----------------------------------------------------------------------

    def build_instances(self, ctxt: RequestContext, instance_uuids: list[str],
                        request_spec: RequestSpec, image: ImageMeta | None,
                        block_device_mapping: list | None = None) -> None:
        """Schedule and build instances the API has recorded (building /
        scheduling, with their create action under ``ctxt.request_id``);
        ``image`` is what agents fetch (a signed URL) or None (a server
        that boots from a volume); ``block_device_mapping`` the volume disks
        (needs 1.8: an older conductor cannot build them; 1.12 for a blank
        one; 1.13 for one made from a volume snapshot, which an older
        conductor would take for an existing volume)."""
        if block_device_mapping:
            sources = {b.source_type for b in block_device_mapping}
            version = "1.13" if "snapshot" in sources else "1.12" if "blank" in sources \
                else "1.8"
            self._cast(ctxt, "build_instances", version, instance_uuids=list(instance_uuids),
                       request_spec=request_spec, image=image,
                       block_device_mapping=list(block_device_mapping))
            return
        if self.client.can_send_version("1.2"):
            self._cast(ctxt, "build_instances", "1.2", instance_uuids=list(instance_uuids),
                       request_spec=request_spec, image=image)
            return
        self._cast(ctxt, "build_instances", "1.1", instance_uuids=list(instance_uuids),
                   request_spec=request_spec_1_1(request_spec),
                   image=image_1_1(image) if image else None)

    def build_done(self, ctxt: RequestContext, instance_uuid: str, host: str,
                   error: str | None = None) -> None:
        """A compute agent reports the end of its spawn of ``instance_uuid``
        (send it with the build's context): ``error`` None when the guest
        runs, else why it failed (the conductor records the fault, frees
        the claim and reschedules or ends the build in ERROR).

        A success is a call, so the create action is finished before the
        agent shows the instance ACTIVE; a failure is a cast (rescheduling
        is not the agent's to wait for). Below 1.2 a success is not sent
        (the conductor finds it by polling)."""
        if self.client.can_send_version("1.2"):
            if error is None:
                self._call(ctxt, "build_done", "1.2", instance_uuid=instance_uuid, host=host,
                           error=None)
            else:
                self._cast(ctxt, "build_done", "1.2", instance_uuid=instance_uuid,
                           host=host, error=error)
        elif error is not None:
            self._cast(ctxt, "build_failed", "1.1", instance_uuid=instance_uuid,
                       host=host, reason=error)

    def delete_instance(self, ctxt: RequestContext, instance_uuid: str) -> None:
        """Terminate on the host, or clean up here when the instance never
        reached a (live) host."""
        self._cast(ctxt, "delete_instance", "1.1", instance_uuid=instance_uuid)

    def snapshot_instance(self, ctxt: RequestContext, instance_uuid: str, image_id: str,
                          backup_type: str | None = None,
                          rotation: int | None = None) -> None:
        """Snapshot the server (in task image_snapshot, its action recorded
        under ``ctxt.request_id``) into the queued image ``image_id``; a
        backup names its ``backup_type`` and ``rotation``. Needs 1.3."""
        self._cast(ctxt, "snapshot_instance", "1.3", instance_uuid=instance_uuid,
                   image_id=image_id, backup_type=backup_type, rotation=rotation)

    def snapshot_done(self, ctxt: RequestContext, instance_uuid: str, host: str,
                      image_id: str | None = None, error: str | None = None,
                      message: str | None = None) -> None:
        """A compute agent reports the end of its part of a snapshot (send it
        with the snapshot's context): ``error`` None once the image data is
        uploaded, else what failed (``error`` for administrators,
        ``message`` for the server's owner). ``image_id`` None: whichever
        snapshot of the instance is unfinished (an agent that restarted
        does not know). A call, so the agent knows it arrived."""
        self._call(ctxt, "snapshot_done", "1.3", instance_uuid=instance_uuid, host=host,
                   image_id=image_id, error=error, message=message)

    def rebuild_instance(self, ctxt: RequestContext, instance_uuid: str,
                         image_id: str, volume_backed: bool = False,
                         reimage_boot_volume: bool = False) -> None:
        """Rebuild the server (in task rebuilding, its action recorded under
        ``ctxt.request_id``) from ``image_id``. Needs 1.3; a server booted
        from a volume (``volume_backed``; its root volume re-imaged from
        ``image_id`` when ``reimage_boot_volume``) needs 1.14."""
        if volume_backed:
            self._cast(ctxt, "rebuild_instance", "1.14", instance_uuid=instance_uuid,
                       image_id=image_id, volume_backed=True,
                       reimage_boot_volume=bool(reimage_boot_volume))
            return
        self._cast(ctxt, "rebuild_instance", "1.3", instance_uuid=instance_uuid,
                   image_id=image_id)

    def attach_volume(self, ctxt: RequestContext, instance_uuid: str, volume_id: str,
                      attachment_id: str) -> None:
        """Attach the reserved volume (its attachment ``attachment_id``) to
        the server. Needs 1.4."""
        self._cast(ctxt, "attach_volume", "1.4", instance_uuid=instance_uuid,
                   volume_id=volume_id, attachment_id=attachment_id)

    def detach_volume(self, ctxt: RequestContext, instance_uuid: str, volume_id: str,
                      attachment_id: str) -> None:
        """Detach the volume (status detaching) from the server. Needs 1.4."""
        self._cast(ctxt, "detach_volume", "1.4", instance_uuid=instance_uuid,
                   volume_id=volume_id, attachment_id=attachment_id)

    def extend_volume(self, ctxt: RequestContext, instance_uuid: str, volume_id: str,
                      attachment_id: str, new_size_gb: int, old_size_gb: int) -> None:
        """Extend the in-use volume the API marked extending (its record
        holds the new size) while the server runs. Needs 1.11."""
        self._cast(ctxt, "extend_volume", "1.11", instance_uuid=instance_uuid,
                   volume_id=volume_id, attachment_id=attachment_id,
                   new_size_gb=new_size_gb, old_size_gb=old_size_gb)

    def can_build_volumes(self, blank: bool = False, snapshot: bool = False) -> bool:
        """Whether conductors may be sent volume mappings at build (1.8),
        blank ones among them (1.12), ones from a volume snapshot (1.13)."""
        return self.client.can_send_version("1.13" if snapshot else "1.12" if blank
                                            else "1.8")

    def can_rebuild_volume_backed(self) -> bool:
        """Whether the conductors take a volume-backed rebuild_instance (1.14)."""
        return self.client.can_send_version("1.14")

    def can_extend_volume(self) -> bool:
        """Whether the conductors take extend_volume (1.11)."""
        return self.client.can_send_version("1.11")

    def rebuild_done(self, ctxt: RequestContext, instance_uuid: str, host: str,
                     error: str | None = None, message: str | None = None) -> None:
        """A compute agent reports the end of its rebuild (as snapshot_done);
        a call, so the flow has recorded the new image before the agent
        shows the server idle again."""
        self._call(ctxt, "rebuild_done", "1.3", instance_uuid=instance_uuid, host=host,
                   error=error, message=message)

    # --- live migration (1.5) ---------------------------------------------------------

    def live_migrate_instance(self, ctxt: RequestContext, instance_uuid: str,
                              migration_uuid: str, host: str | None = None,
                              force: bool = False) -> None:
        """Run the live migration flow on the accepted ``migration_uuid``
        (to ``host``: verified by the scheduler unless ``force``)."""
        self._cast(ctxt, "live_migrate_instance", "1.5", instance_uuid=instance_uuid,
                   migration_uuid=migration_uuid, host=host, force=force)

    def live_migration_abort(self, ctxt: RequestContext, instance_uuid: str,
                             migration_uuid: str) -> None:
        """Abort the live migration (between steps, or the source's job)."""
        self._cast(ctxt, "live_migration_abort", "1.5", instance_uuid=instance_uuid,
                   migration_uuid=migration_uuid)

    def live_migration_force_complete(self, ctxt: RequestContext, instance_uuid: str,
                                      migration_uuid: str) -> None:
        """Make the source's running job finish (it pauses the guest)."""
        self._cast(ctxt, "live_migration_force_complete", "1.5",
                   instance_uuid=instance_uuid, migration_uuid=migration_uuid)

    def migration_progress(self, ctxt: RequestContext, migration_uuid: str,
                           progress: dict) -> None:
        """The source agent's figures of a running job (a cast)."""
        self._cast(ctxt, "migration_progress", "1.5", migration_uuid=migration_uuid,
                   progress=progress)

    def live_migration_done(self, ctxt: RequestContext, instance_uuid: str,
                            migration_uuid: str, host: str, error: str | None = None,
                            message: str | None = None) -> None:
        """The source agent's report: the job ended (``error`` None: the
        guest runs on the destination)."""
        self._call(ctxt, "live_migration_done", "1.5", instance_uuid=instance_uuid,
                   migration_uuid=migration_uuid, host=host, error=error, message=message)

    def migration_get_in_progress(self, ctxt: RequestContext,
                                  instance_uuid: str) -> dict | None:
        """The instance's migration in progress (uuid, status, type, source
        and destination hosts), None when there is none or the conductor is
        older than 1.9 (the caller then leaves the migration to its flow)."""
        if not self.client.can_send_version("1.9"):
            return None
        return self._call(ctxt, "migration_get_in_progress", "1.9",
                          instance_uuid=instance_uuid)

    # --- resize and cold migration (1.6) ---------------------------------------------

    def resize_instance(self, ctxt: RequestContext, instance_uuid: str,
                        migration_uuid: str, flavor: dict, host: str | None = None,
                        action: str = "resize") -> None:
        """Run the resize flow to ``flavor`` (a flavor snapshot; the current
        one for a cold migration, recorded as ``action`` "migrate") on the
        accepted ``migration_uuid``; ``host``: the only destination
        allowed."""
        self._cast(ctxt, "resize_instance", "1.6", instance_uuid=instance_uuid,
                   migration_uuid=migration_uuid, flavor=flavor, host=host, action=action)

    def confirm_resize(self, ctxt: RequestContext, instance_uuid: str,
                       migration_uuid: str) -> None:
        """Confirm the resize (server in task resize_confirming)."""
        self._cast(ctxt, "confirm_resize", "1.6", instance_uuid=instance_uuid,
                   migration_uuid=migration_uuid)

    def revert_resize(self, ctxt: RequestContext, instance_uuid: str,
                      migration_uuid: str) -> None:
        """Revert the resize (server in task resize_reverting)."""
        self._cast(ctxt, "revert_resize", "1.6", instance_uuid=instance_uuid,
                   migration_uuid=migration_uuid)

    def resize_disk_done(self, ctxt: RequestContext, instance_uuid: str,
                         migration_uuid: str, host: str, migrate_data: dict | None = None,
                         error: str | None = None, message: str | None = None) -> None:
        """The source agent's report: the guest is off and its disk arrived
        on the destination (``error`` None; ``migrate_data`` what the
        destination needs), or why not (the guest is off on the source)."""
        self._call(ctxt, "resize_disk_done", "1.6", instance_uuid=instance_uuid,
                   migration_uuid=migration_uuid, host=host, migrate_data=migrate_data,
                   error=error, message=message)
    # --- evacuate (1.7) -----------------------------------------------------------------

    def evacuate_instance(self, ctxt: RequestContext, instance_uuid: str,
                          migration_uuid: str, host: str | None = None,
                          force: bool = False) -> None:
        """Run the evacuate flow on the accepted evacuation ``migration_uuid``
        (to ``host``: verified by the scheduler unless ``force``)."""
        self._cast(ctxt, "evacuate_instance", "1.7", instance_uuid=instance_uuid,
                   migration_uuid=migration_uuid, host=host, force=force)


def request_spec_1_1(spec: RequestSpec) -> dict[str, Any]:
    """The dict form of a request spec before 1.2 (conductor) and 1.1
    (scheduler)."""
    flavor = spec.flavor
    image = spec.image
    return {"flavor": {"flavorid": flavor.flavorid, "name": flavor.name,
                       "memory_mb": flavor.memory_mb, "vcpus": flavor.vcpus,
                       "root_gb": flavor.root_gb, "ephemeral_gb": flavor.ephemeral_gb,
                       "extra_specs": dict(flavor.extra_specs)},
            "image": {"id": image.id, "properties": dict(image.properties),
                      "min_ram": image.min_ram_mb, "min_disk": image.min_disk_gb}
            if image else None,
            "availability_zone": spec.availability_zone, "group": spec.group,
            "num_instances": spec.num_instances}


def image_1_1(image: ImageMeta) -> dict[str, Any]:
    """The dict form of an agent's image before conductor 1.2 / compute 1.1."""
    return {"id": image.id, "source": image.source, "sha256": image.sha256,
            "disk_format": image.disk_format}
