"""Client of a volume service's RPC API (topic ``volume.<host>``).

Creating and deleting a volume are casts: the API has recorded the intent
(status creating or deleting) and the volume service moves the status on.
Exporting and unexporting are calls: the conductor's attach and detach
flows wait for them.

Version history:

* 1.0 - create_volume, delete_volume, export_volume, unexport_volume.
* 1.1 - extend_volume (a cast from the API for an available volume).
* 1.2 - create_snapshot, delete_snapshot (casts); create_volume fills a
  volume recorded with a ``snapshot_id`` or ``image_id`` from that source.
* 1.3 - extend_volume_online (a call from the conductor's extend flow for an
  in-use volume: grow it and export it again at the new size).
* 1.4 - create_volume fills a volume recorded with a ``source_volid`` from
  that volume (a point-in-time copy, on the source's volume host).
* 1.5 - upload_to_image (a cast from the API: copy the uploading volume into
  the queued image, then put the volume back).
* 1.6 - reimage_volume (a call from the conductor's rebuild flow of a
  volume-backed server: write an image over the unexported, downloading
  volume; compute 2.93).
"""

from __future__ import annotations

from typing import Any

from flotilla import rpc
from flotilla.context import RequestContext
from flotilla.rpc.upgrade import VersionCap

TOPIC = "volume"


class VolumeAPI:
    VERSION = "1.6"

    def __init__(self, transport, version_cap: VersionCap = None) -> None:
        self.client = rpc.RPCClient(transport, topic=TOPIC, version="1.0",
                                    version_cap=version_cap)

    def _host(self, host: str, version: str = "1.0", timeout: float | None = None):
        return self.client.prepare(server=host, version=version, timeout=timeout)

    def create_volume(self, ctxt: RequestContext, host: str, volume_id: str,
                      from_source: bool = False, from_volume: bool = False) -> None:
        """Create the recorded volume (status creating -> available/error).
        ``from_source``: the row names a snapshot or an image to fill it
        from, which only a 1.2 service does (so the call needs 1.2);
        ``from_volume``: it names a source volume (a clone), which only a
        1.4 service copies (an older one would make it blank: needs 1.4)."""
        version = "1.4" if from_volume else "1.2" if from_source else "1.0"
        self._host(host, version).cast(ctxt, "create_volume", volume_id=volume_id)

    def delete_volume(self, ctxt: RequestContext, host: str, volume_id: str) -> None:
        """Delete the volume (status deleting -> gone/error_deleting)."""
        self._host(host).cast(ctxt, "delete_volume", volume_id=volume_id)

    def extend_volume(self, ctxt: RequestContext, host: str, volume_id: str,
                      new_size_gb: int, old_size_gb: int) -> None:
        """Grow the volume (status extending -> available, or
        error_extending with ``old_size_gb`` put back). Needs 1.1."""
        self._host(host, "1.1").cast(ctxt, "extend_volume", volume_id=volume_id,
                                     new_size_gb=new_size_gb, old_size_gb=old_size_gb)

    def export_volume(self, ctxt: RequestContext, host: str, volume_id: str
                      ) -> dict[str, Any]:
        """Export the volume over NBD; how a compute host reaches it
        (compute.virt.block_device.VolumeConnection's fields)."""
        return self._host(host).call(ctxt, "export_volume", volume_id=volume_id)

    def unexport_volume(self, ctxt: RequestContext, host: str, volume_id: str) -> None:
        self._host(host).call(ctxt, "unexport_volume", volume_id=volume_id)

    def create_snapshot(self, ctxt: RequestContext, host: str, snapshot_id: str) -> None:
        """Copy the snapshot's volume (status creating -> available/error).
        Needs 1.2."""
        self._host(host, "1.2").cast(ctxt, "create_snapshot", snapshot_id=snapshot_id)

    def delete_snapshot(self, ctxt: RequestContext, host: str, snapshot_id: str) -> None:
        """Remove the snapshot (status deleting -> gone/error_deleting).
        Needs 1.2."""
        self._host(host, "1.2").cast(ctxt, "delete_snapshot", snapshot_id=snapshot_id)

    def extend_volume_online(self, ctxt: RequestContext, host: str, volume_id: str,
                             new_size_gb: int, timeout: float | None = None) -> int:
        """Grow the attached (extending) volume and serve it at the new
        size; the size in bytes. Needs 1.3."""
        return self._host(host, "1.3", timeout).call(
            ctxt, "extend_volume_online", volume_id=volume_id, new_size_gb=new_size_gb)

    def upload_to_image(self, ctxt: RequestContext, host: str, volume_id: str,
                        image_id: str) -> None:
        """Copy the (uploading) volume into the queued image ``image_id``,
        then put the volume back (available or in-use). Needs 1.5."""
        self._host(host, "1.5").cast(ctxt, "upload_to_image", volume_id=volume_id,
                                     image_id=image_id)

    def can_upload_to_image(self) -> bool:
        """Whether volume services may be sent upload_to_image (1.5)."""
        return self.client.can_send_version("1.5")

    def can_clone_volumes(self) -> bool:
        """Whether volume services may be sent clones to fill (1.4)."""
        return self.client.can_send_version("1.4")

    def can_extend_online(self) -> bool:
        """Whether volume services may be sent extend_volume_online (1.3)."""
        return self.client.can_send_version("1.3")

    def reimage_volume(self, ctxt: RequestContext, host: str, volume_id: str,
                       image_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Write ``image_id`` over the volume (downloading, unexported);
        ``{"error": reason or None, "written": bool}``. Needs 1.6."""
        return self._host(host, "1.6", timeout).call(ctxt, "reimage_volume",
                                                     volume_id=volume_id, image_id=image_id)

    def can_reimage(self) -> bool:
        """Whether volume services may be sent reimage_volume (1.6)."""
        return self.client.can_send_version("1.6")
