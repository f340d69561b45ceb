"""The interface of a volume backend: where a volume's bytes live.

A backend makes and removes raw volume files on its volume host; it knows
nothing about exports (see :mod:`volume.nbd`) or the database. Every method
is idempotent, so the manager can repeat one after a crash.
"""

from __future__ import annotations

import abc


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

    @abc.abstractmethod
    def free_bytes(self) -> int:
        """Bytes still available for new volumes."""

    def stop(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections."""


def load(conf) -> VolumeBackend:
    """The backend ``[volume] backend`` names."""
    if conf.volume.backend == "libvirt_pool":
        from volume.libvirt_pool import LibvirtPoolBackend
        return LibvirtPoolBackend(conf)
    raise ValueError("unknown [volume] backend %r" % conf.volume.backend)
