"""The volume service's side of ``os-volume_upload_image``: a volume copied
into an image (RPC 1.5, ``upload_to_image``).

Rules:

* the volume must still be ``uploading`` to this image (its owner,
  flotilla.volume_upload.owner_reason) and the image ``queued``; else the
  upload ended already (the reaper, a restart, a release, the image
  deleted): the image is discarded if it is still unfinished and the volume
  put back only if this upload still owns it (never another upload's);
* while it runs, a heartbeat thread extends the volume's deadline and
  touches the image every flotilla.volume_upload.heartbeat_interval
  (first when it starts), so the reaper ends only an upload whose service
  stopped;
* what is read: a volume that was ``available`` when the upload began and
  has no attachment is read as it is (its status keeps anyone from
  attaching it meanwhile); one that was ``in-use`` when the upload began
  (recorded by the API in the owner reason, so a release landing before we
  look changes nothing) or has an attachment is first copied point in time
  into a temporary pool volume ``upload-<image id>`` by the storage
  daemon, as snapshots and clones are (volume.snapshots.copy_volume: crash
  consistent), and that is read;
* ``raw``: the bytes come through the backend's ``download`` stream;
  ``qcow2``: ``qemu-img convert -O qcow2`` of the volume's file into
  ``[volume] run_path``/uploads/<image id>.qcow2 (format given, never
  probed), which is sent;
* where the bytes go: through a signed, one-use upload URL of the image
  API (flotilla.images.arm_upload_url, as compute agents upload
  snapshots; the API checks, hashes and activates the image) when an image
  endpoint is configured, else (a one-host cloud) straight into the image
  store (flotilla.image_store.store_image) with the same checks, the image
  ``saving`` meanwhile and ``active`` with its size, virtual size, sha256
  (os_hash_value) and md5 (checksum) at the end;
* the temporary volume and file are always removed; the volume always ends
  back ``available`` or ``in-use`` (flotilla.volume_upload.end_upload); on
  failure the image is discarded (deleted, or killed with the reason), the
  error is logged and the reason kept as the volume's status reason. The
  upload URL is a secret: never logged nor put in an error;
* a service killed during an upload leaves the volume ``uploading``: at
  start (:func:`recover`) its unfinished images are discarded, the
  temporary volume and file removed and the volume put back; the
  unfinished images of this host's volumes no longer uploading to them (a
  release came first) are discarded too, and every leftover ``upload-*``
  temporary pool volume is removed (backend.volume_ids).
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import subprocess
import urllib.parse
from collections.abc import Iterable, Iterator

from flotilla import concurrency, exception, image_store, images
from flotilla import states as st
from flotilla import volume_upload as vup
from flotilla.db import images as db_images
from flotilla.db import volumes as vdb
from flotilla.db.models import Image
from volume import snapshots

LOG = logging.getLogger(__name__)

INTERRUPTED = "upload to image interrupted: the volume service restarted"


class UploadFailed(exception.FlotillaException):
    msg_fmt = "The image service refused image %(image_id)s: %(reason)s"


def temp_volume_id(image_id: str) -> str:
    """The backend name of the point-in-time copy an upload reads."""
    return "upload-%s" % image_id


def _qcow2_path(conf, image_id: str) -> str:
    return os.path.join(os.path.abspath(conf.volume.run_path), "uploads",
                        "%s.qcow2" % image_id)


class _ChunkReader:
    """A ``read(n)`` file over an iterator of chunks (what the image store
    reads from)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            size = len(self._buffer)
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


def _put(url: str, image_id: str, chunks: Iterable[bytes], size: int,
         timeout: float = 300) -> None:
    """PUT ``size`` bytes of ``chunks`` to the signed upload ``url``;
    UploadFailed (never naming the URL) unless the answer is 204."""
    parsed = urllib.parse.urlsplit(url)
    connection_class = (http.client.HTTPSConnection if parsed.scheme == "https"
                        else http.client.HTTPConnection)
    conn = connection_class(parsed.hostname, parsed.port, timeout=timeout)
    sent = 0
    try:
        conn.putrequest("PUT", parsed.path + "?" + parsed.query)
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(size))
        conn.endheaders()
        for chunk in chunks:
            sent += len(chunk)
            if sent > size:
                raise UploadFailed(image_id=image_id, reason="more than %d bytes" % size)
            conn.send(chunk)
        if sent != size:
            raise UploadFailed(image_id=image_id,
                               reason="%d bytes read of %d" % (sent, size))
        response = conn.getresponse()
        body = response.read(512).decode("utf-8", "replace")
    except OSError as exc:
        raise UploadFailed(image_id=image_id, reason="connection: %s" % exc) from exc
    finally:
        conn.close()
    if response.status != 204:
        raise UploadFailed(image_id=image_id,
                           reason="HTTP %d: %s" % (response.status, body.strip()[:200]))


def _store(conf, image: Image, chunks: Iterable[bytes], size: int) -> None:
    """Write the data straight into the image store (no image endpoint: a
    one-host cloud), as the image API's upload does: queued -> saving ->
    active, compare-and-swap each."""
    saving = dict(image.properties or {},
                  **{db_images.UPLOAD_KEY: image_store.upload_owner()})
    db_images.image_update(image.id, {"status": "saving", "properties": saving},
                           expected_status="queued")
    stored = image_store.store_image(conf, image.id, _ChunkReader(chunks),
                                     image.disk_format, content_length=size)
    properties = {k: v for k, v in saving.items()
                  if k not in (db_images.UPLOAD_KEY, vup.VOLUME_KEY)}
    properties[db_images.MD5_KEY] = stored.md5
    try:
        db_images.image_update(image.id, {
            "status": "active", "size": stored.size, "virtual_size": stored.virtual_size,
            "checksum": stored.sha256, "location": stored.path, "properties": properties},
            expected_status="saving")
    except exception.FlotillaException:
        # Deleted (or reset) meanwhile: the data has no image.
        image_store.remove_image_file(conf, Image(id=image.id, location=stored.path))
        raise


def _send(conf, image: Image, chunks: Iterable[bytes], size: int) -> None:
    if images.image_endpoint(conf):
        _put(images.arm_upload_url(conf, image.id), image.id, chunks, size)
    else:
        _store(conf, image, chunks, size)


def _convert(source: str, target: str) -> None:
    os.makedirs(os.path.dirname(target), mode=0o700, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(target)       # an earlier attempt's
    proc = subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2",
                           "-t", "writeback", source, target],
                          capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise exception.Invalid(reason="qemu-img convert failed: %s"
                                % (proc.stderr or "").strip()[:200])


class _Heartbeat:
    """Extends the upload's deadline while it runs (see the module rules)."""

    def __init__(self, conf, volume_id: str, image_id: str) -> None:
        self._args = (conf, volume_id, image_id)
        self._stop = concurrency.Event()
        self._handle: concurrency.Handle | None = None

    def _beat(self) -> None:
        try:
            vup.extend_deadline(*self._args)
        except Exception:
            LOG.exception("upload to image %s: deadline not extended", self._args[2])

    def _run(self) -> None:
        while not self._stop.wait(vup.heartbeat_interval(self._args[0])):
            self._beat()

    def __enter__(self) -> _Heartbeat:
        self._beat()
        # flotilla.concurrency: a green thread under eventlet (the copy's
        # I/O yields to it), a native one otherwise.
        self._handle = concurrency.spawn(self._run)
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._handle is not None:
            self._handle.wait()


def _copy(manager, volume, image: Image) -> None:
    backend, conf = manager.backend, manager.conf
    source_id = volume.id
    temp = None
    qcow2 = _qcow2_path(conf, image.id)
    try:
        if vup.began_in_use(volume) or vdb.attachments_of_volume(volume.id):
            # In use when the upload began (forced): a guest may write while
            # we read, and a release may have landed since the status check.
            temp = temp_volume_id(image.id)
            target = backend.create(temp, volume.size_gb)
            snapshots.copy_volume(backend, manager.daemon, volume, target)
            source_id = temp
        path = backend.path(source_id)
        if not path:
            raise vdb.VolumeNotFound(volume_id=source_id)
        if image.disk_format == "qcow2":
            _convert(path, qcow2)
            _send(conf, image, image_store.iter_file(qcow2), os.path.getsize(qcow2))
        else:
            _send(conf, image, backend.download(source_id), os.path.getsize(path))
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(qcow2)
        if temp is not None:
            _remove_temp(backend, temp)


def _remove_temp(backend, temp: str) -> None:
    try:
        backend.delete(temp)
    except Exception:
        LOG.exception("could not remove the temporary copy %s", temp)


def _discard(conf, image_id: str, reason: str) -> None:
    """Discard the image unless it is finished (active) or gone."""
    try:
        image = db_images.image_get(image_id)
    except exception.ImageNotFound:
        return
    if image.status in vup.PENDING:
        LOG.warning("image %s %s: %s", image_id,
                    images.discard_image(conf, image_id, reason), reason)


def upload_to_image(manager, volume_id: str, image_id: str) -> bool:
    """Copy the uploading volume into the queued image (see the module
    rules); whether the image became active."""
    conf = manager.conf
    try:
        volume = vdb.volume_get(volume_id)
    except vdb.VolumeNotFound:
        LOG.warning("upload of volume %s to image %s skipped: the volume is gone",
                    volume_id, image_id)
        _discard(conf, image_id, "the volume is gone")
        return False
    try:
        image = db_images.image_get(image_id)
    except exception.ImageNotFound:
        image = None
    if volume.status == st.VOLUME_UPLOADING and volume.status_reason is None and \
            vup.claim_unowned(volume_id, image_id, bool(vdb.attachments_of_volume(volume_id))):
        volume = vdb.volume_get(volume_id)
    if vup.owner_of(volume) != image_id or image is None or image.status != "queued":
        why = "the image is %s" % (image.status if image is not None else "gone")
        LOG.warning("upload of volume %s to image %s skipped: the volume is %s (%s), %s",
                    volume_id, image_id, volume.status, volume.status_reason, why)
        _discard(conf, image_id, "the upload ended before it started")
        # Put the volume back only if this upload owns it (a stale cast
        # must not end another upload of the volume).
        vup.end_upload(volume_id, image_id, "upload to image %s ended: %s" % (image_id, why))
        return False
    try:
        with _Heartbeat(conf, volume_id, image_id):
            _copy(manager, volume, image)
    except Exception as exc:
        why = "upload to image %s failed: %s" % (image_id, snapshots.reason(exc))
        LOG.exception("uploading volume %s to image %s failed", volume_id, image_id)
        _discard(conf, image_id, why)
        LOG.error("volume %s: %s; back to %s", volume_id, why,
                  vup.end_upload(volume_id, image_id, why))
        return False
    vup.forget_volume(image_id)
    ended = vup.end_upload(volume_id, image_id)
    LOG.info("volume %s uploaded to image %s (%s); volume %s", volume_id, image_id,
             image.disk_format, ended)
    return True


def recover(manager) -> list[str]:
    """At start: end the uploads of this host's volumes left ``uploading``
    (images discarded, temporary copies removed, volumes put back), discard
    the unfinished images of this host's released uploads and remove every
    leftover temporary copy; the ids of the volumes put back."""
    ended = []
    for volume in vdb.volume_get_all(host=manager.host, statuses=(st.VOLUME_UPLOADING,)):
        for image in vup.pending_images(volume.id):
            _remove_temp(manager.backend, temp_volume_id(image.id))
            with contextlib.suppress(FileNotFoundError):
                os.unlink(_qcow2_path(manager.conf, image.id))
        vup.discard_pending(manager.conf, volume.id, INTERRUPTED)
        owner = vup.owner_of(volume)
        if owner is not None:
            to = vup.end_upload(volume.id, owner, INTERRUPTED)
        else:     # an upload begun before owners were recorded
            to = vup.settled_status(volume.id)
            try:
                vdb.volume_update(volume.id, {"status": to, "status_reason": INTERRUPTED},
                                  expected_status=st.VOLUME_UPLOADING)
            except exception.FlotillaException:
                to = None
        if to is not None:
            LOG.warning("volume %s: %s; back to %s", volume.id, INTERRUPTED, to)
            ended.append(volume.id)
    # Released during the upload, then the service died: nothing owns them.
    for image_id in vup.discard_orphans(manager.conf, host=manager.host):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_qcow2_path(manager.conf, image_id))
    # No upload runs yet: every temporary copy left in the pool is stale.
    for name in manager.backend.volume_ids():
        if name.startswith(temp_volume_id("")):
            LOG.warning("removing the leftover temporary upload copy %s", name)
            _remove_temp(manager.backend, name)
    return ended
