"""/image/v2/images/{image_id}/file: upload and download of image data.

Upload (PUT, ``application/octet-stream``): the owner (or an admin) of a
queued image with a disk_format; the status moves queued → saving (a
compare-and-swap, so a concurrent second upload gets 409) → active, 204.
The data is streamed to the store (flotilla.image_store.store_image); any
failure (too large: 413, wrong format: 400, short body or a dropped
connection) leaves no file and puts the status back to queued.

A compute agent uploading a snapshot sends no token: its URL carries
``expires``, ``nonce`` and ``signature`` (flotilla.images.arm_upload_url)
and is checked instead of a token, even when one is sent: 403 when forged
or expired, 409 when the URL was used already (or another was armed), 404
when the image is gone.

Download (GET): with a token, any image the caller may see; without one,
only with a valid signed URL from flotilla.images.compute_image_ref (403
when expired or forged). Streamed from the file with Content-Length,
``Content-MD5`` (hex md5, as Glance sends and clients check) and
``X-Image-Hash-Sha256`` (hex sha256, what Flotilla verifies). An image
with no data yet is 204, as in Glance.
"""

from __future__ import annotations

import logging
import os

import falcon

from api import body_spool
from api.image import common
from flotilla import exception, image_store, images
from flotilla.db import images as db_images
from flotilla.db.models import Image

LOG = logging.getLogger(__name__)

SHA256_HEADER = "X-Image-Hash-Sha256"


def _require_octet_stream(req: falcon.Request) -> None:
    if (req.content_type or "").split(";")[0].strip() != "application/octet-stream":
        raise falcon.HTTPUnsupportedMediaType(
            description="Image data must be sent as application/octet-stream.")


class ImageData:
    """PUT and GET /image/v2/images/{image_id}/file."""

    # For the API's policy table: a download, and an agent's signed upload,
    # may come without a token (the responders check who may).
    policy_rules = {"GET": "optional", "HEAD": "optional", "PUT": "optional"}

    def __init__(self, conf) -> None:
        self.conf = conf

    # --- upload ----------------------------------------------------------------

    def on_put(self, req: falcon.Request, resp: falcon.Response, image_id: str) -> None:
        if "signature" in req.params:
            self._signed_put(req, resp, image_id)
            return
        ctxt = common.caller(req)
        common.require_write(ctxt)
        _require_octet_stream(req)
        with common.translate_errors():
            image = images.get_visible(ctxt, image_id)
        common.require_owner(ctxt, image)
        if not image.disk_format or not image.container_format:
            raise falcon.HTTPBadRequest(
                description="Set disk_format and container_format before uploading data.")
        length = req.content_length
        if length is not None and length > self.conf.image.max_image_size:
            raise common.http_error(
                exception.ImageTooLarge(limit=self.conf.image.max_image_size))
        # Who receives the data, so that a restart of this API after a crash
        # can tell its own interrupted uploads (image_store.recover_uploads).
        uploading = dict(image.properties or {},
                         **{db_images.UPLOAD_KEY: image_store.upload_owner()})
        try:
            db_images.image_update(image.id, {"status": "saving", "properties": uploading},
                                   expected_status="queued")
        except exception.ImageStatusConflict as exc:
            raise falcon.HTTPConflict(
                description="Image %s is %s: data can only be uploaded once."
                % (image.id, exc.kwargs.get("actual"))) from None
        except exception.FlotillaException as exc:
            raise common.http_error(exc) from None
        self._receive(req, image, length)
        resp.status = falcon.HTTP_204

    def _signed_put(self, req: falcon.Request, resp: falcon.Response, image_id: str) -> None:
        """A compute agent's snapshot upload through its signed URL."""
        if not images.is_valid_id(image_id):
            raise falcon.HTTPNotFound()
        with common.translate_errors():
            token = images.verify_upload_signature(
                self.conf, image_id, req.get_param("expires"), req.get_param("nonce"),
                req.get_param("signature"))
        _require_octet_stream(req)
        length = req.content_length
        if length is not None and length > self.conf.image.max_image_size:
            raise common.http_error(
                exception.ImageTooLarge(limit=self.conf.image.max_image_size))
        try:
            image = db_images.image_claim_upload(image_id, token)
        except exception.ImageStatusConflict:
            raise falcon.HTTPConflict(
                description="This upload URL of image %s was used already." % image_id) \
                from None
        except exception.FlotillaException as exc:
            raise common.http_error(exc) from None
        LOG.info("snapshot upload of image %s started", image_id)
        self._receive(req, image, length)
        resp.status = falcon.HTTP_204

    def _receive(self, req: falcon.Request, image: Image, length: int | None) -> None:
        # Without Content-Length (chunked) the raw stream ends the body;
        # bounded_stream would read nothing.
        stream = req.bounded_stream if length is not None else req.stream
        try:
            # Received whole into the store already (api.body_spool), or not.
            spooled = body_spool.received(req.env.get("wsgi.input"))
            stored = image_store.store_image(self.conf, image.id, stream,
                                        image.disk_format, content_length=length,
                                        spooled=spooled)
        except BaseException as exc:
            self._back_to_queued(image.id)
            if isinstance(exc, exception.FlotillaException):
                raise common.http_error(exc) from None
            if isinstance(exc, OSError):
                # A dropped client connection or a full disk.
                LOG.warning("upload of image %s failed: %s", image.id, exc)
                raise falcon.HTTPBadRequest(
                    description="The upload failed: %s" % exc.strerror) from None
            raise
        properties = dict(image.properties or {}, **{db_images.MD5_KEY: stored.md5})
        properties.pop(db_images.UPLOAD_KEY, None)
        try:
            db_images.image_update(
                image.id, {"status": "active", "size": stored.size,
                           "virtual_size": stored.virtual_size,
                           "checksum": stored.sha256, "location": stored.path,
                           "properties": properties},
                expected_status="saving")
        except exception.FlotillaException as exc:
            # Deleted (or reset) while uploading: the data has no image.
            with_file = Image(id=image.id, location=stored.path)
            image_store.remove_image_file(self.conf, with_file)
            raise falcon.HTTPConflict(
                description="Image %s changed during the upload: %s" % (image.id, exc)) from None

    @staticmethod
    def _back_to_queued(image_id: str) -> None:
        try:
            image_store.reset_upload(image_id)
        except exception.FlotillaException as exc:
            LOG.info("image %s not reset to queued after a failed upload: %s", image_id, exc)

    # --- download --------------------------------------------------------------

    def on_get(self, req: falcon.Request, resp: falcon.Response, image_id: str) -> None:
        image = self._authorized_image(req, image_id)
        if image.status == "deactivated":
            # Glance: a deactivated image's data is for admins only.
            caller = common.authenticated(req)
            if caller is None or not caller.is_admin:
                raise falcon.HTTPForbidden(
                    description="Image %s is deactivated." % image.id)
        elif image.status != "active" or image.checksum is None:
            resp.status = falcon.HTTP_204
            return
        if image.checksum is None:
            resp.status = falcon.HTTP_204
            return
        path = image.location or image_store.image_path(self.conf, image.id)
        try:
            handle = open(path, "rb")
            size = os.fstat(handle.fileno()).st_size
        except FileNotFoundError:
            LOG.error("data of active image %s is missing from %s", image.id, path)
            raise falcon.HTTPServiceUnavailable(
                description="The data of image %s is unavailable." % image.id) from None
        resp.content_type = "application/octet-stream"
        md5 = (image.properties or {}).get(db_images.MD5_KEY)
        if md5:
            resp.set_header("Content-MD5", md5)
        resp.set_header(SHA256_HEADER, image.checksum)
        # Falcon closes the file when the server is done with the body.
        resp.set_stream(handle, size)

    def _authorized_image(self, req: falcon.Request, image_id: str) -> Image:
        ctxt = common.authenticated(req)
        if ctxt is not None:
            common.require_read(ctxt)
            with common.translate_errors():
                return images.get_visible(ctxt, image_id)
        if "signature" not in req.params:
            raise falcon.HTTPUnauthorized(description="Authentication required.")
        if not images.is_valid_id(image_id):
            raise falcon.HTTPNotFound()
        with common.translate_errors():
            images.verify_download_signature(
                self.conf, image_id, req.get_param("expires"), req.get_param("signature"))
            return db_images.image_get(image_id)
