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
  RPC signature under a shared key. Signatures are never logged;
* they upload a snapshot the same way, through a URL signed over another
  label, the image id, a random nonce and an expiry: it is valid for that
  image only, until it expires, and once (the image keeps the sha256 of the
  one nonce that may upload, and forgets it when the upload starts). A
  download signature is never an upload signature and the other way round;
* a snapshot image is created queued by the API, owned by the server's
  project, within the project's image quota (``[image] image_count_total``,
  snapshots and backups counted like any image), with at most ``[image]
  image_property_quota`` properties; one that cannot be completed is
  deleted, or ``killed`` with the reason when even that fails
  (:func:`discard_image`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import hashlib
import hmac
import logging
import os
import re
import secrets
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
_UPLOAD_LABEL = b"flotilla-image-upload-v1\n"

SNAPSHOT = "snapshot"
BACKUP = "backup"
# Properties a snapshot gets from Flotilla, never from its base image or
# the user's metadata.
SNAPSHOT_PROPERTIES = ("image_type", "instance_uuid", "base_image_ref", "user_id",
                       "backup_type")
KILLED_REASON_KEY = db_images.KILLED_REASON_KEY


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
    if image.visibility == "shared":
        from flotilla.db import image_members
        return image_members.is_member(image.id, ctxt.project_id)
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


# --- snapshot uploads ----------------------------------------------------------

def upload_token_hash(nonce: str) -> str:
    """What the image row keeps of an upload nonce (never the nonce)."""
    return hashlib.sha256(nonce.encode()).hexdigest()


def upload_signature(conf: cfg.ConfigOpts, image_id: str, nonce: str,
                     expires: int) -> str:
    """Hex HMAC-SHA256 over the upload label, image id, nonce and expiry."""
    text = _UPLOAD_LABEL + ("%s\n%s\n%d" % (image_id, nonce, expires)).encode()
    return hmac.new(_signing_key(conf), text, hashlib.sha256).hexdigest()


def arm_upload_url(conf: cfg.ConfigOpts, image_id: str, now: float | None = None) -> str:
    """A signed URL that uploads the data of the queued image ``image_id``,
    once, within ``[image] upload_url_ttl`` seconds:
    ``<image endpoint>/v2/images/<id>/file?expires=..&nonce=..&signature=..``.

    Arming a new URL disarms any earlier one. Raises ImageStatusConflict
    when the image is not queued, ImageNotFound when it is gone, and
    FlotillaException when no image endpoint or signing key is configured
    (agents could not reach the store).
    """
    base = image_endpoint(conf)
    if not base:
        raise exception.FlotillaException(
            "Snapshots cannot be uploaded: set [image] public_endpoint (or [api] "
            "public_endpoint) to where compute agents reach the image API")
    nonce = secrets.token_urlsafe(24)
    expires = int(now if now is not None else time.time()) + conf.image.upload_url_ttl
    signature = upload_signature(conf, image_id, nonce, expires)
    db_images.image_arm_upload(image_id, upload_token_hash(nonce))
    query = urllib.parse.urlencode(
        {"expires": expires, "nonce": nonce, "signature": signature})
    return "%s/v2/images/%s/file?%s" % (base, image_id, query)


def verify_upload_signature(conf: cfg.ConfigOpts, image_id: str, expires: str | None,
                            nonce: str | None, signature: str | None,
                            now: float | None = None) -> str:
    """Check a signed upload URL of ``image_id``; returns the hash of its
    nonce (what :func:`flotilla.db.images.image_claim_upload` needs) or
    raises ImageUploadForbidden (missing, expired, malformed or forged).
    Whether the URL was used already is the claim's to say."""
    if not expires or not signature or not nonce:
        raise exception.ImageUploadForbidden(reason="signature missing")
    try:
        expires_at = int(expires)
    except ValueError:
        raise exception.ImageUploadForbidden(reason="malformed expiry") from None
    if expires_at < (now if now is not None else time.time()):
        raise exception.ImageUploadForbidden(reason="expired")
    expected = upload_signature(conf, image_id, nonce, expires_at)
    if not hmac.compare_digest(expected, signature):
        raise exception.ImageUploadForbidden(reason="bad signature")
    return upload_token_hash(nonce)


# --- snapshot images -------------------------------------------------------------

def visible_property_count(properties: dict) -> int:
    """Properties a user sees (Flotilla's internal ones left out)."""
    return sum(1 for k in properties if k not in db_images.INTERNAL_PROPERTIES)


def snapshot_values(instance, name: str, metadata: dict[str, str], user_id: str | None,
                    base: Image | None, image_type: str = SNAPSHOT,
                    backup_type: str | None = None) -> dict:
    """The row of a new snapshot (or backup) image of ``instance`` (an
    instance row): queued, private, qcow2, owned by the server's project;
    min_ram and min_disk at least the base image's; properties: the base
    image's own, then the user's ``metadata``, then Flotilla's (image_type,
    instance_uuid, base_image_ref, user_id, backup_type), which nothing
    overrides."""
    properties = {k: v for k, v in ((base.properties or {}) if base else {}).items()
                  if k not in db_images.INTERNAL_PROPERTIES and k not in SNAPSHOT_PROPERTIES}
    properties.update(metadata or {})
    properties.update({"image_type": image_type, "instance_uuid": instance.uuid,
                       "base_image_ref": instance.image_ref or "",
                       "user_id": user_id or instance.user_id or ""})
    if image_type == BACKUP:
        properties["backup_type"] = backup_type or ""
    properties.update({db_images.PROTECTED_KEY: False, db_images.TAGS_KEY: [],
                       db_images.HIDDEN_KEY: False})
    return {"id": str(uuid.uuid4()), "name": name, "owner": instance.project_id,
            "status": "queued", "disk_format": "qcow2", "container_format": "bare",
            "visibility": "private",
            "min_disk": max(instance.root_gb or 0, (base.min_disk or 0) if base else 0),
            "min_ram": (base.min_ram or 0) if base else 0,
            "properties": properties}


def create_snapshot_image(conf: cfg.ConfigOpts, values: dict) -> Image:
    """Create the snapshot image ``values`` (from :func:`snapshot_values`)
    within its owner's image quota (OverQuota) and property quota
    (Invalid)."""
    limit = conf.image.image_property_quota
    count = visible_property_count(values["properties"])
    if 0 <= limit < count:
        raise exception.Invalid(
            reason="the image would have %d properties; the image property quota "
                   "is %d" % (count, limit))
    return db_images.image_create_within_quota(values, conf.image.image_count_total)


def discard_image(conf: cfg.ConfigOpts, image_id: str, reason: str) -> str:
    """Remove an image whose data will never come (a failed snapshot):
    deleted with its data; when deleting fails, ``killed`` with ``reason``.
    Returns what happened: "deleted", "killed" or "gone" (deleted already)."""
    try:
        deleted = db_images.image_destroy(image_id)
    except exception.ImageNotFound:
        return "gone"
    except exception.FlotillaException as exc:
        LOG.warning("could not delete image %s (%s): marking it killed", image_id, exc)
        try:
            image = db_images.image_get(image_id)
            properties = dict(image.properties or {}, **{KILLED_REASON_KEY: reason[:255]})
            db_images.image_update(image_id, {"status": "killed",
                                              "properties": properties,
                                              "upload_token": None})
        except exception.ImageNotFound:
            return "gone"
        return "killed"
    with contextlib.suppress(OSError):
        remove_image_file(conf, deleted)
    return "deleted"


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
