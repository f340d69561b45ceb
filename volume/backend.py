"""The interface of a volume backend: where a volume's bytes live.

A backend makes and removes raw volume files on its volume host; it knows
nothing about exports (see :mod:`volume.nbd`) or the database. Every method
is idempotent, so the manager can repeat one after a crash.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Iterable, Iterator


@dataclasses.dataclass(frozen=True)
class Capacity:
    """A backend's space, in bytes."""

    total_bytes: int
    free_bytes: int
    #: What the backend's volume and snapshot files take (sparse files take
    #: less than their size).
    allocated_bytes: int


class VolumeBackend(abc.ABC):
    #: Name recorded as the volume's ``pool``.
    pool: str = ""

    @abc.abstractmethod
    def start(self) -> None:
        """Make the backend usable (e.g. define the storage pool)."""

    @abc.abstractmethod
    def create(self, volume_id: str, size_gb: int) -> str:
        """Create the raw volume (zero-filled, ``size_gb`` GiB) and return
        its path; an existing one of that name is returned as it is."""

    @abc.abstractmethod
    def delete(self, volume_id: str) -> None:
        """Remove the volume; nothing happens when it does not exist."""

    @abc.abstractmethod
    def extend(self, volume_id: str, size_gb: int) -> None:
        """Grow the volume to ``size_gb`` GiB (the new bytes read as zeros);
        a volume already that large is left as it is."""

    @abc.abstractmethod
    def path(self, volume_id: str) -> str | None:
        """The volume's file, None when it does not exist."""

    def volume_ids(self) -> list[str]:
        """The ids of the volumes in the pool (what ``create`` was given),
        so leftovers can be found; by default none are known."""
        return []

    @abc.abstractmethod
    def free_bytes(self) -> int:
        """Bytes still available for new volumes."""

    def capacity(self) -> Capacity:
        """The backend's total, free and allocated bytes (reported into the
        database for placement, see volume.capacity). By default: a backend
        that knows only its free bytes, which count as its total too."""
        free = self.free_bytes()
        return Capacity(total_bytes=free, free_bytes=free, allocated_bytes=0)

    # Streams (not every backend has them: NotImplementedError).

    def upload(self, volume_id: str, chunks: Iterable[bytes]) -> int:
        """Write ``chunks`` from the volume's first byte on (the rest stays
        as it was); the bytes written. More bytes than the volume holds:
        ValueError, and what was sent may be partly written."""
        raise NotImplementedError

    def download(self, volume_id: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """The volume's bytes, every one of its size, in chunks of at most
        ``chunk_size``; a reader that stops early ends the transfer."""
        raise NotImplementedError

    # Snapshots and volumes made from a source (not every backend has them:
    # the manager puts the volume or snapshot in error on NotImplementedError).

    def create_snapshot_file(self, snapshot_id: str, size_gb: int) -> str:
        """An empty raw snapshot file of ``size_gb`` GiB (for a copy the
        storage daemon writes); an existing one is returned as it is."""
        raise NotImplementedError

    def snapshot_path(self, snapshot_id: str) -> str | None:
        """The snapshot's file, None when it does not exist."""
        raise NotImplementedError

    def delete_snapshot(self, snapshot_id: str) -> None:
        """Remove the snapshot; nothing happens when it does not exist."""
        raise NotImplementedError

    def create_from_snapshot(self, volume_id: str, snapshot_id: str, size_gb: int) -> str:
        """A new volume holding the snapshot's bytes, grown to ``size_gb``
        GiB (at least the snapshot's size); its path."""
        raise NotImplementedError

    def stop(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections."""


def load(conf) -> VolumeBackend:
    """The backend ``[volume] backend`` names."""
    if conf.volume.backend == "libvirt_pool":
        from volume.libvirt_pool import LibvirtPoolBackend
        return LibvirtPoolBackend(conf)
    raise ValueError("unknown [volume] backend %r" % conf.volume.backend)
