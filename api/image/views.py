"""Images as Glance v2 shows them.

``checksum`` is the md5 of the data (Glance's meaning, which clients
verify downloads with); ``os_hash_algo``/``os_hash_value`` carry the
sha256 that Flotilla records in the ``checksum`` column and compute agents
verify. Links are relative to the image endpoint, as Glance writes them.
"""

from __future__ import annotations

import datetime
from typing import Any

from flotilla.db import images as db_images
from flotilla.db.models import Image

HASH_ALGO = "sha256"


def _timestamp(value: datetime.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def image_view(image: Image) -> dict[str, Any]:
    """The Glance body of ``image``: extra properties first, then the
    core fields (so a property can never shadow one)."""
    props = dict(image.properties or {})
    body: dict[str, Any] = {k: v for k, v in props.items()
                            if k not in db_images.INTERNAL_PROPERTIES}
    has_data = image.checksum is not None
    body.update({
        "id": image.id,
        "name": image.name,
        "status": image.status,
        "disk_format": image.disk_format,
        "container_format": image.container_format,
        "visibility": image.visibility,
        "size": image.size,
        "virtual_size": image.virtual_size,
        "checksum": props.get(db_images.MD5_KEY),
        "os_hash_algo": HASH_ALGO if has_data else None,
        "os_hash_value": image.checksum,
        "min_ram": image.min_ram,
        "min_disk": image.min_disk,
        "owner": image.owner,
        "protected": bool(props.get(db_images.PROTECTED_KEY, False)),
        "os_hidden": bool(props.get(db_images.HIDDEN_KEY, False)),
        "tags": list(props.get(db_images.TAGS_KEY) or []),
        "created_at": _timestamp(image.created_at),
        "updated_at": _timestamp(image.updated_at or image.created_at),
        "self": "/v2/images/%s" % image.id,
        "file": "/v2/images/%s/file" % image.id,
        "schema": "/v2/schemas/image",
    })
    return body
