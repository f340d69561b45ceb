"""Where a new volume goes and what it keeps of its image; shared by the
Block Storage API (a volume create) and the conductor's build flow (a
boot volume made from an image, issue 11).

Rules:

* a new volume goes on the up, enabled volume host with the fewest GiB
  allocated (None when no volume service is up);
* a volume made from an image keeps the image's metadata as Cinder shows
  it (``volume_image_metadata``: string values).
"""

from __future__ import annotations

from typing import Any

from oslo_config import cfg

from flotilla import binaries
from flotilla.db import api as db
from flotilla.db import volumes as vdb


def pick_volume_host(conf: cfg.ConfigOpts) -> str | None:
    """The up volume host with the fewest GiB allocated; None when none."""
    hosts = [s.host for s in db.service_get_all(binary=binaries.VOLUME)
             if not s.disabled and db.service_is_up(s, conf.service_down_time)]
    if not hosts:
        return None
    allocated = {h: 0 for h in hosts}
    for row in vdb.volume_get_all():
        if row.host in allocated:
            allocated[row.host] += row.size_gb
    return min(hosts, key=lambda h: (allocated[h], h))


def image_metadata(image: Any) -> dict[str, str]:
    """An image's metadata as a volume made from it keeps it."""
    meta = {"image_id": image.id, "image_name": image.name or "",
            "checksum": image.checksum or "", "container_format": image.container_format
            or "", "disk_format": image.disk_format or "", "min_disk": str(image.min_disk),
            "min_ram": str(image.min_ram), "size": str(image.size or 0)}
    for key, value in (image.properties or {}).items():
        meta.setdefault(str(key), value if isinstance(value, str) else str(value))
    return meta
