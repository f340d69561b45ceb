"""RequestSpec: what the instances of one request need from a host."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from flotilla.objects.base import FlotillaObject, register
from flotilla.objects.flavor import Flavor
from flotilla.objects.image_meta import ImageMeta


@register
@dataclasses.dataclass(frozen=True)
class RequestSpec(FlotillaObject):
    """The scheduler's input for one request (one or several instances).

    ``group`` is a server group uuid; ``scheduler_hints`` the hints the user
    gave (``same_host``, ``different_host``, ...); ``requested_host`` a host
    an admin asked for (live migration to a named host, boot onto a host);
    ``ignore_hosts`` hosts never to pick (the source of a migration).

    History: 1.0 - first version.
    """

    VERSION = "1.0"

    flavor: Flavor
    image: ImageMeta | None = None
    project_id: str = ""
    user_id: str = ""
    availability_zone: str | None = None
    group: str | None = None
    num_instances: int = 1
    scheduler_hints: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    requested_host: str | None = None
    ignore_hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.num_instances < 1:
            raise ValueError("num_instances must be at least 1")
        object.__setattr__(self, "ignore_hosts", tuple(self.ignore_hosts))

    @classmethod
    def coerce(cls, value: RequestSpec | Mapping[str, Any]) -> RequestSpec:
        """Accept a RequestSpec or the dict form older callers send:
        ``{"flavor": {...}, "image": {"id", "properties", "min_ram",
        "min_disk"}, "availability_zone", "group", "num_instances"}``."""
        if isinstance(value, RequestSpec):
            return value
        image = value.get("image")
        return cls(flavor=Flavor.coerce(value["flavor"]),
                   image=ImageMeta.coerce(image) if image else None,
                   project_id=str(value.get("project_id") or ""),
                   user_id=str(value.get("user_id") or ""),
                   availability_zone=value.get("availability_zone") or None,
                   group=value.get("group") or None,
                   num_instances=max(1, int(value.get("num_instances") or 1)),
                   scheduler_hints=dict(value.get("scheduler_hints") or {}),
                   requested_host=value.get("requested_host") or None,
                   ignore_hosts=tuple(value.get("ignore_hosts") or ()))
