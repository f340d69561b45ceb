"""``block_device_mapping_v2`` at server create (issue 11): which disk
boots the server and which volumes it gets at boot.

Rules (as Nova answers; every refusal is a 400 naming the field,
``block_device_mapping_v2[i].<key>``):

* ``source_type`` image with ``destination_type`` local (or none) and
  ``boot_index`` 0 is the image boot the clients send alongside
  ``imageRef`` (its ``uuid`` must be ``imageRef``'s);
* ``source_type`` image with ``destination_type`` volume and ``boot_index``
  0 boots from a new volume the build makes from the image
  (``--boot-from-volume N``): ``volume_size`` is required, a whole number of
  GiB from the image's size (virtual size and ``min_disk``) up to ``[volume]
  max_size_gb`` and within the project's ``volumes`` and ``gigabytes``
  quotas for every server of the request; ``delete_on_termination``
  defaults to true for it;
* ``source_type`` volume (``destination_type`` volume) names an existing
  volume of the caller's project (another project's is not found), which
  must be ``available`` with no attachment (in use: 400, as Nova's
  InvalidVolume) and, to boot (``boot_index`` 0), ``bootable``; such a
  request creates one server only. ``delete_on_termination`` defaults to
  false;
* ``boot_index`` is an integer (integer strings too); 0 boots, None or a
  negative one does not; one disk boots; a volume appears once;
* ``source_type`` blank with ``destination_type`` volume is a new blank
  volume of ``volume_size`` GiB the build makes for each server (Nova's
  ``--block-device source_type=blank,destination_type=volume,volume_size=N``),
  within the same quotas; it cannot boot; ``delete_on_termination``
  defaults to false;
* ``source_type`` snapshot with ``destination_type`` volume names a volume
  snapshot (``uuid``) of the caller's project (another project's is not
  found), ``available``; the build makes a new volume from it for each
  server (on the snapshot's volume host), within the same quotas;
  ``volume_size`` defaults to the snapshot's and may not be smaller; to
  boot, the snapshot's volume must have been bootable, and its image
  metadata is the server's (min_ram); ``delete_on_termination`` defaults
  to false;
* ``imageRef`` naming an image with ``bdm_v2`` mappings in its
  ``block_device_mapping`` property (the image of a volume-backed server's
  createImage, api.compute.volume_snapshot) adds the image's mappings
  before the request's, as Nova's _get_image_defined_bdms; when one of them
  boots, the server boots from a volume made from that snapshot and the
  request's own image boot disk is dropped. A refusal of such a mapping
  names ``imageRef``; its snapshot may still be ``creating`` (the image is
  active at once, as Nova's; the build waits for the snapshot);
* local blank disks are not supported yet;
* with no disk booting, ``imageRef`` is required; a server that boots from
  a volume has no local root disk (root_gb 0) and shows ``image`` "".
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from api import errors, policy, validation
from flotilla import exception, images
from flotilla import states as st
from flotilla.conf.quota import VOLUME_RESOURCES
from flotilla.db import volume_snapshots as sdb
from flotilla.db import volumes as vdb
from flotilla.objects import BlockDeviceMapping
from flotilla.volume_placement import image_metadata

GIB = 1024 ** 3
FIELD = "block_device_mapping_v2"
IMAGE_LABEL = "imageRef block_device_mapping[%d]"
#: snapshot statuses a mapping may name: the request's own, and the image's
#: (whose snapshots may still be being taken; the build waits for them)
SNAPSHOT_READY = ("available",)
SNAPSHOT_COMING = ("available", "creating")


@dataclasses.dataclass
class BootDisks:
    """What the request's block device mappings decided."""

    #: the image the server boots from locally (None: it boots from a volume)
    image_id: str | None = None
    #: for a volume-backed server: the image record the boot volume is made
    #: from (None when an existing volume boots)
    volume_image: Any = None
    #: for a volume-backed server: the boot image's metadata (min_ram...)
    image_meta: dict[str, str] = dataclasses.field(default_factory=dict)
    #: the volume disks, for the build flow
    volumes: list[BlockDeviceMapping] = dataclasses.field(default_factory=list)

    @property
    def volume_backed(self) -> bool:
        return any(b.boot_index == 0 for b in self.volumes)


def _bad(index: str, key: str, why: str) -> errors.APIError:
    # ``index`` labels the mapping: "block_device_mapping_v2[i]", or for a
    # mapping the image of imageRef defines, IMAGE_LABEL (names imageRef).
    if index.startswith("imageRef"):
        return errors.bad_request("Invalid input for field/attribute imageRef. The "
                                  "image's %s.%s: %s" % (index[len("imageRef "):], key, why))
    return errors.bad_request("Invalid input for field/attribute %s.%s. %s"
                              % (index, key, why))


def _integer(index: str, key: str, value: Any, unit: str = "") -> int:
    # JSON integers or integer strings (the SDK sends strings); no booleans.
    try:
        if isinstance(value, bool):
            raise ValueError(value)
        return int(value)
    except (TypeError, ValueError):
        raise _bad(index, key, "It must be an integer%s." % unit) from None


def _boot_index(index: str, value: Any) -> int | None:
    if value is None or value == "":
        return None
    number = _integer(index, "boot_index", value)
    return None if number < 0 else number


def _volume_size(index: str, value: Any, conf) -> int:
    if value is None or value == "":
        raise _bad(index, "volume_size", "It is required for a new volume.")
    size = _integer(index, "volume_size", value, " number of GiB")
    if not 1 <= size <= conf.volume.max_size_gb:
        raise _bad(index, "volume_size", "Value: %d. It must be from 1 to %d (GiB)."
                   % (size, conf.volume.max_size_gb))
    return size


def image_mappings(image) -> list[dict]:
    """The ``bdm_v2`` mappings an image's ``block_device_mapping`` property
    defines (a JSON list, as Nova stores it in Glance); [] when none."""
    props = dict(getattr(image, "properties", None) or {})
    raw = props.get("block_device_mapping")
    if not raw or not validation.to_bool(str(props.get("bdm_v2", "false"))):
        return []
    try:
        mappings = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        mappings = None
    if not isinstance(mappings, list) or not all(isinstance(m, dict) for m in mappings):
        raise errors.bad_request("Invalid input for field/attribute imageRef. Image %s has "
                                 "an unreadable block_device_mapping." % image.id)
    # As the request gives them: the source's id is ``uuid``.
    return [dict({k: v for k, v in m.items() if k != "tag"},
                 uuid=m.get("snapshot_id") or m.get("volume_id") or m.get("image_id"))
            for m in mappings]


def parse(ctx, conf, spec: dict, memory_mb: int, count: int, usable_image) -> BootDisks:
    """The boot disks of a create request ``spec`` for ``count`` servers.

    ``usable_image(ctx, image_id, memory_mb)`` returns the image record or
    raises the API's 400 (servers.bootable_image).
    """
    image_ref = (spec.get("imageRef") or "").lower()
    requested = [(FIELD + "[%d]" % i, b, SNAPSHOT_READY)
                 for i, b in enumerate(spec.get("block_device_mapping_v2") or [])]
    mappings_image = None
    if image_ref and images.is_valid_id(image_ref):
        defined = image_mappings(_image_or_none(ctx, image_ref))
        if any(_boot_index(IMAGE_LABEL % i, m.get("boot_index")) == 0
               for i, m in enumerate(defined)):
            mappings_image = image_ref
            usable_image(ctx, image_ref, memory_mb)   # active, min_ram (400)
            # Nova drops the image boot disk the clients add (the image's
            # mapping boots instead).
            requested = [r for r in requested if not (
                r[1]["source_type"] == "image" and str(r[1].get("boot_index")) == "0")]
        requested = [(IMAGE_LABEL % i, m, SNAPSHOT_COMING)
                     for i, m in enumerate(defined)] + requested
    result = BootDisks()
    seen: set[str] = set()
    boots = 0
    for index, bdm, snapshot_ok in requested:
        source, dest = bdm.get("source_type"), bdm.get("destination_type")
        boot_index = _boot_index(index, bdm.get("boot_index"))
        boots += boot_index == 0
        if boots > 1:
            raise _bad(index, "boot_index", "Only one disk may boot (boot_index 0).")
        uuid = str(bdm.get("uuid") or "").lower()
        if source == "blank":
            result.volumes.append(_blank_volume(conf, index, bdm, dest, uuid, boot_index))
            continue
        if source == "image" and dest in (None, "local"):
            if boot_index != 0:
                raise _bad(index, "boot_index", "A local image disk must boot (0).")
            if uuid and image_ref and uuid != image_ref:
                raise _bad(index, "uuid", "It differs from imageRef.")
            result.image_id = image_ref or uuid or None
            continue
        if source not in ("image", "volume", "snapshot"):
            raise _bad(index, "source_type", "Source type %s is not supported." % source)
        if dest != "volume":
            raise _bad(index, "destination_type", "A %s source needs destination_type "
                       "volume." % source)
        if not uuid:
            raise _bad(index, "uuid", "It is required.")
        validation.check_uuid(uuid, "%s.uuid" % index)
        delete = bdm.get("delete_on_termination")
        if source == "image":
            result.volumes.append(_image_volume(ctx, conf, index, bdm, uuid, boot_index,
                                                memory_mb, count, delete, result,
                                                usable_image))
            continue
        if source == "snapshot":
            result.volumes.append(_snapshot_volume(ctx, conf, index, bdm, uuid, boot_index,
                                                   memory_mb, delete, result, snapshot_ok))
            continue
        if uuid in seen:
            raise _bad(index, "uuid", "Volume %s appears twice." % uuid)
        seen.add(uuid)
        if count > 1:
            raise _bad(index, "uuid", "Cannot attach one or more volumes to multiple "
                       "instances.")
        result.volumes.append(_existing_volume(ctx, index, uuid, boot_index, memory_mb,
                                               delete, result))
    if result.volume_backed:
        if image_ref and image_ref not in (
                result.volume_image.id if result.volume_image else None, mappings_image):
            raise errors.bad_request("Invalid input for field/attribute imageRef. "
                                     "The server boots from a volume.")
        result.image_id = None
    elif result.image_id is None:
        if not image_ref:
            raise errors.bad_request("Invalid input for field/attribute imageRef. It is "
                                     "required unless a block device boots the server.")
        result.image_id = image_ref
    _check_quota(ctx, conf, result.volumes, count)
    return result


def _image_or_none(ctx, image_id: str):
    # Whether it may be booted is servers.bootable_image's to say (400).
    try:
        return images.get_visible(ctx, image_id)
    except exception.NotFound:
        return None


def _image_volume(ctx, conf, index, bdm, image_id, boot_index, memory_mb, count, delete,
                  result: BootDisks, usable_image) -> BlockDeviceMapping:
    if boot_index != 0:
        raise _bad(index, "boot_index", "A volume made from an image must boot (0).")
    size = _volume_size(index, bdm.get("volume_size"), conf)
    image = usable_image(ctx, image_id, memory_mb)
    needs = max(int(image.min_disk or 0),
                -(-int(getattr(image, "virtual_size", None) or image.size or 0) // GIB))
    if size < needs:
        raise _bad(index, "volume_size", "Value: %d. The image needs at least %d GiB."
                   % (size, needs))
    result.volume_image = image
    result.image_meta = image_metadata(image)
    return BlockDeviceMapping(
        source_type="image", destination_type="volume", boot_index=0, image_id=image.id,
        volume_size=size, tag=bdm.get("tag"),
        # Nova's default: the volume outlives the server unless asked.
        delete_on_termination=False if delete is None else validation.to_bool(delete))


def _snapshot_volume(ctx, conf, index, bdm, snapshot_id, boot_index, memory_mb, delete,
                     result: BootDisks, statuses) -> BlockDeviceMapping:
    try:
        snap = sdb.snapshot_get(snapshot_id, project_id=policy.project_filter(ctx)
                                or ctx.project_id)
    except sdb.SnapshotNotFound:
        raise _bad(index, "uuid", "Snapshot %s could not be found." % snapshot_id) from None
    if snap.status not in statuses:
        raise _bad(index, "uuid", "Snapshot %s status must be available, but it is %s."
                   % (snapshot_id, snap.status))
    size = snap.size_gb
    if bdm.get("volume_size") not in (None, ""):
        size = _volume_size(index, bdm.get("volume_size"), conf)
        if size < snap.size_gb:
            raise _bad(index, "volume_size", "Value: %d. It cannot be smaller than the "
                       "snapshot's size %d GiB." % (size, snap.size_gb))
    if boot_index == 0:
        # A volume from a snapshot boots as the snapshot's volume did, with
        # its image metadata (Nova's get_bdm_image_metadata reads it there).
        try:
            origin = vdb.volume_get(snap.volume_id)
        except vdb.VolumeNotFound:
            origin = None
        if origin is None or not origin.bootable:
            raise _bad(index, "uuid", "Snapshot %s is not of a bootable volume."
                       % snapshot_id)
        _boot_from(origin, memory_mb, result)
    return BlockDeviceMapping(
        source_type="snapshot", destination_type="volume", boot_index=boot_index,
        snapshot_id=snap.id, volume_size=size, tag=bdm.get("tag"),
        delete_on_termination=False if delete is None else validation.to_bool(delete))


def _boot_from(volume, memory_mb: int, result: BootDisks) -> None:
    """The server boots from (a copy of) bootable ``volume``: its image
    metadata is the server's, and the flavor must hold its min_ram."""
    meta = dict(volume.image_metadata or {})
    if int(meta.get("min_ram") or 0) > memory_mb:
        raise errors.bad_request("Flavor's memory is too small for requested image.")
    result.image_meta = meta


def _blank_volume(conf, index, bdm, dest, uuid, boot_index) -> BlockDeviceMapping:
    if dest != "volume":
        raise _bad(index, "destination_type", "A blank disk needs destination_type "
                   "volume (local disks beyond the image's are not supported yet).")
    if uuid:
        raise _bad(index, "uuid", "A blank volume has no source to name.")
    if boot_index == 0:
        raise _bad(index, "boot_index", "A blank volume cannot boot.")
    delete = bdm.get("delete_on_termination")
    return BlockDeviceMapping(
        source_type="blank", destination_type="volume", boot_index=boot_index,
        volume_size=_volume_size(index, bdm.get("volume_size"), conf), tag=bdm.get("tag"),
        delete_on_termination=False if delete is None else validation.to_bool(delete))


def _existing_volume(ctx, index, volume_id, boot_index, memory_mb, delete,
                     result: BootDisks) -> BlockDeviceMapping:
    try:
        volume = vdb.volume_get(volume_id, project_id=policy.project_filter(ctx)
                                or ctx.project_id)
    except vdb.VolumeNotFound:
        raise _bad(index, "uuid", "Volume %s could not be found." % volume_id) from None
    if volume.status != st.VOLUME_AVAILABLE or vdb.attachments_of_volume(volume_id):
        raise _bad(index, "uuid", "Volume %s status must be available, but it is %s."
                   % (volume_id, volume.status))
    if boot_index == 0:
        if not volume.bootable:
            raise _bad(index, "uuid", "Volume %s is not bootable." % volume_id)
        _boot_from(volume, memory_mb, result)
    return BlockDeviceMapping(
        source_type="volume", destination_type="volume", boot_index=boot_index,
        volume_id=volume_id, volume_size=volume.size_gb,
        delete_on_termination=validation.to_bool(delete) if delete is not None else False)


#: actions that still assume a local root disk: 409 for a volume-backed
#: server. None left: a live migration, an evacuation, a resize and a cold
#: migration keep the volume; createImage snapshots its volumes
#: (api.compute.volume_snapshot); a rebuild re-images the root volume
#: (api.compute.rebuild_volume).
NOT_FROM_VOLUME: tuple[str, ...] = ()


def check_action(inst, action: str) -> None:
    """Refuse an action a server that boots from a volume (its
    ``image_ref`` is empty, as Nova's) cannot take: createBackup is 400 as
    Nova's (its InvalidRequest), any of NOT_FROM_VOLUME 409."""
    if inst.image_ref != "":
        return
    if action == "createBackup":
        raise errors.bad_request("Backup is not supported for volume-backed instances.")
    if action in NOT_FROM_VOLUME:
        raise errors.conflict("Cannot '%s' instance %s: not supported yet for a "
                              "server booted from a volume" % (action, inst.uuid))


def _check_quota(ctx, conf, volumes: list[BlockDeviceMapping], count: int) -> None:
    new = [b for b in volumes if b.makes_volume]
    if not new:
        return
    wanted = {"volumes": len(new) * count,
              "gigabytes": sum(b.volume_size or 0 for b in new) * count}
    limits = vdb.volume_limits(ctx.project_id,
                               {r: getattr(conf.quota, r) for r in VOLUME_RESOURCES})
    usage = vdb.volume_usage(ctx.project_id)
    over = ["%s (requested %d, in use %d, limit %d)" % (r, n, usage[r], limits[r])
            for r, n in wanted.items() if limits.get(r, -1) >= 0 and usage[r] + n > limits[r]]
    if over:
        raise errors.bad_request("Invalid input for field/attribute %s[0].volume_size. "
                                 "Volume quota exceeded: %s." % (FIELD, "; ".join(over)))
