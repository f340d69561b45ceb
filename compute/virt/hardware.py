"""What a virt driver is told about an instance and its image.

The compute manager builds these from its database objects (or from the
dicts of an RPC message with :meth:`Instance.from_dict`); drivers read them
and never write back. Everything user-supplied (display name, metadata) is
free text: drivers must treat it as data, never as markup or a path.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

_UUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


@dataclasses.dataclass(frozen=True)
class Flavor:
    """Size of an instance. ``extra`` holds the flavor's extra specs
    (e.g. ``{"network": True}`` asks the driver for a NIC)."""

    name: str = "custom"
    memory_mb: int = 64
    vcpus: int = 1
    root_gb: int = 0
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Flavor:
        known = {f.name for f in dataclasses.fields(cls)}
        extra = dict(data.get("extra") or data.get("extra_specs") or {})
        # Unknown top-level keys are kept as extras rather than dropped.
        extra.update({k: v for k, v in data.items()
                      if k not in known and k != "extra_specs"})
        flavor = cls(name=str(data.get("name", "custom")),
                     memory_mb=int(data["memory_mb"]),
                     vcpus=int(data.get("vcpus", 1)),
                     root_gb=int(data.get("root_gb", 0)),
                     extra=extra)
        if flavor.memory_mb < 1 or flavor.vcpus < 1 or flavor.root_gb < 0:
            raise ValueError("flavor %r has a non-positive size" % flavor.name)
        return flavor

    def wants_network(self) -> bool:
        value = self.extra.get("network", False)
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes", "on")
        return bool(value)


@dataclasses.dataclass(frozen=True)
class Instance:
    """An instance as a driver sees it.

    ``uuid`` identifies the guest on the hypervisor (the libvirt domain
    UUID); ``name`` is the server's user-chosen display name, free text.
    """

    uuid: str
    name: str = ""
    project_id: str = ""
    user_id: str = ""
    flavor: Flavor = dataclasses.field(default_factory=Flavor)
    image_ref: str = ""
    metadata: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        # The uuid ends up in paths and domain names: accept only a uuid.
        if not _UUID.match(self.uuid or ""):
            raise ValueError("instance uuid %r is not a UUID" % (self.uuid,))
        object.__setattr__(self, "uuid", self.uuid.lower())

    @property
    def domain_name(self) -> str:
        """Hypervisor-side name; derived from the uuid so it is unique and
        safe whatever the user called the server."""
        return "instance-%s" % self.uuid

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Instance:
        flavor = data.get("flavor") or {}
        if not isinstance(flavor, Flavor):
            flavor = Flavor.from_dict(flavor)
        return cls(uuid=str(data["uuid"]),
                   name=str(data.get("display_name") or data.get("name") or ""),
                   project_id=str(data.get("project_id") or ""),
                   user_id=str(data.get("user_id") or ""),
                   flavor=flavor,
                   image_ref=str(data.get("image_ref") or ""),
                   metadata={str(k): str(v) for k, v in
                             (data.get("metadata") or {}).items()})

    @classmethod
    def coerce(cls, value: Instance | Mapping[str, Any]) -> Instance:
        """Accept an Instance or its dict form (what drivers take)."""
        return value if isinstance(value, Instance) else cls.from_dict(value)


@dataclasses.dataclass(frozen=True)
class ImageMeta:
    """Where a root disk image comes from.

    ``source`` is a local path, a ``file://`` URL or an ``http(s)://`` URL;
    ``sha256`` is the expected hex digest of its bytes (checked on fetch;
    empty means unchecked, which only tests should use).
    """

    id: str
    source: str
    sha256: str = ""
    disk_format: str = ""  # detected with qemu-img when empty
    min_ram_mb: int = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImageMeta:
        return cls(id=str(data["id"]),
                   source=str(data.get("source") or data.get("url") or ""),
                   sha256=str(data.get("sha256") or "").lower(),
                   disk_format=str(data.get("disk_format") or ""),
                   min_ram_mb=int(data.get("min_ram_mb") or 0))

    @classmethod
    def coerce(cls, value: ImageMeta | Mapping[str, Any] | None) -> ImageMeta | None:
        if value is None or isinstance(value, ImageMeta):
            return value
        return cls.from_dict(value)
