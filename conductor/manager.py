"""The conductor's RPC endpoint (topic ``conductor``).

Thin: each method checks its arguments and who asks (conductor.agent_access:
an agent acts only as the host its key proves, on that host's instances) and
calls into ``flotilla.db``, the action reporter or a flow. The first block holds the reads and writes
compute agents ask for (agents have no database access of their own); the
second starts flows (conductor/flows/) or passes them an agent's report.
Periodic tasks end stuck tasks (the reaper) and look after flows waiting
for a report that may have been lost; at start the conductor resumes the
flows it was running when it stopped.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

from oslo_config import cfg

from conductor import agent_access, reclaim
from conductor.flows import runner
from conductor.flows.base import Flow
from conductor.flows.build import BuildFlow
from conductor.flows.delete import DeleteFlow
from conductor.flows.evacuate import EvacuateFlow
from conductor.flows.live_migrate import LiveMigrateFlow
from conductor.flows.rebuild import RebuildFlow
from conductor.flows.resize import ResizeFlow
from conductor.flows.snapshot import SnapshotFlow
from conductor.flows.volume import VolumeFlow
from conductor.flows.volume_extend import VolumeExtendFlow
from conductor.reaper import Reaper
from flotilla import actions, deadlines, exception
from flotilla.context import RequestContext
from flotilla.db import api as db
from flotilla.db import migration_records as mig_db
from flotilla.db.volumes import attachments_of_host as vdb_attachments_of_host
from flotilla.objects import ImageMeta, RequestSpec
from flotilla.periodic import periodic_task
from flotilla.rpc import private

LOG = logging.getLogger(__name__)

# What an agent may set on an instance; everything else (project, flavor,
# deleted flags) is not the hypervisor host's business.
# image_ref: a finished rebuild names its new image in the update that
# shows the server idle (only on the agent's own instances).
_AGENT_WRITABLE = frozenset({
    "vm_state", "task_state", "power_state", "host", "node", "launched_at",
    "terminated_at", "task_deadline", "image_ref"})


class ConductorManager:
    RPC_API_VERSION = "1.14"

    def __init__(self, conf: cfg.ConfigOpts, transport=None) -> None:
        self.conf = conf
        self._transport = transport
        self._owns_transport = transport is None
        self._flows: dict[str, Flow] | None = None
        self._store = actions.DatabaseStore()

    # --- service hooks ----------------------------------------------------------

    @property
    def flows(self) -> dict[str, Flow]:
        """The flows by name, with their RPC clients, made on first use (a
        conductor that only serves agents' writes needs no client)."""
        if self._flows is None:
            from compute.rpcapi import ComputeAPI
            from flotilla import rpc
            from flotilla.rpc.upgrade import version_cap
            from scheduler.rpcapi import SchedulerAPI
            if self._transport is None:
                self._transport = rpc.get_transport(self.conf)
            compute = ComputeAPI(self._transport, version_cap(self.conf, "compute"))
            scheduler = SchedulerAPI(self._transport, version_cap(self.conf, "scheduler"))
            from volume.rpcapi import VolumeAPI
            volumes = VolumeAPI(self._transport, version_cap(self.conf, "volume"))
            flows: list[Flow] = [BuildFlow(self.conf, self.conf.host, scheduler, compute,
                                           volumes),
                                 DeleteFlow(self.conf, self.conf.host, compute),
                                 SnapshotFlow(self.conf, self.conf.host, compute),
                                 RebuildFlow(self.conf, self.conf.host, compute, volumes),
                                 VolumeFlow(self.conf, self.conf.host, compute, volumes),
                                 LiveMigrateFlow(self.conf, self.conf.host, scheduler,
                                                 compute),
                                 ResizeFlow(self.conf, self.conf.host, scheduler, compute),
                                 EvacuateFlow(self.conf, self.conf.host, scheduler, compute),
                                 VolumeExtendFlow(self.conf, self.conf.host, compute,
                                                  volumes)]
            self._flows = {flow.name: flow for flow in flows}
            # The attach and detach flows are saved under their own names.
            self._flows["volume_attach"] = self._flows["volume_detach"] = \
                self._flows["volume"]
            self._flows["delete"].on_deleted = self._release_volumes
            self._flows["volume_extend"].release_if_gone = \
                self._flows["volume"].release_if_gone
            self._flows["rebuild"].release_if_gone = \
                self._flows["volume"].release_if_gone
        return self._flows

    @private
    def init_host(self) -> None:
        """Resume the flows this conductor host left unfinished."""
        for record in db.flow_records_unfinished(
                owner=self.conf.host, statuses=(runner.RUNNING, runner.REVERTING)):
            self._resume(record)

    @private
    def cleanup_host(self) -> None:
        if self._owns_transport and self._transport is not None:
            self._transport.cleanup()
            self._transport = None

    # --- reads and writes on behalf of compute agents (1.0, 1.2) -------------------

    def service_heartbeat(self, ctxt: RequestContext, host: str, binary: str,
                          topic: str, rpc_version: str | None = None) -> None:
        agent_access.check_host(ctxt, host, "report a heartbeat")
        db.service_heartbeat(host, binary, topic, rpc_version)

    def instance_get(self, ctxt: RequestContext, instance_uuid: str) -> dict:
        agent_access.check_instance(ctxt, instance_uuid)
        return db.instance_get(instance_uuid).to_dict()

    def instance_get_all_by_host(self, ctxt: RequestContext, host: str,
                                 read_deleted: bool = False) -> list[dict]:
        agent_access.check_host(ctxt, host, "list the instances")
        return [i.to_dict() for i in
                db.instance_get_all_by_host(host, read_deleted=read_deleted)]

    def volume_attachments_by_host(self, ctxt: RequestContext, host: str
                                   ) -> dict[str, list[str]]:
        """1.10: the agent's start-up check of its volume disks."""
        agent_access.check_host(ctxt, host, "list the volume attachments")
        return vdb_attachments_of_host(host)

    def instance_update(self, ctxt: RequestContext, instance_uuid: str,
                        values: dict, expected: dict) -> dict:
        agent_access.check_instance(ctxt, instance_uuid)
        if ctxt.agent_host is not None and values.get("host") not in (None, ctxt.agent_host):
            raise exception.Forbidden(reason="compute host %s may not move instance %s "
                                      "to host %s" % (ctxt.agent_host, instance_uuid,
                                                      values["host"]))
        unknown = set(values) - _AGENT_WRITABLE
        if unknown:
            raise exception.Invalid(reason="fields %s cannot be set by a "
                                    "compute agent" % sorted(unknown))
        values = dict(values)
        for key in ("launched_at", "terminated_at", "task_deadline"):
            if isinstance(values.get(key), str):
                values[key] = datetime.datetime.fromisoformat(values[key])
        if "task_state" in values and "task_deadline" not in values:
            values["task_deadline"] = deadlines.task_deadline(self.conf, values["task_state"])
        return db.instance_update(instance_uuid, values,
                                  **_expected_kwargs(expected)).to_dict()

    def instance_destroy(self, ctxt: RequestContext, instance_uuid: str,
                         expected: dict) -> dict:
        # Retiring the row (vm_state deleted) already hid it from normal reads.
        agent_access.check_instance(ctxt, instance_uuid, read_deleted=True)
        instance = db.instance_destroy(instance_uuid, **_expected_kwargs(expected))
        db.allocation_free(instance_uuid)
        # The guest is gone: its volumes are free again.
        self._release_volumes(ctxt, instance_uuid)
        self._release_resize(ctxt, instance_uuid)
        return instance.to_dict()

    def _release_resize(self, ctxt: RequestContext, instance_uuid: str) -> None:
        # A server deleted in VERIFY_RESIZE: its source copy and claim go too.
        try:
            self.flows["resize"].release_instance(ctxt, instance_uuid)
        except Exception:
            LOG.exception("releasing the resize of deleted server %s failed", instance_uuid)

    def _release_volumes(self, ctxt: RequestContext, instance_uuid: str) -> None:
        try:
            self.flows["volume"].release_instance(ctxt, instance_uuid)
        except Exception:
            LOG.exception("releasing the volumes of deleted server %s failed "
                          "(the reaper and an operator see them)", instance_uuid)

    def instance_fault_create(self, ctxt: RequestContext, instance_uuid: str,
                              code: int, message: str, details: str | None = None,
                              host: str | None = None) -> None:
        agent_access.check_instance(ctxt, instance_uuid)
        self._store.add_fault(ctxt, instance_uuid, code, message, details,
                              ctxt.agent_host or host)

    def action_event_start(self, ctxt: RequestContext, instance_uuid: str,
                           action: str, event: str, host: str) -> None:
        agent_access.check_instance(ctxt, instance_uuid)
        self._store.start_event(ctxt, instance_uuid, action, event, ctxt.agent_host or host)

    def action_event_finish(self, ctxt: RequestContext, instance_uuid: str,
                            event: str, result: str, details: str | None = None,
                            traceback: str | None = None,
                            finish_action: bool | None = None) -> None:
        """``finish_action`` None is how agents before 1.2 call: they meant
        every finished event to finish its action."""
        agent_access.check_instance(ctxt, instance_uuid)
        self._store.finish_event(ctxt, instance_uuid, event, result, details, traceback)
        if finish_action is None:
            self._store.finish_action(ctxt, instance_uuid, result)

    def action_finish(self, ctxt: RequestContext, instance_uuid: str, result: str) -> None:
        agent_access.check_instance(ctxt, instance_uuid)
        self._store.finish_action(ctxt, instance_uuid, result)

    def compute_node_update(self, ctxt: RequestContext, host: str,
                            resources: dict[str, Any]) -> None:
        agent_access.check_host(ctxt, host, "report resources")
        db.compute_node_update(host, resources)

    # --- flows (1.1, 1.2, 1.3) --------------------------------------------------------

    def build_instances(self, ctxt: RequestContext, instance_uuids: list[str],
                        request_spec: RequestSpec | dict, image: ImageMeta | dict | None,
                        block_device_mapping: list | None = None) -> None:
        agent_access.check_control_plane(ctxt, "start builds")
        self.flows["build"].build_instances(ctxt, list(instance_uuids),
                                            RequestSpec.coerce(request_spec),
                                            ImageMeta.coerce(image),
                                            block_device_mapping=block_device_mapping)

    def build_done(self, ctxt: RequestContext, instance_uuid: str, host: str,
                   error: str | None = None) -> None:
        agent_access.check_instance(ctxt, instance_uuid)
        agent_access.check_host(ctxt, host, "report a build")
        self.flows["build"].report(ctxt, instance_uuid, {"host": host, "error": error})

    def build_failed(self, ctxt: RequestContext, instance_uuid: str, host: str,
                     reason: str) -> None:
        """The 1.1 form of :meth:`build_done` with an error."""
        self.build_done(ctxt, instance_uuid, host, reason)

    def delete_instance(self, ctxt: RequestContext, instance_uuid: str) -> None:
        agent_access.check_control_plane(ctxt, "delete instances")
        self.flows["delete"].delete_instance(ctxt, instance_uuid)

    def snapshot_instance(self, ctxt: RequestContext, instance_uuid: str, image_id: str,
                          backup_type: str | None = None,
                          rotation: int | None = None) -> None:
        agent_access.check_control_plane(ctxt, "start snapshots")
        self.flows["snapshot"].start(ctxt, instance_uuid, image_id, backup_type,
                                     None if rotation is None else int(rotation))

    def snapshot_done(self, ctxt: RequestContext, instance_uuid: str, host: str,
                      image_id: str | None = None, error: str | None = None,
                      message: str | None = None) -> None:
        agent_access.check_instance(ctxt, instance_uuid)
        agent_access.check_host(ctxt, host, "report a snapshot")
        self.flows["snapshot"].report(ctxt, instance_uuid, host, image_id,
                                      {"error": error, "message": message})

    def rebuild_instance(self, ctxt: RequestContext, instance_uuid: str,
                         image_id: str, volume_backed: bool = False,
                         reimage_boot_volume: bool = False) -> None:
        agent_access.check_control_plane(ctxt, "start rebuilds")
        self.flows["rebuild"].start(ctxt, instance_uuid, image_id,
                                    volume_backed=volume_backed,
                                    reimage_boot_volume=reimage_boot_volume)

    def attach_volume(self, ctxt: RequestContext, instance_uuid: str, volume_id: str,
                      attachment_id: str) -> None:
        agent_access.check_control_plane(ctxt, "attach volumes")
        self.flows["volume"].attach(ctxt, instance_uuid, volume_id, attachment_id)

    def detach_volume(self, ctxt: RequestContext, instance_uuid: str, volume_id: str,
                      attachment_id: str) -> None:
        agent_access.check_control_plane(ctxt, "detach volumes")
        self.flows["volume"].detach(ctxt, instance_uuid, volume_id, attachment_id)

    def extend_volume(self, ctxt: RequestContext, instance_uuid: str, volume_id: str,
                      attachment_id: str, new_size_gb: int, old_size_gb: int) -> None:
        """1.11: the online extend flow of an in-use volume."""
        agent_access.check_control_plane(ctxt, "extend volumes")
        self.flows["volume_extend"].extend(ctxt, instance_uuid, volume_id, attachment_id,
                                           new_size_gb, old_size_gb)

    def rebuild_done(self, ctxt: RequestContext, instance_uuid: str, host: str,
                     error: str | None = None, message: str | None = None) -> None:
        agent_access.check_instance(ctxt, instance_uuid)
        agent_access.check_host(ctxt, host, "report a rebuild")
        # An evacuation's destination rebuilds through the same agent call.
        evacuation = self.flows["evacuate"].waiting_record(instance_uuid)
        if evacuation is not None:
            self.flows["evacuate"].report(ctxt, evacuation,
                                          {"error": error, "message": message})
            return
        self.flows["rebuild"].report(ctxt, instance_uuid, host,
                                     {"error": error, "message": message})

    # --- live migration (1.5) ----------------------------------------------------------

    def live_migrate_instance(self, ctxt: RequestContext, instance_uuid: str,
                              migration_uuid: str, host: str | None = None,
                              force: bool = False) -> None:
        agent_access.check_control_plane(ctxt, "start live migrations")
        self.flows["live_migrate"].start(ctxt, instance_uuid, migration_uuid, host, force)

    def live_migration_abort(self, ctxt: RequestContext, instance_uuid: str,
                             migration_uuid: str) -> None:
        agent_access.check_control_plane(ctxt, "abort live migrations")
        self.flows["live_migrate"].abort(ctxt, instance_uuid, migration_uuid)

    def live_migration_force_complete(self, ctxt: RequestContext, instance_uuid: str,
                                      migration_uuid: str) -> None:
        agent_access.check_control_plane(ctxt, "force live migrations")
        self.flows["live_migrate"].force_complete(ctxt, instance_uuid, migration_uuid)

    def migration_progress(self, ctxt: RequestContext, migration_uuid: str,
                           progress: dict) -> None:
        agent_access.check_migration_source(ctxt, migration_uuid, "report progress")
        self.flows["live_migrate"].progress(migration_uuid, dict(progress or {}))

    def live_migration_done(self, ctxt: RequestContext, instance_uuid: str,
                            migration_uuid: str, host: str, error: str | None = None,
                            message: str | None = None) -> None:
        agent_access.check_instance(ctxt, instance_uuid)
        agent_access.check_host(ctxt, host, "report a live migration")
        agent_access.check_migration_source(ctxt, migration_uuid, "report a live migration",
                                            instance_uuid=instance_uuid, host=host)
        self.flows["live_migrate"].report(ctxt, instance_uuid, migration_uuid,
                                          {"error": error, "message": message})

    # --- resize and cold migration (1.6) ------------------------------------------------

    def resize_instance(self, ctxt: RequestContext, instance_uuid: str,
                        migration_uuid: str, flavor: dict, host: str | None = None,
                        action: str = "resize") -> None:
        agent_access.check_control_plane(ctxt, "start resizes")
        self.flows["resize"].start(ctxt, instance_uuid, migration_uuid, dict(flavor),
                                   host, action)

    def confirm_resize(self, ctxt: RequestContext, instance_uuid: str,
                       migration_uuid: str) -> None:
        agent_access.check_control_plane(ctxt, "confirm resizes")
        self.flows["resize"].confirm(ctxt, instance_uuid, migration_uuid)

    def revert_resize(self, ctxt: RequestContext, instance_uuid: str,
                      migration_uuid: str) -> None:
        agent_access.check_control_plane(ctxt, "revert resizes")
        self.flows["resize"].revert(ctxt, instance_uuid, migration_uuid)

    def resize_disk_done(self, ctxt: RequestContext, instance_uuid: str,
                         migration_uuid: str, host: str, migrate_data: dict | None = None,
                         error: str | None = None, message: str | None = None) -> None:
        agent_access.check_instance(ctxt, instance_uuid)
        agent_access.check_host(ctxt, host, "report a resize")
        agent_access.check_migration_source(ctxt, migration_uuid, "report a resize",
                                            instance_uuid=instance_uuid, host=host)
        self.flows["resize"].report(ctxt, instance_uuid, migration_uuid,
                                    {"migrate_data": migrate_data, "error": error,
                                     "message": message})

    @periodic_task(spacing=lambda self: self.conf.conductor.reaper_interval)
    def _confirm_resizes(self) -> None:
        """[DEFAULT] resize_confirm_window: confirm resizes left waiting."""
        confirmed = self.flows["resize"].auto_confirm()
        if confirmed:
            LOG.info("confirmed %d resize(s) automatically", confirmed)
    # --- evacuate (1.7) -------------------------------------------------------------

    def evacuate_instance(self, ctxt: RequestContext, instance_uuid: str,
                          migration_uuid: str, host: str | None = None,
                          force: bool = False) -> None:
        agent_access.check_control_plane(ctxt, "start evacuations")
        self.flows["evacuate"].start(ctxt, instance_uuid, migration_uuid, host, force)

    # --- crash recovery of live migrations (1.9) ------------------------------------

    def migration_get_in_progress(self, ctxt: RequestContext,
                                  instance_uuid: str) -> dict | None:
        """For the instance's hosts: its migration in progress, if any."""
        agent_access.check_instance(ctxt, instance_uuid)
        migration = mig_db.migration_in_progress(instance_uuid)
        if migration is None:
            return None
        return {"uuid": migration.uuid, "status": migration.status,
                "migration_type": migration.migration_type,
                "source_host": migration.source_host, "dest_host": migration.dest_host}

    # --- periodic tasks ------------------------------------------------------------

    @periodic_task(spacing=lambda self: self.conf.conductor.reaper_interval)
    def _reap_stuck_tasks(self) -> None:
        ended = Reaper(self.conf, self.flows, self.conf.host).run()
        ended += self.flows["volume"].reap()
        if ended:
            LOG.warning("reaper ended %d stuck task(s)", ended)

    @periodic_task(spacing=lambda self: self.conf.conductor.reaper_interval)
    def _reclaim_soft_deleted(self) -> None:
        reclaim.reclaim(self.conf, self.flows["delete"])

    @periodic_task(spacing=lambda self: self.conf.conductor.flow_poll_interval)
    def _poll_waiting_flows(self) -> None:
        """A flow waits for an agent's report; if the report was lost (the
        agent died after the work, or speaks an older version that sends
        none) the waiting step's poll finds the outcome."""
        for record in db.flow_records_unfinished(statuses=(runner.WAITING,)):
            self._resume(record)

    def _resume(self, record: db.FlowRecord) -> None:
        flow = self.flows.get(record.flow or "")
        if flow is None:
            LOG.warning("unknown flow %r on %s: left alone", record.flow, record.ref)
            return
        try:
            flow.resume(record)
        except Exception:
            LOG.exception("resuming flow %s of %s failed", record.flow, record.instance_uuid)


def _expected_kwargs(expected: dict | None) -> dict:
    """RPC form ``{"vm_state": x, "task_state": [a, None]}`` to db kwargs;
    a key left out is not checked."""
    expected = expected or {}
    unknown = set(expected) - {"vm_state", "task_state"}
    if unknown:
        raise exception.Invalid(reason="cannot expect %s" % sorted(unknown))
    kwargs = {}
    for key in ("vm_state", "task_state"):
        if key in expected:
            value = expected[key]
            kwargs["expected_" + key] = tuple(value) if isinstance(value, list) else value
    return kwargs
