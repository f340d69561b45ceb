"""Volume, attachment and type documents as Cinder and Nova show them."""

from __future__ import annotations

import uuid

from api.state import isotime
from flotilla.db.images import INTERNAL_PROPERTIES

MIN_VERSION = "3.0"
# The highest microversion the clients may send (they negotiate down to
# min(this, their own cap)); the documents below are the 3.x superset.
MAX_VERSION = "3.71"

DEFAULT_TYPE_NAME = "__DEFAULT__"
DEFAULT_TYPE_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "flotilla/volume-type/default"))
AVAILABILITY_ZONE = "nova"


def default_type() -> dict:
    return {"id": DEFAULT_TYPE_ID, "name": DEFAULT_TYPE_NAME,
            "description": "Default Volume Type", "is_public": True,
            "extra_specs": {}, "qos_specs_id": None,
            "os-volume-type-access:is_public": True}


def version_doc(base: str) -> dict:
    return {"id": "v3.0", "status": "CURRENT", "version": MAX_VERSION,
            "min_version": MIN_VERSION, "updated": "2023-01-01T00:00:00Z",
            "links": [{"rel": "self", "href": base + "/volume/v3/"}],
            "media-types": [{"base": "application/json",
                             "type": "application/vnd.openstack.volume+json;version=3"}]}


def attachment(row) -> dict:
    # host_name is the compute host the volume is plugged on, as Cinder
    # shows its connector's host (a live migration moves it).
    return {"id": row.volume_id, "attachment_id": row.uuid, "volume_id": row.volume_id,
            "server_id": row.instance_uuid, "host_name": row.host,
            "device": device_path(row.device) or "",
            "attached_at": isotime(row.created_at, micro=True)}


def device_path(device: str | None) -> str | None:
    """The guest device as Nova and Cinder show it (``/dev/vdb``); the
    agent records the bare name libvirt uses (``vdb``)."""
    if not device or device.startswith("/"):
        return device
    return "/dev/" + device


def volume(row, attachments, url: str, admin: bool, detail: bool = True) -> dict:
    links = [{"rel": "self", "href": "%s/volumes/%s" % (url, row.id)},
             {"rel": "bookmark", "href": "%s/volumes/%s" % (url, row.id)}]
    if not detail:
        return {"id": row.id, "name": row.name, "links": links}
    doc = {
        "id": row.id, "name": row.name, "description": row.description,
        "status": row.status, "size": row.size_gb,
        "availability_zone": row.availability_zone or AVAILABILITY_ZONE,
        "created_at": isotime(row.created_at, micro=True),
        "updated_at": isotime(row.updated_at, micro=True),
        "volume_type": DEFAULT_TYPE_NAME, "volume_type_id": DEFAULT_TYPE_ID,
        "bootable": "true" if getattr(row, "bootable", False) else "false",
        "encrypted": False, "multiattach": False,
        "metadata": dict(row.metadata_ or {}),
        "attachments": [attachment(a) for a in attachments if a.status == "attached"],
        "links": links, "user_id": row.user_id,
        "os-vol-tenant-attr:tenant_id": row.project_id,
        "snapshot_id": getattr(row, "snapshot_id", None),
        "source_volid": getattr(row, "source_volid", None), "consistencygroup_id": None,
        "group_id": None, "replication_status": None, "migration_status": None,
        "provider_id": None, "service_uuid": None, "shared_targets": False,
        "cluster_name": None, "consumes_quota": True,
    }
    if getattr(row, "readonly", None) is not None:
        # Cinder's visible admin metadata (os-update_readonly_flag).
        doc["metadata"]["readonly"] = str(bool(row.readonly))
        if doc["attachments"]:
            doc["metadata"]["attached_mode"] = "ro" if row.readonly else "rw"
    if getattr(row, "image_metadata", None):
        # Volumes made before the copy left Flotilla's image bookkeeping out
        # may hold it (flotilla.volume_placement.image_metadata).
        doc["volume_image_metadata"] = {k: v for k, v in row.image_metadata.items()
                                        if k not in INTERNAL_PROPERTIES
                                        and not k.startswith("_")}
    if admin:
        doc["os-vol-host-attr:host"] = row.host
        doc["os-vol-mig-status-attr:migstat"] = None
        doc["os-vol-mig-status-attr:name_id"] = None
    return doc


def server_attachment(row, ver: tuple[int, int] = (2, 1)) -> dict:
    """Nova's volumeAttachment as microversion ``ver`` shows it: ``tag``
    from 2.70, ``delete_on_termination`` from 2.79, ``attachment_id`` and
    ``bdm_uuid`` instead of ``id`` from 2.89 (Flotilla's attachment is its
    block device mapping: it has no other id to show there)."""
    doc = {"volumeId": row.volume_id, "serverId": row.instance_uuid,
           "device": device_path(row.device)}
    if ver >= (2, 70):
        doc["tag"] = getattr(row, "tag", None)
    if ver >= (2, 79):
        doc["delete_on_termination"] = bool(getattr(row, "delete_on_termination", False))
    if ver >= (2, 89):
        doc.update(attachment_id=row.uuid, bdm_uuid=None)
    else:
        doc["id"] = row.volume_id
    return doc
