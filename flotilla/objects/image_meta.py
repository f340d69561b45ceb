"""ImageMeta: an image as a compute agent fetches it and a scheduler
filters on it."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from flotilla.objects.base import FlotillaObject, register


@register
@dataclasses.dataclass(frozen=True)
class ImageMeta(FlotillaObject):
    """Where a disk image comes from and what it needs.

    ``source`` is a local path, a ``file://`` URL or an ``http(s)://`` URL
    (a signed download URL for agents); ``sha256`` is the expected hex
    digest of its bytes (checked on fetch; empty means unchecked, which only
    tests should use); ``properties`` are the image's properties (arch,
    hypervisor_type, ...) that scheduler filters read.

    History: 1.0 - first version.
    """

    VERSION = "1.0"

    id: str
    source: str = ""
    sha256: str = ""
    disk_format: str = ""       # detected with qemu-img when empty
    min_ram_mb: int = 0
    min_disk_gb: int = 0
    size: int | None = None
    properties: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> ImageMeta:
        return cls(id=str(data["id"]),
                   source=str(data.get("source") or data.get("url") or ""),
                   sha256=str(data.get("sha256") or "").lower(),
                   disk_format=str(data.get("disk_format") or ""),
                   min_ram_mb=int(data.get("min_ram_mb") or data.get("min_ram") or 0),
                   min_disk_gb=int(data.get("min_disk_gb") or data.get("min_disk") or 0),
                   size=data.get("size"),
                   properties=dict(data.get("properties") or {}))

    @classmethod
    def coerce(cls, value: ImageMeta | Mapping[str, Any] | None) -> ImageMeta | None:
        if value is None or isinstance(value, ImageMeta):
            return value
        return cls.from_record(value)
