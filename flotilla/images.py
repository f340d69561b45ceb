"""The image store and what other services need to know about images.

Rules:

* an image's data is one file ``<[image] store_path>/<image id>``; an upload
  is streamed in chunks to a ``.part-`` file in the same directory, hashed
  (sha256 and md5) and size-checked while streaming, fsynced, and only then
  renamed into place, so a stored file is always complete; any failure
  removes the partial file;
* ``disk_format`` is checked against the data: qcow2 is recognised by its
  magic ``QFI\\xfb``, raw is anything else; a qcow2 that reaches outside
  itself (backing file, external data file, ``json:`` names) is refused
  (it could make a guest read any file of a host):
  :func:`flotilla.diskimage.check_self_contained`, which also gives the
  virtual size recorded with the image;
* who may see an image: an admin any; a project its own and the public and
  community ones. Anything else looks exactly like a missing image;
* compute agents download with no user token, through a URL signed with
  HMAC-SHA256 over the image id and an expiry (key ``[image]
  download_signing_key``, else ``[rpc] signing_key``); the signed text
  starts with a purpose label, so a download signature can never pass as an
  RPC signature under a shared key. Signatures are never logged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import logging
import os
import re
import socket
import struct
import time
import urllib.parse
import uuid
from typing import BinaryIO

from oslo_config import cfg

from flotilla import diskimage, exception
from flotilla.context import RequestContext
from flotilla.db import images as db_images
from flotilla.db.models import Image

LOG = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024
QCOW2_MAGIC = b"QFI\xfb"
DISK_FORMATS = ("qcow2", "raw")
CONTAINER_FORMATS = ("bare",)
_UUID = re.compile(r"[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}")
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
_SIGNING_LABEL = b"flotilla-image-download-v1\n"


# --- visibility --------------------------------------------------------------

def is_valid_id(image_id: str) -> bool:
    """Image ids are lower-case UUIDs; they name files, so nothing else."""
    return bool(_UUID.fullmatch(image_id or ""))


def can_see(ctxt: RequestContext, image: Image) -> bool:
    """Whether ``ctxt`` may see (show, list, download, boot) ``image``."""
    if ctxt.is_admin:
        return True
    if image.owner is not None and image.owner == ctxt.project_id:
        return True
    return image.visibility in ("public", "community")


def get_visible(ctxt: RequestContext, image_id: str) -> Image:
    """The live image ``image_id`` if ``ctxt`` may see it, else
    ImageNotFound (whether it is missing or someone else's)."""
    if not is_valid_id(image_id):
        raise exception.ImageNotFound(image_id=image_id)
    image = db_images.image_get(image_id)
    if not can_see(ctxt, image):
        raise exception.ImageNotFound(image_id=image_id)
    return image


def check_image_usable(ctxt: RequestContext, image_id: str) -> Image:
    """The image a server of ``ctxt``'s project may boot from: visible to it
    (else ImageNotFound) and active (else ImageNotActive, a subclass of
    ImageNotFound with code 400)."""
    image = get_visible(ctxt, image_id)
    if image.status != "active":
        raise exception.ImageNotActive(image_id=image_id, status=image.status)
    return image


# --- what compute agents need ------------------------------------------------

def compute_image_ref(conf: cfg.ConfigOpts, image_id: str,
                      ctxt: RequestContext | None = None,
                      now: float | None = None) -> dict:
    """What a compute agent needs to fetch ``image_id``:
    ``{"id", "source", "sha256", "disk_format"}`` (see
    flotilla.objects.ImageMeta).

    ``source`` is a signed download URL under :func:`image_endpoint` valid
    for ``[image] download_url_ttl`` seconds, or, with no endpoint
    configured, a ``file://`` URL of the stored file (one-host clouds). With
    ``ctxt`` the image must also be usable by its project. Unknown, deleted
    or not active images raise ImageNotFound (ImageNotActive for the
    latter).
    """
    if ctxt is not None:
        image = check_image_usable(ctxt, image_id)
    else:
        if not is_valid_id(image_id):
            raise exception.ImageNotFound(image_id=image_id)
        image = db_images.image_get(image_id)
        if image.status != "active":
            raise exception.ImageNotActive(image_id=image_id, status=image.status)
    if image_endpoint(conf):
        source = signed_download_url(conf, image.id, now=now)
    else:
        source = "file://" + urllib.parse.quote(
            image.location or image_path(conf, image.id))
    return {"id": image.id, "source": source, "sha256": image.checksum or "",
            "disk_format": image.disk_format or ""}


def image_endpoint(conf: cfg.ConfigOpts) -> str | None:
    """Base URL of the image API for compute agents: ``[image]
    public_endpoint``, else ``[api] public_endpoint`` + ``/image``, else
    None."""
    if conf.image.public_endpoint:
        return conf.image.public_endpoint.rstrip("/")
    try:
        api_endpoint = conf.api.public_endpoint
    except (cfg.NoSuchOptError, cfg.NoSuchGroupError, AttributeError):
        api_endpoint = None
    return api_endpoint.rstrip("/") + "/image" if api_endpoint else None


def _signing_key(conf: cfg.ConfigOpts) -> bytes:
    key = conf.image.download_signing_key or conf.rpc.signing_key
    if not key:
        raise exception.FlotillaException(
            "Image download URLs cannot be signed: set [image] "
            "download_signing_key (or [rpc] signing_key)")
    return key.encode("utf-8")


def download_signature(conf: cfg.ConfigOpts, image_id: str, expires: int) -> str:
    """Hex HMAC-SHA256 over the purpose label, the image id and expiry."""
    text = _SIGNING_LABEL + ("%s\n%d" % (image_id, expires)).encode()
    return hmac.new(_signing_key(conf), text, hashlib.sha256).hexdigest()


def signed_download_url(conf: cfg.ConfigOpts, image_id: str,
                        now: float | None = None) -> str:
    """``<image endpoint>/v2/images/<id>/file?expires=..&signature=..``."""
    expires = int(now if now is not None else time.time()) + conf.image.download_url_ttl
    query = urllib.parse.urlencode(
        {"expires": expires, "signature": download_signature(conf, image_id, expires)})
    base = image_endpoint(conf)
    return "%s/v2/images/%s/file?%s" % (base, image_id, query)


def verify_download_signature(conf: cfg.ConfigOpts, image_id: str,
                              expires: str | None, signature: str | None,
                              now: float | None = None) -> None:
    """Accept a signed download of ``image_id`` or raise
    ImageDownloadForbidden (expired, malformed or forged)."""
    if not expires or not signature:
        raise exception.ImageDownloadForbidden(reason="signature missing")
    if not _HEX_SHA256.fullmatch(signature):
        raise exception.ImageDownloadForbidden(reason="malformed signature")
    try:
        if len(expires) > 20:
            raise ValueError(expires)
        expires_at = int(expires)
    except ValueError:
        raise exception.ImageDownloadForbidden(reason="malformed expiry") from None
    if expires_at < (now if now is not None else time.time()):
        raise exception.ImageDownloadForbidden(reason="expired")
    expected = download_signature(conf, image_id, expires_at)
    # Constant time: a timing difference would let a forger guess bytes.
    if not hmac.compare_digest(expected, signature):
        raise exception.ImageDownloadForbidden(reason="bad signature")


# --- the store ---------------------------------------------------------------

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


def store_image(conf: cfg.ConfigOpts, image_id: str, stream: BinaryIO,
                disk_format: str, content_length: int | None = None) -> StoredImage:
    """Stream ``stream`` into the store as the data of ``image_id``.

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
    part = "%s.part-%s" % (final, uuid.uuid4().hex)
    sha256 = hashlib.sha256()
    md5 = hashlib.md5(usedforsecurity=False)  # Glance's `checksum`, not security
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
                sha256.update(chunk)
                md5.update(chunk)
                out.write(chunk)
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
    LOG.info("stored image %s: %d bytes, %s", image_id, size, disk_format)
    return StoredImage(path=final, size=size, sha256=sha256.hexdigest(),
                       md5=md5.hexdigest(), disk_format=disk_format,
                       virtual_size=info.virtual_size)


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


def _owner_alive(owner) -> bool:
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
        if isinstance(owner, dict) and _owner_alive(owner):
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
            if _owner_alive(owner) or (isinstance(owner, dict)
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
