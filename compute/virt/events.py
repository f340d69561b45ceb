"""Events a virt driver reports about its guests.

* :class:`LifecycleEvent`: a guest changed power state.
* :class:`DeviceRemovedEvent`: a device the agent asked to detach is gone
  from the running guest (the guest let go of it), so whatever backed it
  (a volume's export) may be released.
* :class:`VolumeIOErrorEvent`: an I/O error of a volume disk paused the
  guest (its export went away); the agent resumes it once the volume
  answers again (ComputeDriver.resume_after_io_error).

Drivers call the registered listener with these from a thread of their
own; a listener must return quickly (hand the event to the agent's work
queue) and must not call back into the driver synchronously. Events can be
lost (a dropped connection), so the agent's periodic power state sync stays
the source of truth, and a detach that waits for its event also asks
``get_volume_devices`` when its deadline passes.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from compute.virt import power_state

STARTED = "started"
STOPPED = "stopped"
PAUSED = "paused"
RESUMED = "resumed"
SUSPENDED = "suspended"
CRASHED = "crashed"

TRANSITIONS = (STARTED, STOPPED, PAUSED, RESUMED, SUSPENDED, CRASHED)

# The power state a transition leaves the guest in.
POWER_STATE_AFTER = {
    STARTED: power_state.RUNNING,
    RESUMED: power_state.RUNNING,
    STOPPED: power_state.SHUTDOWN,
    PAUSED: power_state.PAUSED,
    SUSPENDED: power_state.SUSPENDED,
    CRASHED: power_state.CRASHED,
}


@dataclasses.dataclass(frozen=True)
class LifecycleEvent:
    instance_uuid: str
    transition: str
    timestamp: float = dataclasses.field(default_factory=time.time)

    @property
    def power_state(self) -> int:
        return POWER_STATE_AFTER[self.transition]


@dataclasses.dataclass(frozen=True)
class DeviceRemovedEvent:
    """The guest released a detached volume's disk (``device`` is its name
    in the guest, e.g. vdb)."""

    instance_uuid: str
    volume_id: str
    device: str = ""
    timestamp: float = dataclasses.field(default_factory=time.time)


@dataclasses.dataclass(frozen=True)
class VolumeIOErrorEvent:
    """A request to the volume's disk failed and paused the guest."""

    instance_uuid: str
    volume_id: str
    timestamp: float = dataclasses.field(default_factory=time.time)


Event = LifecycleEvent | DeviceRemovedEvent | VolumeIOErrorEvent
EventListener = Callable[[Event], None]
