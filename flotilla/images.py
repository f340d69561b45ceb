"""What services need to know about images (the store itself, where their
data lives and how it gets there, is flotilla.image_store).

Rules:

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

import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import time
import urllib.parse
import uuid

from oslo_config import cfg

from flotilla import exception
from flotilla.context import RequestContext
from flotilla.db import images as db_images
from flotilla.db.models import Image
from flotilla.image_store import image_path, is_valid_id, remove_image_file

LOG = logging.getLogger(__name__)

DISK_FORMATS = ("qcow2", "raw")
CONTAINER_FORMATS = ("bare",)
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
