"""/image/v2/images and /image/v2/images/{image_id}: image records.

Rules beyond common.py's:

* create: 201 with the image (status queued); a member creates images of
  its own project only, within its image quota (``[image]
  image_count_total``, 413 beyond it as in Glance); ``owner`` naming another project needs admin;
  ``visibility`` public needs admin (Glance's publicize_image), the
  default is private;
* delete: 204, the stored file is removed; a protected image is 403;
* PATCH takes a JSON patch (``application/openstack-images-v2.1-json-patch``)
  of the same fields create accepts; disk_format and container_format are
  fixed once data is uploaded.
"""

from __future__ import annotations

import uuid

import falcon

from api.image import common, listing, validation, versions, views
from flotilla import exception, image_store, images
from flotilla.db import images as db_images
from flotilla.db.models import Image

PATCH_MEDIA_TYPES = ("application/openstack-images-v2.1-json-patch",
                     "application/openstack-images-v2.0-json-patch")

# Fields of the create/patch document kept in internal properties.
_INTERNAL_FIELDS = {"protected": db_images.PROTECTED_KEY,
                    "tags": db_images.TAGS_KEY,
                    "os_hidden": db_images.HIDDEN_KEY}
_COLUMNS = ("name", "owner", "visibility", "disk_format", "container_format",
            "min_ram", "min_disk")


def _check_rights(ctxt, document: dict, image: Image | None = None) -> None:
    owner = document.get("owner")
    if owner is not None and owner != (image.owner if image else ctxt.project_id) \
            and not ctxt.is_admin:
        raise falcon.HTTPForbidden(description="Only an admin may set another owner.")
    visibility = document.get("visibility")
    was_public = image is not None and image.visibility == "public"
    if visibility == "public" and not was_public and not ctxt.is_admin:
        raise falcon.HTTPForbidden(description="Only an admin may make an image public.")


def _to_values(document: dict, internal: dict) -> dict:
    """DB values from a validated create/patch document; ``internal`` are
    the image's current internal properties (kept unless changed)."""
    values = {k: document.get(k) for k in _COLUMNS if k in document}
    properties = dict(internal)
    for field, key in _INTERNAL_FIELDS.items():
        if field in document:
            properties[key] = document[field]
    for key, value in document.items():
        if key not in validation.CORE_FIELDS and value is not None:
            properties[key] = value
    values["properties"] = properties
    return values


def _editable_document(image: Image) -> dict:
    """The fields of ``image`` a PATCH may change, as the client sees them."""
    body = views.image_view(image)
    document = {k: body[k] for k in validation.CORE_FIELDS - {"id"}}
    document.update({k: v for k, v in (image.properties or {}).items()
                     if k not in db_images.INTERNAL_PROPERTIES})
    return document


def _no_empty_id(req: falcon.Request) -> None:
    """``/v2/images/`` names an image with an empty id, as Glance routes
    it: 404 (the app strips the slash before routing)."""
    if req.env.get("PATH_INFO", "").endswith("/images/"):
        raise falcon.HTTPNotFound(description="No image has an empty id.")


class Collection:
    """GET and POST /image/v2/images."""

    def __init__(self, conf) -> None:
        self.conf = conf

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        _no_empty_id(req)
        ctxt = common.caller(req)
        common.require_read(ctxt)
        params = req.params
        query = listing.parse_query(self.conf, ctxt, params)
        try:
            page = db_images.image_get_all(query)
        except exception.ImageNotFound:
            raise falcon.HTTPBadRequest(
                description="marker %s is not an image you can see" % query.marker) from None
        except exception.FlotillaException as exc:
            raise common.http_error(exc) from None
        body = {"images": [views.image_view(i) for i in page],
                "first": "/v2/images", "schema": "/v2/schemas/images"}
        link = listing.next_link(params, query, page)
        if link:
            body["next"] = link
        resp.media = body

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        _no_empty_id(req)
        raise falcon.HTTPMethodNotAllowed(["GET", "POST"])

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        ctxt = common.caller(req)
        common.require_write(ctxt)
        document = validation.validate_image(common.read_json(req))
        _check_rights(ctxt, document)
        values = _to_values(document, {db_images.PROTECTED_KEY: False,
                                       db_images.TAGS_KEY: [],
                                       db_images.HIDDEN_KEY: False})
        values["id"] = (document.get("id") or str(uuid.uuid4())).lower()
        values.setdefault("owner", ctxt.project_id)
        if values["owner"] is None:
            values["owner"] = ctxt.project_id
        # Glance's default: private, but shareable with members.
        values.setdefault("visibility", "shared")
        values["status"] = "queued"
        try:
            image = db_images.image_create_within_quota(
                values, self.conf.image.image_count_total)
        except exception.OverQuota as exc:
            # Glance answers a quota it enforces with 413.
            raise falcon.HTTPContentTooLarge(
                description="Image quota exceeded: %s" % exc) from None
        except exception.FlotillaException as exc:
            raise common.http_error(exc) from None
        resp.status = falcon.HTTP_201
        resp.location = "%s/image/v2/images/%s" % (versions.base_url(self.conf, req), image.id)
        resp.media = views.image_view(image)


class Item:
    """GET, PATCH and DELETE /image/v2/images/{image_id}."""

    def __init__(self, conf) -> None:
        self.conf = conf

    def on_get(self, req: falcon.Request, resp: falcon.Response, image_id: str) -> None:
        ctxt = common.caller(req)
        common.require_read(ctxt)
        with common.translate_errors():
            image = images.get_visible(ctxt, image_id)
        resp.media = views.image_view(image)

    def on_patch(self, req: falcon.Request, resp: falcon.Response, image_id: str) -> None:
        ctxt = common.caller(req)
        common.require_write(ctxt)
        if (req.content_type or "").split(";")[0].strip() not in PATCH_MEDIA_TYPES:
            raise falcon.HTTPUnsupportedMediaType(
                description="Use Content-Type %s." % PATCH_MEDIA_TYPES[0])
        with common.translate_errors():
            image = images.get_visible(ctxt, image_id)
        common.require_owner(ctxt, image)
        operations = common.read_json(req)
        if req.content_type.split(";")[0].strip() == PATCH_MEDIA_TYPES[1]:
            operations = validation.patch_v20_to_v21(operations)
        before = _editable_document(image)
        after = validation.apply_patch(before, operations)
        _check_rights(ctxt, after, image)
        if image.status != "queued":
            # The formats describe data already stored and checked.
            for field in ("disk_format", "container_format"):
                if after.get(field) != before.get(field):
                    raise falcon.HTTPForbidden(
                        description="%s cannot change once data is uploaded." % field)
        values = _to_values(after, {k: v for k, v in (image.properties or {}).items()
                                    if k in db_images.INTERNAL_PROPERTIES})
        with common.translate_errors():
            image = db_images.image_update(image.id, values)
        resp.media = views.image_view(image)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, image_id: str) -> None:
        ctxt = common.caller(req)
        common.require_write(ctxt)
        with common.translate_errors():
            image = images.get_visible(ctxt, image_id)
        common.require_owner(ctxt, image)
        if (image.properties or {}).get(db_images.PROTECTED_KEY):
            raise falcon.HTTPForbidden(description="Image %s is protected." % image.id)
        with common.translate_errors():
            deleted = db_images.image_destroy(image.id)
        image_store.remove_image_file(self.conf, deleted)
        resp.status = falcon.HTTP_204


class Schema:
    """GET /image/v2/schemas/image(s): what the create body accepts."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = dict(validation.IMAGE_SCHEMA, name="image")
