"""Instance states shared by every service.

``vm_state`` is what the instance is meant to be (stable), ``task_state`` the
operation in progress (None when idle), ``power_state`` what the hypervisor
reports (see :mod:`compute.virt.power_state`). Every change of vm_state or
task_state is a compare-and-swap on the pair the caller expects.
"""

from __future__ import annotations

# vm_state
BUILDING = "building"
ACTIVE = "active"
STOPPED = "stopped"
PAUSED = "paused"
SUSPENDED = "suspended"
ERROR = "error"
DELETED = "deleted"

VM_STATES = (BUILDING, ACTIVE, STOPPED, PAUSED, SUSPENDED, ERROR, DELETED)

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
MIGRATING = "migrating"
IMAGE_SNAPSHOT = "image_snapshot"

TASK_STATES = (SCHEDULING, SPAWNING, REBOOTING, REBOOTING_HARD, POWERING_OFF,
               POWERING_ON, PAUSING, UNPAUSING, SUSPENDING, RESUMING, DELETING,
               MIGRATING, IMAGE_SNAPSHOT)

# Seconds a task may take before the reaper ends it (overridable per task in
# [conductor] task_timeouts).
DEFAULT_TASK_TIMEOUTS = {
    SCHEDULING: 300,
    SPAWNING: 600,
    REBOOTING: 300,
    REBOOTING_HARD: 180,
    POWERING_OFF: 300,
    POWERING_ON: 180,
    PAUSING: 120,
    UNPAUSING: 120,
    SUSPENDING: 300,
    RESUMING: 300,
    DELETING: 300,
    MIGRATING: 1800,
    IMAGE_SNAPSHOT: 1800,
}
