"""Lifecycle events a virt driver reports: a guest changed power state.

Drivers call the registered listener with a :class:`LifecycleEvent` from a
thread of their own; a listener must return quickly (hand the event to the
agent's work queue) and must not call back into the driver synchronously.
Events can be lost (a dropped connection), so the agent's periodic power
state sync stays the source of truth.
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


EventListener = Callable[[LifecycleEvent], None]
