"""Power states of a guest as the hypervisor reports them (Nova's numbers).

These are facts read from the hypervisor, not intents: the database's
vm_state says what the guest should be, power_state what it is.
"""

from __future__ import annotations

NOSTATE = 0
RUNNING = 1
PAUSED = 3
SHUTDOWN = 4   # shut off: the domain exists but does not run
CRASHED = 6
SUSPENDED = 7  # memory saved to disk (managed save) or guest PM suspend

NAMES = {
    NOSTATE: "nostate",
    RUNNING: "running",
    PAUSED: "paused",
    SHUTDOWN: "shutdown",
    CRASHED: "crashed",
    SUSPENDED: "suspended",
}


def name(state: int) -> str:
    """Readable name of ``state`` for logs and messages."""
    return NAMES.get(state, "unknown(%s)" % state)
