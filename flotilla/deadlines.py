"""Task deadlines: every task_state is entered with the time it must end by.

The API (when it records a new task such as ``scheduling``), the conductor's
flows and the compute agents (through ConductorManager.instance_update) all
use :func:`task_deadline`, so the reaper can end any task that overruns.
"""

from __future__ import annotations

import datetime

from oslo_config import cfg

from flotilla import states


def task_timeout(conf: cfg.ConfigOpts, task_state: str) -> int:
    """Seconds ``task_state`` may last: ``[conductor] task_timeouts`` or the
    operation's timeout in :data:`flotilla.states.OPERATIONS`."""
    overrides = conf.conductor.task_timeouts or {}
    if task_state in overrides:
        return int(overrides[task_state])
    return states.default_timeout(task_state)


def task_deadline(conf: cfg.ConfigOpts, task_state: str | None,
                  now: datetime.datetime | None = None) -> datetime.datetime | None:
    """When a task entered now must be over (None when idle)."""
    if task_state is None:
        return None
    now = now or datetime.datetime.now(datetime.UTC)
    return now + datetime.timedelta(seconds=task_timeout(conf, task_state))
