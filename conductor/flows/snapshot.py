"""The snapshot flow (createImage, createBackup): the server's root disk
becomes an image, the server stays where it was.

The API has already created the image (queued), put the server in task
``image_snapshot`` and recorded the action (``createImage`` or
``createBackup``) under the request id, on which this flow keeps its state.

Steps (conductor/flows/runner.py):

1. ``snapshot_on_host``: arm a signed upload URL for the image (valid for
   that image, once) and cast ``snapshot_instance`` to the server's host;
   wait for the agent's report (``snapshot_done``). The agent copies the
   disk (task ``image_snapshot``), flattens it (``image_pending_upload``)
   and uploads it (``image_uploading``), which makes the image active. A
   report that got lost is found by the poll: the image active means done;
   the image gone, the server gone or out of its snapshot task means
   failed.
2. ``finish_snapshot``: the image must be active; the server's task is
   cleared (its vm_state never changed).
3. ``rotate_backups``: for a backup, the server's oldest backups of that
   type beyond ``rotation`` are deleted. It never fails the flow: a backup
   that could not be deleted is logged and left.

On any failure (the agent's report, a lost host, the reaper's deadline)
the image is deleted (``killed`` with the reason if that fails), the task
cleared, a fault says why in words the server's owner may read, and the
action ends in Error. A server deleted meanwhile is left to its delete.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from oslo_config import cfg

from conductor.flows import runner
from conductor.flows.base import Flow
from conductor.flows.runner import FlowFailed, FlowState, Step
from flotilla import exception, images
from flotilla import states as st
from flotilla.context import RequestContext
from flotilla.db import api as db
from flotilla.db import images as images_db
from flotilla.objects import ImageMeta

LOG = logging.getLogger(__name__)

OPERATION = st.operation("snapshot")
SNAPSHOT_TASKS = OPERATION.task_states
ACTIONS = ("createImage", "createBackup")


class SnapshotNotTaken(exception.FlotillaException):
    """A snapshot failed; ``public`` says why to the server's owner (the
    message, with the agent's own words, is for administrators)."""

    msg_fmt = "Snapshot into image %(image_id)s failed: %(reason)s"
    public_msg = "The snapshot of the server failed."

    def __init__(self, public: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if public:
            self.public_msg = public


@dataclasses.dataclass
class SnapshotState(FlowState):
    image_id: str = ""
    host: str = ""
    action: str = "createImage"
    backup_type: str | None = None
    rotation: int | None = None
    base_image: ImageMeta | None = None
    size: int | None = None
    rotated: list[str] = dataclasses.field(default_factory=list)


def restore_task(instance_uuid: str) -> bool:
    """Clear a snapshot task (the vm_state never changed); False when the
    server is gone or doing something else (a delete won)."""
    try:
        db.instance_update(instance_uuid, {"task_state": None, "task_deadline": None},
                           expected_task_state=SNAPSHOT_TASKS)
        return True
    except (exception.InstanceStateConflict, exception.InstanceNotFound) as exc:
        # Cleared already (a revert before), or a delete won: nothing to do.
        LOG.debug("snapshot task of %s not cleared: %s", instance_uuid, exc)
        return False


class SnapshotOnHost(Step):
    """Arm the upload URL, cast the snapshot to the host, wait for the
    agent's report.

    Revert: the image is deleted (or killed); the flow's failure handling then
    writes the fault and clears the server's snapshot task. The agent removes its own copies; one that died is repaired by
    its start-up reconciliation.
    """

    name = "snapshot_on_host"
    waits_for_report = True

    def __init__(self, conf: cfg.ConfigOpts, compute) -> None:
        self.conf = conf
        self.compute = compute

    def check(self, state: SnapshotState) -> None:
        inst = db.instance_get(state.instance_uuid)
        if inst.task_state != st.IMAGE_SNAPSHOT or inst.host != state.host:
            raise exception.InstanceStateConflict(
                instance_uuid=state.instance_uuid, actual_vm_state=inst.vm_state,
                actual_task_state=inst.task_state, expected_vm_state="any",
                expected_task_state=st.IMAGE_SNAPSHOT)
        image = images_db.image_get(state.image_id)
        if image.status != "queued":
            raise exception.ImageStatusConflict(image_id=state.image_id,
                                                actual=image.status, expected="queued")

    def execute(self, state: SnapshotState) -> None:
        # Made here, never saved with the flow: the URL is a bearer secret.
        url = images.arm_upload_url(self.conf, state.image_id)
        self.compute.snapshot_instance(state.ctxt, state.host, state.instance_uuid,
                                       state.image_id, url, state.base_image)

    def on_report(self, state: SnapshotState, report: dict[str, Any]) -> None:
        if report.get("error"):
            raise SnapshotNotTaken(public=report.get("message"), image_id=state.image_id,
                                   reason=report["error"])

    def poll(self, state: SnapshotState) -> dict[str, Any] | None:
        try:
            image = images_db.image_get(state.image_id)
        except exception.ImageNotFound:
            return {"error": "image %s was deleted" % state.image_id,
                    "message": "The image was deleted before the snapshot completed."}
        if image.status == "active":
            return {}
        if image.status not in ("queued", "saving"):
            return {"error": "image %s is %s" % (state.image_id, image.status)}
        try:
            inst = db.instance_get(state.instance_uuid)
        except exception.InstanceNotFound:
            return {"error": "the server was deleted",
                    "message": "The server was deleted during the snapshot."}
        if inst.task_state not in SNAPSHOT_TASKS:
            return {"error": "the server left its snapshot task (%s) with image %s %s"
                             % (inst.task_state, state.image_id, image.status)}
        return None

    def revert(self, state: SnapshotState) -> None:
        outcome = images.discard_image(self.conf, state.image_id,
                                       "the snapshot of server %s failed"
                                       % state.instance_uuid)
        LOG.info("snapshot of %s failed: image %s %s", state.instance_uuid,
                 state.image_id, outcome)
        # The task is cleared by the flow's failure handling, after the
        # fault is written: whoever sees the server idle sees why.


class FinishSnapshot(Step):
    """The image must be active; clear the server's task. Resumable.
    Revert: none (the image is SnapshotOnHost's to remove)."""

    name = "finish_snapshot"
    resumable = True

    def execute(self, state: SnapshotState) -> None:
        image = images_db.image_get(state.image_id)
        if image.status != "active" or not image.checksum:
            raise SnapshotNotTaken(image_id=state.image_id,
                                   reason="the image is %s after the upload" % image.status)
        state.size = image.size
        restore_task(state.instance_uuid)

    def details(self, state: SnapshotState) -> str:
        return "image %s active, %s bytes" % (state.image_id, state.size)


class RotateBackups(Step):
    """Delete the oldest backups of the server's type beyond ``rotation``
    (a snapshot rotates nothing). Resumable; never fails the flow.
    Revert: none (last step)."""

    name = "rotate_backups"
    resumable = True

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self.conf = conf

    def execute(self, state: SnapshotState) -> None:
        if state.rotation is None:
            return
        try:
            owner = images_db.image_get(state.image_id).owner
            backups = images_db.images_of_instance(owner, state.instance_uuid,
                                                   images.BACKUP, state.backup_type or "")
        except exception.FlotillaException as exc:
            LOG.warning("backups of %s not rotated: %s", state.instance_uuid, exc)
            return
        excess = len(backups) - state.rotation
        for image in backups[:max(0, excess)]:
            if (image.properties or {}).get(images_db.PROTECTED_KEY):
                LOG.warning("backup %s of %s is protected: not rotated", image.id,
                            state.instance_uuid)
                continue
            try:
                images.discard_image(self.conf, image.id, "rotated out")
                state.rotated.append(image.id)
            except exception.FlotillaException as exc:
                LOG.warning("backup %s of %s not deleted: %s", image.id,
                            state.instance_uuid, exc)

    def details(self, state: SnapshotState) -> str | None:
        if state.rotation is None:
            return None
        return "kept %d %s backup(s); deleted %s" % (
            state.rotation, state.backup_type or "", ", ".join(state.rotated) or "none")


class SnapshotFlow(Flow):
    name = "snapshot"

    def __init__(self, conf: cfg.ConfigOpts, host: str, compute) -> None:
        super().__init__(conf, host)
        self.compute = compute

    def steps(self) -> list[Step]:
        return [SnapshotOnHost(self.conf, self.compute), FinishSnapshot(),
                RotateBackups(self.conf)]

    # --- entry points -----------------------------------------------------------

    def start(self, ctxt: RequestContext, instance_uuid: str, image_id: str,
              backup_type: str | None = None, rotation: int | None = None) -> None:
        """Run the flow for the request ``ctxt`` (see the module rules)."""
        backup = rotation is not None
        state = SnapshotState(ctxt, instance_uuid, image_id=image_id,
                              action=ACTIONS[1] if backup else ACTIONS[0],
                              backup_type=backup_type, rotation=rotation)
        try:
            inst = db.instance_get(instance_uuid)
        except exception.InstanceNotFound:
            images.discard_image(self.conf, image_id, "the server was deleted")
            return
        state.host = inst.host or ""
        state.base_image = base_image_meta(inst.image_ref)
        recorder = self.recorder(instance_uuid, ctxt.request_id, state.action)
        try:
            status = runner.run_flow(self.name, self.steps(), state, recorder)
        except FlowFailed as failed:
            self._failed(state, failed)
            return
        self._finish_if_completed(state, status)

    def report(self, ctxt: RequestContext, instance_uuid: str, host: str,
               image_id: str | None, report: dict[str, Any]) -> None:
        """An agent's report (``{"error", "message"}``) on its snapshot of
        ``instance_uuid``; with no ``image_id`` (an agent that restarted),
        on whichever snapshot of the instance is unfinished."""
        record = self._record_for(ctxt, instance_uuid, image_id)
        if record is None:
            LOG.info("snapshot report for %s (image %s), which no snapshot flow waits for",
                     instance_uuid, image_id)
            # A restarted agent's report of a snapshot whose flow is gone
            # (failed, or never recorded): the task is left to nobody else.
            # A late report of a known image is only late: ignored.
            if image_id is None and report.get("error") and restore_task(instance_uuid):
                actions_store = self.recorder(instance_uuid, ctxt.request_id or "",
                                              ACTIONS[0]).reporter
                actions_store.fault(ctxt, instance_uuid, SnapshotNotTaken(
                    public=report.get("message"), image_id=image_id or "?",
                    reason=report["error"]))
            return
        state = SnapshotState.from_data(record.flow_data or {})
        recorder = self.recorder(instance_uuid, record.ref.key[1], state.action)
        try:
            status = runner.continue_flow(self.steps(), state, recorder, report)
        except FlowFailed as failed:
            self._failed(state, failed)
            return
        self._finish_if_completed(state, status)

    def resume(self, record: db.FlowRecord) -> None:
        state = SnapshotState.from_data(record.flow_data or {})
        recorder = self.recorder(record.instance_uuid, record.ref.key[1], state.action)
        try:
            status = runner.resume_flow(self.steps(), state, recorder, record)
        except FlowFailed as failed:
            self._failed(state, failed)
            return
        self._finish_if_completed(state, status)

    def cleanup(self, ctxt: RequestContext, instance,
                reason: exception.FlotillaException) -> bool:
        """The snapshot outlived its deadline (in any of its task states):
        the image removed, the task cleared, the flow failed."""
        record = None
        try:
            record = db.flow_record_get(db.FlowRecordRef.action(instance.uuid,
                                                                ctxt.request_id))
        except exception.NotFound:
            pass
        state = SnapshotState.from_data(record.flow_data) \
            if record is not None and record.flow == self.name and record.flow_data else None
        if record is not None:
            db.flow_record_update(record.ref, expected_status=runner.UNFINISHED,
                                  flow_status=runner.FAILED)
        if state is not None and state.image_id:
            images.discard_image(self.conf, state.image_id,
                                 "the snapshot timed out: %s" % reason)
        if not restore_task(instance.uuid):
            return False
        action = state.action if state is not None else ACTIONS[0]
        reporter = self.recorder(instance.uuid, ctxt.request_id, action).reporter
        reporter.fault(ctxt, instance.uuid, reason)
        reporter.finish(ctxt, instance.uuid, failed=True)
        return True

    # --- outcomes ---------------------------------------------------------------------

    def _record_for(self, ctxt: RequestContext, instance_uuid: str,
                    image_id: str | None) -> db.FlowRecord | None:
        candidates = []
        if ctxt.request_id:
            try:
                candidates.append(db.flow_record_get(
                    db.FlowRecordRef.action(instance_uuid, ctxt.request_id)))
            except exception.NotFound:
                pass
        newest = db.flow_record_for_instance(instance_uuid)
        if newest is not None:
            candidates.append(newest)
        for record in candidates:
            if record.flow == self.name and record.flow_status in runner.UNFINISHED \
                    and (image_id is None
                         or (record.flow_data or {}).get("image_id") == image_id):
                return record
        return None

    def _finish_if_completed(self, state: SnapshotState, status: str) -> None:
        if status == runner.COMPLETED:
            recorder = self.recorder(state.instance_uuid, state.ctxt.request_id, state.action)
            recorder.reporter.finish(state.ctxt, state.instance_uuid)
            LOG.info("%s of %s: image %s active", state.action, state.instance_uuid,
                     state.image_id)

    def _failed(self, state: SnapshotState, failed: FlowFailed) -> None:
        # The reverts did this already, unless a preflight check failed
        # (nothing ran, nothing reverted): the image and the task are ours
        # to clean either way. Both are idempotent.
        images.discard_image(self.conf, state.image_id,
                             "the snapshot of server %s failed" % state.instance_uuid)
        reporter = self.recorder(state.instance_uuid, state.ctxt.request_id,
                                 state.action).reporter
        # The fault first: a client that sees the server idle sees why.
        reporter.fault(state.ctxt, state.instance_uuid, failed.cause)
        restore_task(state.instance_uuid)
        reporter.finish(state.ctxt, state.instance_uuid, failed=True)
        LOG.warning("%s of %s failed: %s", state.action, state.instance_uuid, failed)


def base_image_meta(image_ref: str | None) -> ImageMeta | None:
    """What the agent checks the cached base of the server's disk against:
    the image's id and sha256 (a deleted image too), None when unknown."""
    if not image_ref or not images.is_valid_id(image_ref):
        return None
    try:
        image = images_db.image_get(image_ref, read_deleted=True)
    except exception.ImageNotFound:
        return None
    return ImageMeta(id=image.id, sha256=image.checksum or "",
                     disk_format=image.disk_format or "")
