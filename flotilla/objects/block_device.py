"""BlockDeviceMapping: one disk of an instance beyond its image root."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from flotilla.objects.base import FlotillaObject, is_primitive, register

SOURCE_TYPES = ("image", "volume", "snapshot", "blank")
DESTINATION_TYPES = ("local", "volume")


@register
@dataclasses.dataclass(frozen=True)
class BlockDeviceMapping(FlotillaObject):
    """How one disk of an instance is made and reached (Nova's BDM v2).

    ``source_type``/``destination_type`` say where the data comes from and
    where it lives; ``boot_index`` 0 is the boot disk, None not bootable.
    ``connection_info`` is what a compute host needs to reach a volume,
    given by the volume service: ``{"driver_volume_type": "nbd", "data":
    {"host", "port", "export", "tls"}}``. ``device_name`` is chosen by the compute
    agent (vdb, vdc, ...) and recorded.

    History: 1.0 - first version.
    """

    VERSION = "1.0"

    source_type: str
    destination_type: str
    boot_index: int | None = None
    device_name: str | None = None
    volume_id: str | None = None
    image_id: str | None = None
    snapshot_id: str | None = None
    volume_size: int | None = None
    delete_on_termination: bool = False
    disk_bus: str = "virtio"
    connection_info: Mapping[str, Any] | None = None
    attachment_id: str | None = None
    tag: str | None = None

    def __post_init__(self) -> None:
        if self.source_type not in SOURCE_TYPES:
            raise ValueError("source_type must be one of %s" % ", ".join(SOURCE_TYPES))
        if self.destination_type not in DESTINATION_TYPES:
            raise ValueError("destination_type must be one of %s"
                             % ", ".join(DESTINATION_TYPES))

    @classmethod
    def coerce(cls, value: BlockDeviceMapping | Mapping[str, Any]) -> BlockDeviceMapping:
        """The object from itself, its primitive or a plain dict of fields."""
        if isinstance(value, cls):
            return value
        if is_primitive(value):
            return cls.from_primitive(value)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in value.items() if k in names})

    @property
    def is_volume(self) -> bool:
        return self.destination_type == "volume"

    @property
    def makes_volume(self) -> bool:
        """Whether the build makes this disk's volume (from an image, from a
        volume snapshot, or blank) rather than attach an existing one."""
        return self.is_volume and self.source_type in ("image", "snapshot", "blank")
