"""The online extend flow of an in-use volume (issue 11).

The API has already moved the volume in-use -> extending with its new size
(one compare-and-swap under the project's quota lock, as for an available
volume: flotilla.db.volumes.volume_extend_begin), recorded the instance
action ``extend_volume`` on the server the volume is attached to under the
request id (the runner keeps the flow's state there) and cast conductor
``extend_volume`` (RPC 1.11).

Steps:

1. ``extending``: checks the volume is extending to the new size, attached
   to the server, on the server's host, and that the volume service and the
   compute agent can be sent the calls (volume 1.3, compute 1.11). Revert
   (by the flow's failure handler, which knows the reason): extending ->
   in-use with the old size back and the reason (end_failed_extend).
2. ``grow_export``: the volume host grows the file and serves it at the new
   size, removing the NBD export and adding it again (volume RPC 1.3
   ``extend_volume_online``). Resumable (idempotent). No revert: a file is
   never shrunk under data; the export serves the larger file, the record
   says the old size (a later extend to that size finds it grown).
3. ``extend_on_host``: the compute host makes the guest's disk connect
   again and take the new size, resuming the guest if a request it made
   while the export was away paused it (compute RPC 1.11
   ``extend_volume``). Resumable (idempotent). No revert (the guest may
   have seen it; it is harmless).
4. ``in_use``: extending -> in-use (the size is the new one already).

A failure ends the volume ``in-use`` again with the old size and the
reason (``status_reason``; ``error_extending`` if it was detached
meanwhile), and the action failed; the server is untouched. The reaper
ends a flow lost with its conductor past [volume] operation_timeout the
same way. A server deleted while its volume extended left the volume to
this flow: the flow releases it at its end (``release_if_gone``).
"""

from __future__ import annotations

import dataclasses
import logging

from oslo_config import cfg

from conductor.flows import runner
from conductor.flows.base import Flow
from conductor.flows.runner import FlowFailed, FlowState, Step
from flotilla import exception
from flotilla import states as st
from flotilla.context import RequestContext
from flotilla.db import api as db
from flotilla.db import volumes as vdb

LOG = logging.getLogger(__name__)

ACTION = "extend_volume"
FLOW = "volume_extend"
GIB = 2 ** 30
#: Seconds the compute agent may take (it tries up to a minute to make the
#: guest's NBD client connect again; see compute/virt/libvirt/volume_extend.py).
COMPUTE_TIMEOUT = 120
#: Seconds the volume service may take (a sparse grow and a re-export).
VOLUME_TIMEOUT = 60


@dataclasses.dataclass
class ExtendState(FlowState):
    volume_id: str = ""
    attachment_id: str = ""
    volume_host: str = ""
    host: str = ""
    new_size_gb: int = 0
    old_size_gb: int = 0
    new_size_bytes: int = 0


class Extending(Step):
    """Checks everything the extend needs. Revert: in-use with the old size
    and the reason (done by VolumeExtendFlow._failed: end_failed_extend)."""

    name = "extending"

    def __init__(self, compute, volumes) -> None:
        self.compute = compute
        self.volumes = volumes

    def check(self, state: ExtendState) -> None:
        volume = vdb.volume_get(state.volume_id)
        if volume.status != st.VOLUME_EXTENDING or volume.size_gb != state.new_size_gb:
            raise vdb.VolumeStatusConflict(
                volume_id=volume.id, actual="%s (%d GiB)" % (volume.status, volume.size_gb),
                expected="%s (%d GiB)" % (st.VOLUME_EXTENDING, state.new_size_gb))
        attachment = vdb.attachment_get(state.attachment_id)
        if attachment.volume_id != state.volume_id \
                or attachment.instance_uuid != state.instance_uuid:
            raise exception.Conflict(reason="the attachment is not this volume's on "
                                     "this server")
        inst = db.instance_get(state.instance_uuid)
        if not inst.host or inst.host != state.host:
            raise exception.Conflict(reason="the server is not on the attachment's host")
        if not self.volumes.can_extend_online():
            raise exception.Conflict(reason="the volume services are capped below RPC 1.3")
        if not self.compute.can_extend_volume():
            raise exception.Conflict(reason="the compute agents are capped below RPC 1.11")

    def execute(self, state: ExtendState) -> None:
        pass     # the API made the volume extending

    def revert(self, state: ExtendState) -> None:
        # VolumeExtendFlow._failed ends the failed extend (end_failed_extend)
        # with the old size and the reason in one write (the runner gives a revert no
        # cause); a revert without a failure handler (none here) would too.
        pass


class GrowExport(Step):
    """The volume host grows the volume and exports it again. No revert."""

    name = "grow_export"
    resumable = True

    def __init__(self, volumes) -> None:
        self.volumes = volumes

    def execute(self, state: ExtendState) -> None:
        state.new_size_bytes = int(self.volumes.extend_volume_online(
            state.ctxt, state.volume_host, state.volume_id, state.new_size_gb,
            timeout=VOLUME_TIMEOUT))

    def details(self, state: ExtendState) -> str | None:
        return "served at %d GiB" % state.new_size_gb


class ExtendOnHost(Step):
    """The guest sees the new size. No revert."""

    name = "extend_on_host"
    resumable = True

    def __init__(self, compute) -> None:
        self.compute = compute

    def execute(self, state: ExtendState) -> None:
        self.compute.extend_volume(state.ctxt, state.host, state.instance_uuid,
                                   state.volume_id,
                                   state.new_size_bytes or state.new_size_gb * GIB,
                                   timeout=COMPUTE_TIMEOUT)


class InUse(Step):
    """extending -> in-use."""

    name = "in_use"

    def execute(self, state: ExtendState) -> None:
        vdb.volume_update(state.volume_id, {"status": st.VOLUME_IN_USE,
                                            "size_gb": state.new_size_gb,
                                            "status_reason": None},
                          expected_status=st.VOLUME_EXTENDING)


def end_failed_extend(volume_id: str, old_size_gb: int, reason: str) -> None:
    """:func:`flotilla.db.volumes.volume_extend_failed`, logged when the
    volume was no longer extending."""
    if not vdb.volume_extend_failed(volume_id, old_size_gb, reason):
        LOG.info("failed extend of volume %s not ended: no longer extending", volume_id)


class VolumeExtendFlow(Flow):
    name = FLOW

    def __init__(self, conf: cfg.ConfigOpts, host: str, compute, volumes) -> None:
        super().__init__(conf, host)
        self.compute = compute
        self.volumes = volumes
        # (ctxt, instance_uuid, volume_id) -> whether the server was gone:
        # the volume flow's release of a deleted server's volume (set by
        # the conductor manager).
        self.release_if_gone = None

    def _release_if_gone(self, state: ExtendState) -> None:
        if self.release_if_gone is None:
            return
        try:
            self.release_if_gone(state.ctxt, state.instance_uuid, state.volume_id)
        except Exception:
            LOG.exception("volume %s of server %s not released", state.volume_id,
                          state.instance_uuid)

    def steps(self) -> list[Step]:
        return [Extending(self.compute, self.volumes), GrowExport(self.volumes),
                ExtendOnHost(self.compute), InUse()]

    def extend(self, ctxt: RequestContext, instance_uuid: str, volume_id: str,
               attachment_id: str, new_size_gb: int, old_size_gb: int) -> None:
        recorder = self.recorder(instance_uuid, ctxt.request_id, ACTION)
        state = ExtendState(ctxt, instance_uuid, volume_id=volume_id,
                            attachment_id=attachment_id, new_size_gb=int(new_size_gb),
                            old_size_gb=int(old_size_gb))
        try:
            volume = vdb.volume_get(volume_id)
            state.volume_host = volume.host or ""
            try:
                state.host = vdb.attachment_get(attachment_id).host or ""
            except exception.NotFound:
                state.host = ""
            runner.run_flow(FLOW, self.steps(), state, recorder)
        except FlowFailed as failed:
            self._failed(state, recorder, failed)
            return
        except exception.NotFound as exc:
            LOG.warning("extend of volume %s: %s", volume_id, exc)
            end_failed_extend(volume_id, old_size_gb, "extend failed: %s" % exc)
            recorder.reporter.finish(ctxt, instance_uuid, failed=True)
            return
        LOG.info("volume %s extended online from %d to %d GiB (server %s)", volume_id,
                 old_size_gb, new_size_gb, instance_uuid)
        self._release_if_gone(state)
        recorder.reporter.finish(ctxt, instance_uuid)

    def _failed(self, state: ExtendState, recorder, failed: FlowFailed) -> None:
        reason = "extend failed at %s: %s" % (failed.step, _reason(failed.cause))
        # Extending's revert, and the end of a flow whose check failed.
        end_failed_extend(state.volume_id, state.old_size_gb, reason)
        self._release_if_gone(state)
        recorder.reporter.finish(state.ctxt, state.instance_uuid, failed=True)
        LOG.warning("online extend of volume %s failed: %s", state.volume_id, failed)

    def resume(self, record: db.FlowRecord) -> None:
        state = ExtendState.from_data(record.flow_data or {})
        recorder = self.recorder(record.instance_uuid, record.ref.key[1], ACTION)
        try:
            runner.resume_flow(self.steps(), state, recorder, record)
        except FlowFailed as failed:
            self._failed(state, recorder, failed)
            return
        self._release_if_gone(state)
        recorder.reporter.finish(state.ctxt, state.instance_uuid)

    def cleanup(self, ctxt: RequestContext, instance,
                reason: exception.FlotillaException) -> bool:
        return False   # no task on the server; the reaper ends a stuck extending


def _reason(exc: BaseException) -> str:
    if isinstance(exc, exception.FlotillaException):
        return exc.format_message() if hasattr(exc, "format_message") else str(exc)
    return "%s: %s" % (type(exc).__name__, exc)
