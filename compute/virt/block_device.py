"""Volumes as a virt driver sees them, and guest device names.

A volume reaches a compute host over the network, never through a shared
path (DESIGN.md, "Volumes, snapshots and migration"): the volume service
exports it over NBD and hands the compute side a :class:`VolumeConnection`.
The agent passes it to ``ComputeDriver.attach_volume`` (and to the
migration methods, which plug the same export on the destination).

Device names (``vda``, ``vdb``, ...) are chosen by the agent's driver with
:func:`next_device_name`, never by the tenant: the root disk is ``vda`` and
each further disk takes the first free name.
"""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Iterable, Mapping
from typing import Any

from flotilla import exception

NBD = "nbd"
PROTOCOLS = (NBD,)

#: virtio-blk names: one letter after the prefix. Each virtio disk takes a
#: PCI slot of the guest's bus, so a guest has at most this many disks.
DEVICE_PREFIX = "vd"
MAX_DISKS = 26
ROOT_DEVICE = "vda"


class VolumeUnreachable(exception.FlotillaException):
    """A volume disk of a guest does not answer (its export is away)."""

    msg_fmt = ("Volume %(volume_id)s of instance %(instance_uuid)s is unreachable: "
               "%(reason)s")
    code = 503


@dataclasses.dataclass(frozen=True)
class VolumeConnection:
    """How a compute host reaches one exported volume.

    ``export`` is the NBD export name on ``host``:``port``; the volume id is
    shown to the guest as the disk's serial number, so the guest (and a
    human) can tell which disk is which volume. ``tls`` says the export
    takes only TLS clients (``[volume] nbd_tls``): the compute host's
    libvirt then connects with the certificates of its qemu.conf
    ``nbd_tls_x509_cert_dir``; a connection without the key is plain.
    """

    volume_id: str
    export: str
    host: str
    port: int
    protocol: str = NBD
    format: str = "raw"
    tls: bool = False
    # The volume is read-only (os-update_readonly_flag): the guest's disk
    # gets <readonly/> and QEMU opens the export read-only (RPC 1.13).
    read_only: bool = False

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError("volume %s: protocol %r is not one of %s"
                             % (self.volume_id, self.protocol, PROTOCOLS))
        if not self.volume_id or not self.export or not self.host:
            raise ValueError("volume connection needs volume_id, export and host")
        if not 0 < int(self.port) < 65536:
            raise ValueError("volume %s: port %r out of range"
                             % (self.volume_id, self.port))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VolumeConnection:
        return cls(volume_id=str(data["volume_id"]), export=str(data["export"]),
                   host=str(data["host"]), port=int(data["port"]),
                   protocol=str(data.get("protocol") or NBD),
                   format=str(data.get("format") or "raw"),
                   tls=data.get("tls") is True,
                   read_only=data.get("read_only") is True)

    @classmethod
    def coerce(cls, value: VolumeConnection | Mapping[str, Any]) -> VolumeConnection:
        return value if isinstance(value, VolumeConnection) else cls.from_dict(value)


def device_names(prefix: str = DEVICE_PREFIX, limit: int = MAX_DISKS) -> list[str]:
    """Every name a guest may use, in allocation order (vda ... vdz)."""
    return [prefix + letter for letter in string.ascii_lowercase[:limit]]


def next_device_name(in_use: Iterable[str], prefix: str = DEVICE_PREFIX,
                     limit: int = MAX_DISKS) -> str:
    """The first device name not in ``in_use``.

    Raises DeviceNameUnavailable when all ``limit`` names are taken.
    """
    taken = set(in_use)
    for name in device_names(prefix, limit):
        if name not in taken:
            return name
    raise exception.DeviceNameUnavailable(
        device=prefix + "*", reason="all %d device names are in use" % limit)


def check_device_name(name: str, in_use: Iterable[str],
                      prefix: str = DEVICE_PREFIX, limit: int = MAX_DISKS) -> str:
    """``name`` when a caller may ask for it: a valid name not in use."""
    if name not in device_names(prefix, limit):
        raise exception.DeviceNameUnavailable(
            device=name, reason="not one of %s%s..%s%s" % (
                prefix, "a", prefix, string.ascii_lowercase[limit - 1]))
    if name in set(in_use):
        raise exception.DeviceNameUnavailable(device=name, reason="in use")
    return name


def boots_from_volume(block_device_info: Iterable[Any] | None) -> bool:
    """Whether a spawn's block devices include the boot disk (a volume
    with boot_index 0: the guest then has no local root disk)."""
    return any(getattr(b, "boot_index", None) == 0 and getattr(b, "is_volume", False)
               for b in block_device_info or ())


def spawn_volumes(block_device_info: Iterable[Any] | None, taken: Iterable[str] = ()
                  ) -> list[tuple[str, VolumeConnection]]:
    """``(device, connection)`` of each volume disk a guest is spawned with
    (BlockDeviceMapping objects carrying their ``connection_info``): the
    boot volume is ``vda`` (ROOT_DEVICE: the BIOS boots the first disk),
    the others keep their recorded ``device_name`` (a guest defined again
    elsewhere, as a live migration's destination, must match its source)
    or take the first names not in ``taken`` (the local disks')."""
    result: list[tuple[str, VolumeConnection]] = []
    used = set(taken)
    volumes = [b for b in block_device_info or () if getattr(b, "is_volume", False)]
    recorded = {b.device_name for b in volumes if b.boot_index != 0 and b.device_name}
    for bdm in sorted(volumes, key=lambda b: (b.boot_index != 0, not b.device_name)):
        if not bdm.connection_info:
            raise exception.Invalid(reason="volume %s has no connection" % bdm.volume_id)
        if bdm.boot_index == 0:
            device = ROOT_DEVICE
        elif bdm.device_name and bdm.device_name not in used:
            device = bdm.device_name
        else:
            device = next_device_name(used | recorded)
        if device in used and bdm.boot_index != 0:
            raise exception.DeviceNameUnavailable(device=device, reason="in use")
        used.add(device)
        result.append((device, VolumeConnection.coerce(bdm.connection_info)))
    return result
