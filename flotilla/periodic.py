"""Periodic tasks: methods a manager wants run every N seconds.

Decorate a manager method with ``@periodic_task(spacing=...)``; the service
runner calls it on schedule. ``spacing`` is seconds, or a callable given
the task's object (the manager) and returning seconds, so an option of that
daemon's own configuration is read at run time::

    @periodic_task(spacing=lambda self: self.conf.conductor.reaper_interval)

A spacing of 0 or less disables the task. A task that raises is logged and
runs again at its next turn: one failing task never stops the others.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from flotilla import concurrency

LOG = logging.getLogger(__name__)


def periodic_task(spacing: float | Callable[[object], float], run_immediately: bool = False):
    def decorator(fn):
        fn._periodic_spacing = spacing
        fn._periodic_run_immediately = run_immediately
        fn._rpc_private = True    # run by the service, never over RPC
        return fn
    return decorator


# A disabled task comes round so rarely it never runs.
_NEVER = 10.0 ** 9


def _spacing(task) -> float:
    spacing = task._periodic_spacing
    value = float(spacing(task.__self__) if callable(spacing) else spacing)
    return value if value > 0 else _NEVER


def find_tasks(obj) -> list:
    """The bound periodic tasks of ``obj`` (a manager)."""
    tasks = []
    for name in dir(type(obj)):
        attr = getattr(type(obj), name, None)
        if callable(attr) and hasattr(attr, "_periodic_spacing"):
            tasks.append(getattr(obj, name))
    return tasks


class PeriodicRunner:
    """Runs the tasks of one object on a single loop until stopped."""

    def __init__(self, tasks: list, tick: float = 0.5) -> None:
        self._tasks = tasks
        self._tick = tick
        self._stop = concurrency.Event()
        self._handle = None

    def start(self) -> None:
        if self._tasks:
            self._handle = concurrency.spawn(self._loop)

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        if self._handle is not None:
            try:
                self._handle.wait(timeout)
            except TimeoutError:
                LOG.warning("periodic tasks still running after %ss", timeout)

    def _loop(self) -> None:
        now = time.monotonic()
        due = {task: (now if task._periodic_run_immediately else now + _spacing(task))
               for task in self._tasks}
        while not self._stop.is_set():
            now = time.monotonic()
            for task in self._tasks:
                if self._stop.is_set():
                    break
                if now >= due[task]:
                    try:
                        task()
                    except Exception:
                        LOG.exception("periodic task %s failed", task.__name__)
                    due[task] = time.monotonic() + _spacing(task)
            next_due = min(due.values()) - time.monotonic()
            self._stop.wait(max(0.05, min(self._tick, next_due)))
