"""Instance states and the one table of operations every service reads.

``vm_state`` is what the instance is meant to be (stable), ``task_state`` the
operation in progress (None when idle), ``power_state`` what the hypervisor
reports (see :mod:`compute.virt.power_state`). Every change of vm_state or
task_state is a compare-and-swap on the pair the caller expects.

:data:`OPERATIONS` is the only list of which operation may start from which
state: the API's 409 checks, the compute agent's guards, the conductor's
flows, the deadlines and the reaper all read it. Adding an operation is one
:class:`Operation` entry here (plus the code that does the work).
"""

from __future__ import annotations

import dataclasses

# vm_state
BUILDING = "building"
ACTIVE = "active"
STOPPED = "stopped"
PAUSED = "paused"
SUSPENDED = "suspended"
ERROR = "error"
DELETED = "deleted"
# Deleted by its owner, kept powered off for [DEFAULT] reclaim_instance_interval.
SOFT_DELETED = "soft-delete"
# Moved to another host or flavor (resize, cold migration), the old copy
# kept on the source until confirmed or reverted: status VERIFY_RESIZE.
RESIZED = "resized"

VM_STATES = (BUILDING, ACTIVE, STOPPED, PAUSED, SUSPENDED, ERROR, DELETED, SOFT_DELETED,
             RESIZED)
# Where a guest exists and no operation is needed to make it so.
STABLE = (ACTIVE, STOPPED, PAUSED, SUSPENDED, ERROR)

# task_state
SCHEDULING = "scheduling"
SPAWNING = "spawning"
REBOOTING = "rebooting"
REBOOTING_HARD = "rebooting_hard"
POWERING_OFF = "powering_off"
POWERING_ON = "powering_on"
PAUSING = "pausing"
UNPAUSING = "unpausing"
SUSPENDING = "suspending"
RESUMING = "resuming"
DELETING = "deleting"
IMAGE_SNAPSHOT = "image_snapshot"
IMAGE_PENDING_UPLOAD = "image_pending_upload"
IMAGE_UPLOADING = "image_uploading"
REBUILDING = "rebuilding"
REBUILD_SPAWNING = "rebuild_spawning"
SOFT_DELETING = "soft-deleting"
RESTORING = "restoring"
MIGRATING = "migrating"
# Resize and cold migration (Nova's names), then confirm or revert.
RESIZE_PREP = "resize_prep"
RESIZE_MIGRATING = "resize_migrating"
RESIZE_MIGRATED = "resize_migrated"
RESIZE_FINISH = "resize_finish"
RESIZE_REVERTING = "resize_reverting"
RESIZE_CONFIRMING = "resize_confirming"

# What the reaper does with a task past its deadline.
ON_TIMEOUT_RESTORE = "restore"   # clear the task; vm_state is the last stable one
ON_TIMEOUT_ERROR = "error"       # clear the task, vm_state ERROR
ON_TIMEOUT_CLEANUP = "cleanup"   # call the conductor flow's cleanup()
ON_TIMEOUT = (ON_TIMEOUT_RESTORE, ON_TIMEOUT_ERROR, ON_TIMEOUT_CLEANUP)


@dataclasses.dataclass(frozen=True)
class Operation:
    """One operation on an instance.

    ``action`` is the instance action name it is recorded under;
    ``task_state`` the task it enters first and ``later_task_states`` the
    ones it moves through after (each gets a fresh deadline of ``timeout``
    seconds, overridable per task in ``[conductor] task_timeouts``);
    ``from_vm_states`` where it may start (always from no task);
    ``to_vm_state`` where success leaves it (None: unchanged); ``status``
    the API status shown while it runs on a server whose vm_state is one of
    ``status_vm_states`` (None: the vm_state's); ``flow`` the conductor
    flow that runs it, whose cleanup the reaper calls when ``on_timeout``
    is ``cleanup``.
    """

    name: str
    action: str
    task_state: str
    from_vm_states: tuple[str, ...]
    to_vm_state: str | None
    timeout: int
    on_timeout: str = ON_TIMEOUT_RESTORE
    later_task_states: tuple[str, ...] = ()
    status: str | None = None
    flow: str | None = None
    status_vm_states: tuple[str, ...] = (ACTIVE,)

    def __post_init__(self) -> None:
        if self.on_timeout not in ON_TIMEOUT:
            raise ValueError("%s: on_timeout must be one of %s" % (self.name, ON_TIMEOUT))
        if self.on_timeout == ON_TIMEOUT_CLEANUP and not self.flow:
            raise ValueError("%s: a cleanup on timeout needs a flow" % self.name)

    @property
    def task_states(self) -> tuple[str, ...]:
        return (self.task_state, *self.later_task_states)


OPERATIONS: dict[str, Operation] = {op.name: op for op in (
    Operation("build", "create", SCHEDULING, (BUILDING,), ACTIVE, 600,
              ON_TIMEOUT_CLEANUP, later_task_states=(SPAWNING,), flow="build"),
    Operation("delete", "delete", DELETING, (BUILDING, *STABLE, SOFT_DELETED, RESIZED),
              DELETED, 300,
              ON_TIMEOUT_CLEANUP, flow="delete"),
    Operation("soft_delete", "delete", SOFT_DELETING, STABLE, SOFT_DELETED, 300),
    Operation("restore", "restore", RESTORING, (SOFT_DELETED,), ACTIVE, 180),
    Operation("stop", "stop", POWERING_OFF, (ACTIVE, PAUSED, SUSPENDED, ERROR), STOPPED, 300),
    Operation("start", "start", POWERING_ON, (STOPPED,), ACTIVE, 180),
    Operation("reboot_soft", "reboot", REBOOTING, (ACTIVE,), ACTIVE, 300, status="REBOOT"),
    Operation("reboot_hard", "reboot", REBOOTING_HARD, STABLE, ACTIVE, 180,
              status="HARD_REBOOT"),
    Operation("pause", "pause", PAUSING, (ACTIVE,), PAUSED, 120),
    Operation("unpause", "unpause", UNPAUSING, (PAUSED,), ACTIVE, 120),
    Operation("suspend", "suspend", SUSPENDING, (ACTIVE,), SUSPENDED, 300),
    Operation("resume", "resume", RESUMING, (SUSPENDED,), ACTIVE, 300),
    # createImage and createBackup (the API records the action under the
    # request's own name): copy the root disk on the host, upload it to the
    # image service, the server back where it was. Each task state gets its
    # own deadline; the flow's cleanup deletes the image and clears the task.
    Operation("snapshot", "createImage", IMAGE_SNAPSHOT,
              (ACTIVE, STOPPED, PAUSED, SUSPENDED), None, 1800, ON_TIMEOUT_CLEANUP,
              later_task_states=(IMAGE_PENDING_UPLOAD, IMAGE_UPLOADING),
              flow="snapshot"),
    # The root disk replaced from an image, same uuid and host; a stopped
    # server stays stopped, an active or failed one ends active.
    Operation("rebuild", "rebuild", REBUILDING, (ACTIVE, STOPPED, ERROR), None, 900,
              ON_TIMEOUT_CLEANUP, later_task_states=(REBUILD_SPAWNING,),
              status="REBUILD", status_vm_states=(ACTIVE, STOPPED, ERROR),
              flow="rebuild"),
    # Live migration (os-migrateLive): the guest moves to another host while
    # it runs (or stays paused); its flow keeps its state on the migration
    # record and its cleanup ends the job and finds where the guest runs.
    Operation("live_migrate", "live-migration", MIGRATING, (ACTIVE, PAUSED), None, 1800,
              ON_TIMEOUT_CLEANUP, status="MIGRATING", status_vm_states=(ACTIVE, PAUSED),
              flow="live_migrate"),
    # Resize and cold migration (a resize to the same flavor; the API
    # records "migrate" for it): the guest is powered off, its root disk
    # copied to another host through the hypervisors, and booted there with
    # the new flavor; the server ends in vm_state resized (VERIFY_RESIZE)
    # holding a claim on both hosts. Each task gets its own deadline; the
    # flow's cleanup reverts to the source.
    Operation("resize", "resize", RESIZE_PREP, (ACTIVE, STOPPED), RESIZED, 1800,
              ON_TIMEOUT_CLEANUP,
              later_task_states=(RESIZE_MIGRATING, RESIZE_MIGRATED, RESIZE_FINISH),
              status="RESIZE", status_vm_states=(ACTIVE, STOPPED), flow="resize"),
    # Confirm: the source copy and the source claim go; the server ends
    # active or stopped as it was before. The cleanup finishes it again.
    Operation("confirm_resize", "confirmResize", RESIZE_CONFIRMING, (RESIZED,), None,
              300, ON_TIMEOUT_CLEANUP, status_vm_states=(RESIZED,), flow="resize"),
    # Revert: the destination copy and claim go, the original boots on the
    # source with the old flavor. The cleanup finishes it again.
    Operation("revert_resize", "revertResize", RESIZE_REVERTING, (RESIZED,), None, 900,
              ON_TIMEOUT_CLEANUP, status="REVERT_RESIZE", status_vm_states=(RESIZED,),
              flow="resize"),
)}

_BY_TASK: dict[str, Operation] = {}
for _op in OPERATIONS.values():
    for _task in _op.task_states:
        if _task in _BY_TASK:
            raise RuntimeError("task_state %s belongs to two operations" % _task)
        _BY_TASK[_task] = _op

TASK_STATES: tuple[str, ...] = tuple(_BY_TASK)


def operation(name: str) -> Operation:
    """The operation called ``name``; KeyError names it when unknown."""
    return OPERATIONS[name]


def operation_for_task(task_state: str | None) -> Operation | None:
    """The operation a task_state belongs to (None for no task or one this
    version does not know, e.g. written by a newer service)."""
    return _BY_TASK.get(task_state) if task_state else None


def default_timeout(task_state: str) -> int:
    """Built-in seconds ``task_state`` may last (600 for an unknown task)."""
    op = operation_for_task(task_state)
    return op.timeout if op is not None else 600


def task_status(vm_state: str, task_state: str | None) -> str | None:
    """The API status an operation in progress shows, if it has one."""
    op = operation_for_task(task_state)
    if op is not None and op.status and vm_state in op.status_vm_states:
        return op.status
    return None


# --- volumes (issue 11) -----------------------------------------------------------
# A volume's ``status`` (Cinder's names). Every change is a compare-and-swap
# on the status the caller expects (flotilla.db.volumes.volume_update).
VOLUME_CREATING = "creating"
VOLUME_AVAILABLE = "available"
VOLUME_RESERVED = "reserved"
VOLUME_ATTACHING = "attaching"
VOLUME_IN_USE = "in-use"
VOLUME_DETACHING = "detaching"
VOLUME_DELETING = "deleting"
VOLUME_ERROR = "error"
VOLUME_ERROR_DELETING = "error_deleting"
VOLUME_EXTENDING = "extending"
VOLUME_ERROR_EXTENDING = "error_extending"
# Being copied into an image (os-volume_upload_image); back to available or
# in-use (as its attachments say) when the copy ends, whatever its outcome.
VOLUME_UPLOADING = "uploading"
# Re-imaging a server's root volume in place (a rebuild from compute 2.93,
# Cinder's reimage status): in-use -> downloading -> in-use.
VOLUME_DOWNLOADING = "downloading"
# Statuses an operation holds; each has a deadline ([volume]
# operation_timeout) after which the reaper ends it (see conductor.reaper).
VOLUME_TRANSITIONAL = (VOLUME_CREATING, VOLUME_RESERVED, VOLUME_ATTACHING,
                       VOLUME_DETACHING, VOLUME_DELETING, VOLUME_EXTENDING,
                       VOLUME_UPLOADING, VOLUME_DOWNLOADING)
# Where the reaper leaves a volume whose transitional status timed out:
# a volume that may be half attached or half detached is in error (an
# operator looks); one that was being deleted is error_deleting. An upload
# that timed out leaves the volume usable again (in-use when it is attached,
# see conductor.flows.volume reap) and its image is discarded; a re-image
# that timed out may have half written the volume: error.
VOLUME_ON_TIMEOUT = {VOLUME_CREATING: VOLUME_ERROR, VOLUME_RESERVED: VOLUME_ERROR,
                     VOLUME_ATTACHING: VOLUME_ERROR, VOLUME_DETACHING: VOLUME_ERROR,
                     VOLUME_DELETING: VOLUME_ERROR_DELETING,
                     VOLUME_EXTENDING: VOLUME_ERROR_EXTENDING,
                     VOLUME_UPLOADING: VOLUME_AVAILABLE,
                     VOLUME_DOWNLOADING: VOLUME_ERROR}
# A server can have volumes attached or detached while in these vm_states.
VOLUME_ATTACH_VM_STATES = (ACTIVE, STOPPED)

# --- volume snapshots (issue 11) --------------------------------------------------
# A volume snapshot's ``status`` (Cinder's names); every change a
# compare-and-swap (flotilla.db.volume_snapshots.snapshot_update).
SNAPSHOT_CREATING = "creating"
SNAPSHOT_AVAILABLE = "available"
SNAPSHOT_DELETING = "deleting"
SNAPSHOT_ERROR = "error"
SNAPSHOT_ERROR_DELETING = "error_deleting"
SNAPSHOT_TRANSITIONAL = (SNAPSHOT_CREATING, SNAPSHOT_DELETING)
SNAPSHOT_ON_TIMEOUT = {SNAPSHOT_CREATING: SNAPSHOT_ERROR,
                       SNAPSHOT_DELETING: SNAPSHOT_ERROR_DELETING}
# A volume can be snapshotted in these statuses (in-use: crash-consistent).
SNAPSHOT_VOLUME_STATUSES = (VOLUME_AVAILABLE, VOLUME_IN_USE)
