"""Retry a database transaction that SQLite aborted for a lock conflict.

On SQLite (the embedded default) a transaction that read before writing
fails at once with "database is locked" when another writer committed in
between (WAL snapshot conflict: the busy timeout does not apply). The
transaction was rolled back whole, so running it again is safe; the
conductor, which does every write of the cloud, retries such failures a few
times with a short random pause. PostgreSQL never raises this.

Retry ONE database function (one transaction), never a method made of
several: re-running a sequence whose first write committed would repeat it
(an action event finished twice is a NotFound).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from typing import Any, TypeVar

from flotilla import concurrency, exception

T = TypeVar("T")

ATTEMPTS = 8


def _locked(exc: exception.DBError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, retried on a lock conflict."""
    for attempt in range(ATTEMPTS):
        try:
            return fn(*args, **kwargs)
        except exception.DBError as exc:
            if not _locked(exc) or attempt == ATTEMPTS - 1:
                raise
            concurrency.sleep(random.uniform(0.005, 0.02) * (attempt + 1))
    raise AssertionError("unreachable")


class RetryingAPI:
    """A module's functions, each called through :func:`call` (the flows
    and the reaper use ``db`` from here instead of ``flotilla.db.api``)."""

    def __init__(self, module: Any) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._module, name)
        if not callable(value) or isinstance(value, type):
            return value
        wrapped = functools.partial(call, value)
        setattr(self, name, wrapped)  # cached: next lookups skip __getattr__
        return wrapped


def _make() -> tuple[RetryingAPI, RetryingAPI]:
    from flotilla.db import api as db_api
    from flotilla.db import scheduling as sched_api
    return RetryingAPI(db_api), RetryingAPI(sched_api)


db, sched_db = _make()
