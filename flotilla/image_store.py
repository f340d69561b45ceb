"""The image store: where image data lives, how an upload gets there, and
what an API process that died while receiving one leaves behind.

Rules:

* an image's data is one file ``<[image] store_path>/<image id>``; an upload
  is streamed in chunks to a ``.part-`` file in the same directory, hashed
  (sha256 and md5) and size-checked while streaming, fsynced, and only then
  renamed into place, so a stored file is always complete; any failure
  removes the partial file. A body the API received whole into the store
  already (api.body_spool, hashed while it arrived) is checked, fsynced and
  renamed instead of copied;
* ``disk_format`` is checked against the data: qcow2 is recognised by its
  magic ``QFI\\xfb``, raw is anything else; a qcow2 that reaches outside
  itself (backing file, external data file, ``json:`` names) is refused
  (it could make a guest read any file of a host):
  :func:`flotilla.diskimage.check_self_contained`, which also gives the
  virtual size recorded with the image;
* an upload records who receives it (host, pid and the pid's start time);
  at start an API process puts back to queued the uploads of this host's
  dead processes and removes their partial files (:func:`recover_uploads`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import hashlib
import logging
import os
import re
import socket
import struct
import uuid
from typing import BinaryIO

from oslo_config import cfg

from flotilla import diskimage, exception
from flotilla.db import images as db_images
from flotilla.db.models import Image

LOG = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024
QCOW2_MAGIC = b"QFI\xfb"
_UUID = re.compile(r"[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}")


def is_valid_id(image_id: str) -> bool:
    """Image ids are lower-case UUIDs; they name files, so nothing else."""
    return bool(_UUID.fullmatch(image_id or ""))


# --- the store ---------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ReceivedFile:
    """Image data received whole into a file on the store's file system,
    with its digests (api.body_spool)."""
    path: str
    size: int
    sha256: str
    md5: str


@dataclasses.dataclass(frozen=True)
class StoredImage:
    path: str
    size: int
    sha256: str
    md5: str
    disk_format: str
    virtual_size: int = 0


def image_path(conf: cfg.ConfigOpts, image_id: str) -> str:
    """Where the data of ``image_id`` lives (the id must be a UUID)."""
    if not is_valid_id(image_id):
        raise exception.ImageNotFound(image_id=image_id)
    return os.path.join(conf.image.store_path, image_id)


def detect_format(header: bytes) -> str:
    """``qcow2`` for data starting with the qcow2 magic, else ``raw``."""
    return "qcow2" if header[:4] == QCOW2_MAGIC else "raw"


def _check_header(header: bytes, expected_format: str) -> None:
    actual = detect_format(header)
    if actual != expected_format:
        raise exception.ImageFormatMismatch(actual=actual, expected=expected_format)
    if actual == "qcow2" and len(header) >= 20:
        offset, size = struct.unpack(">QI", header[8:20])
        if offset and size:
            raise exception.Invalid(reason="qcow2 images with a backing file are refused")


class _Digests:
    """sha256 and md5 of a sequence of chunks, computed on two threads while
    the caller reads or writes the next one (hashlib releases the GIL on
    large buffers): a snapshot of hundreds of MiB is stored about as fast as
    it is written."""

    def __init__(self) -> None:
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5(usedforsecurity=False)  # Glance's `checksum`, not security
        self.pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="image-hash")
        self.pending: list[concurrent.futures.Future] = []

    def update(self, chunk: bytes) -> None:
        for future in self.pending:     # digests take the chunks in order
            future.result()
        self.pending = [self.pool.submit(self.sha256.update, chunk),
                        self.pool.submit(self.md5.update, chunk)]

    def wait(self) -> None:
        for future in self.pending:
            future.result()
        self.pending = []

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def store_image(conf: cfg.ConfigOpts, image_id: str, stream: BinaryIO | None,
                disk_format: str, content_length: int | None = None,
                spooled: ReceivedFile | None = None) -> StoredImage:
    """Stream ``stream`` into the store as the data of ``image_id``.

    ``spooled``: the data is already whole, and hashed, in this file on the
    store's file system: it is checked and renamed into place instead of
    copied, and left where it is on failure (its receiver removes it).
    Raises ImageTooLarge past ``[image] max_image_size`` (at once when
    ``content_length`` says so), ImageUploadIncomplete when fewer than
    ``content_length`` bytes arrive, ImageFormatMismatch when the data is
    not ``disk_format``; nothing is left in the store on any failure.
    """
    limit = conf.image.max_image_size
    if content_length is not None and content_length > limit:
        raise exception.ImageTooLarge(limit=limit)
    final = image_path(conf, image_id)
    os.makedirs(conf.image.store_path, mode=0o700, exist_ok=True)
    if spooled is not None:
        info = _adopt_spooled(spooled, final, disk_format, limit, content_length)
        size, sha256, md5 = spooled.size, spooled.sha256, spooled.md5
    else:
        digests = _Digests()
        try:
            size, info = _copy_into_store(stream, final, disk_format, limit,
                                          content_length, digests)
        finally:
            digests.close()
        sha256, md5 = digests.sha256.hexdigest(), digests.md5.hexdigest()
    LOG.info("stored image %s: %d bytes, %s", image_id, size, disk_format)
    return StoredImage(path=final, size=size, sha256=sha256, md5=md5,
                       disk_format=disk_format, virtual_size=info.virtual_size)


def _copy_into_store(stream: BinaryIO, final: str, disk_format: str, limit: int,
                     content_length: int | None, digests: _Digests):
    part = "%s.part-%s" % (final, uuid.uuid4().hex)
    size = 0
    header = b""
    checked = False
    try:
        # Owner-only, like every state file (guests' data, possibly secret).
        with os.fdopen(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600),
                       "wb") as out:
            while True:
                chunk = stream.read(CHUNK_SIZE)
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise exception.ImageTooLarge(limit=limit)
                if not checked:
                    # Check the format as soon as the header is in, so a
                    # wrong upload is refused before the rest is read.
                    header += chunk[:20 - len(header)]
                    if len(header) >= 20:
                        _check_header(header, disk_format)
                        checked = True
                digests.update(chunk)
                out.write(chunk)
            digests.wait()
            if content_length is not None and size < content_length:
                raise exception.ImageUploadIncomplete(received=size,
                                                      expected=content_length)
            if not checked:
                _check_header(header, disk_format)
            out.flush()
            os.fsync(out.fileno())
        info = diskimage.check_self_contained(part, disk_format)
        os.replace(part, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(part)
    return size, info


def _adopt_spooled(spooled: ReceivedFile, final: str, disk_format: str, limit: int,
                   content_length: int | None):
    if spooled.size > limit:
        raise exception.ImageTooLarge(limit=limit)
    if content_length is not None and spooled.size < content_length:
        raise exception.ImageUploadIncomplete(received=spooled.size,
                                              expected=content_length)
    with open(spooled.path, "rb") as f:
        _check_header(f.read(20), disk_format)
        os.fsync(f.fileno())
    info = diskimage.check_self_contained(spooled.path, disk_format)
    os.replace(spooled.path, final)
    return info


# --- uploads interrupted by a crash ---------------------------------------------

def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` (tells a pid reused after a crash
    from the process that had it), None when there is no such process."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def upload_owner() -> dict:
    """Who is receiving an upload: this host and process."""
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "started": _start_time(os.getpid())}


def owner_alive(owner) -> bool:
    """Whether the process recorded as receiving an upload still runs here."""
    if not isinstance(owner, dict) or owner.get("host") != socket.gethostname():
        return False
    pid, started = owner.get("pid"), owner.get("started")
    return isinstance(pid, int) and started is not None and _start_time(pid) == started


def reset_upload(image_id: str) -> None:
    """A saving image back to queued, without its upload owner (CAS on
    saving: ImageStatusConflict when it is not saving any more)."""
    image = db_images.image_get(image_id)
    properties = {k: v for k, v in (image.properties or {}).items()
                  if k != db_images.UPLOAD_KEY}
    db_images.image_update(image_id, {"status": "queued", "properties": properties},
                           expected_status="saving")


def recover_uploads(conf: cfg.ConfigOpts) -> list[str]:
    """At start: uploads this host's API processes were receiving when they
    died go back to queued, and partial files nobody writes are removed.

    An upload belongs to the process recorded when it began (host, pid and
    the pid's start time); one whose process still runs (another API process
    of this host) is left alone, as is one of another host (its own API
    recovers it). Returns the ids put back to queued."""
    recovered = []
    for image in db_images.image_get_saving():
        owner = (image.properties or {}).get(db_images.UPLOAD_KEY)
        if isinstance(owner, dict) and owner.get("host") != socket.gethostname():
            continue
        if isinstance(owner, dict) and owner_alive(owner):
            continue
        try:
            reset_upload(image.id)
        except exception.FlotillaException:
            continue  # finished or deleted meanwhile
        recovered.append(image.id)
        LOG.warning("image %s: upload interrupted by a crash, back to queued", image.id)
    store = conf.image.store_path
    if os.path.isdir(store):
        # Kept: partial files of uploads still running here, and of other
        # hosts' uploads (a store may be shared).
        live = set()
        for i in db_images.image_get_saving():
            owner = (i.properties or {}).get(db_images.UPLOAD_KEY)
            if owner_alive(owner) or (isinstance(owner, dict)
                                       and owner.get("host") != socket.gethostname()):
                live.add(i.id)
        for name in os.listdir(store):
            image_id, sep, _ = name.partition(".part-")
            if sep and image_id not in live:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(store, name))
                LOG.warning("removed partial upload %s", name)
    return recovered


def remove_image_file(conf: cfg.ConfigOpts, image: Image) -> None:
    """Remove the stored data of ``image`` if there is any."""
    path = image.location or image_path(conf, image.id)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def iter_file(path: str, chunk_size: int = CHUNK_SIZE):
    """Yield the bytes of ``path`` in chunks (downloads are never read
    whole into memory); the file is closed when the iterator ends or is
    closed by the server."""
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            yield chunk
