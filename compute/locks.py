"""Per-instance locks: two operations on one instance never overlap."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from flotilla import concurrency


class InstanceLocks:
    """A lock per instance uuid, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._guard = concurrency.Lock()
        self._locks: dict[str, list] = {}   # uuid -> [lock, users]

    @contextlib.contextmanager
    def hold(self, instance_uuid: str) -> Iterator[None]:
        with self._guard:
            entry = self._locks.setdefault(instance_uuid, [concurrency.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._guard:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._locks[instance_uuid]

    def __len__(self) -> int:
        return len(self._locks)
