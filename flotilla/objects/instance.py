"""Instance: a server as services other than the API see it."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from flotilla.objects.base import FlotillaObject, register
from flotilla.objects.flavor import Flavor

_UUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


@register
@dataclasses.dataclass(frozen=True)
class Instance(FlotillaObject):
    """An instance: identity, size, placement and state.

    ``uuid`` identifies the guest on the hypervisor (the libvirt domain
    UUID); ``name`` is the server's user-chosen display name: free text that
    drivers treat as data, never as markup or a path. The state fields are
    what the database said when the object was made; writes go through
    compare-and-swap calls, never through the object.

    History: 1.0 - first version.
    """

    VERSION = "1.0"

    uuid: str
    name: str = ""
    project_id: str = ""
    user_id: str = ""
    flavor: Flavor = dataclasses.field(default_factory=Flavor)
    image_ref: str = ""
    metadata: Mapping[str, str] = dataclasses.field(default_factory=dict)
    host: str | None = None
    node: str | None = None
    availability_zone: str | None = None
    vm_state: str | None = None
    task_state: str | None = None
    power_state: int = 0

    def __post_init__(self) -> None:
        # The uuid ends up in paths and domain names: accept only a uuid.
        if not isinstance(self.uuid, str) or not _UUID.match(self.uuid):
            raise ValueError("instance uuid %r is not a UUID" % (self.uuid,))
        object.__setattr__(self, "uuid", self.uuid.lower())
        if isinstance(self.flavor, Mapping):
            object.__setattr__(self, "flavor", Flavor.from_record(self.flavor))

    @property
    def domain_name(self) -> str:
        """Hypervisor-side name; derived from the uuid so it is unique and
        safe whatever the user called the server."""
        return "instance-%s" % self.uuid

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> Instance:
        """From an instance row's dict (``to_dict()``, what the conductor
        returns); keys this object does not know are ignored."""
        flavor = data.get("flavor")
        if not isinstance(flavor, Flavor):
            flavor = Flavor.from_record(flavor) if flavor else Flavor()
        return cls(uuid=str(data["uuid"]),
                   name=str(data.get("display_name") or data.get("name") or ""),
                   project_id=str(data.get("project_id") or ""),
                   user_id=str(data.get("user_id") or ""),
                   flavor=flavor,
                   image_ref=str(data.get("image_ref") or ""),
                   metadata={str(k): str(v) for k, v in
                             (data.get("metadata") or {}).items()},
                   host=data.get("host"), node=data.get("node"),
                   availability_zone=data.get("availability_zone"),
                   vm_state=data.get("vm_state"), task_state=data.get("task_state"),
                   power_state=int(data.get("power_state") or 0))

    @classmethod
    def coerce(cls, value: Instance | Mapping[str, Any]) -> Instance:
        """Accept an Instance or its record dict."""
        return value if isinstance(value, Instance) else cls.from_record(value)
