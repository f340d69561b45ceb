"""The deprecated /images proxy (up to 2.35, as Nova): images as the
compute API showed them before clients spoke to the image API directly.

Rules (Nova's proxy over Glance):

* list, detail and show what the caller may see in the image API;
  status is ACTIVE, SAVING (queued or saving), DELETED, ERROR or UNKNOWN,
  with ``progress``; ``metadata`` are the image's properties;
* filters: name, status, changes-since, server (the instance_uuid
  property), type (the image_type property), minRam, minDisk; paging with
  limit and marker;
* delete and metadata writes need the image's owner (or an admin): 403
  otherwise, as the image API answers; a protected image cannot be deleted;
  metadata writes count against the project's image metadata limit (128);
* from 2.36 every route is 404.
"""

from __future__ import annotations

import falcon

from api import errors, validation
from api.compute import usage
from api.state import APIState, ctxt, isotime, version
from flotilla import exception, image_store, images
from flotilla.db import images as images_db

MAX_IMAGE_META = 128
_STATUS = {"active": "ACTIVE", "queued": "SAVING", "saving": "SAVING",
           "importing": "SAVING", "deleted": "DELETED", "pending_delete": "DELETED",
           "killed": "ERROR", "deactivated": "ERROR"}
_PROGRESS = {"queued": 25, "saving": 50, "importing": 50, "active": 100}
METADATA_BODY = {"type": "object", "properties": {"metadata": {
    "type": "object", "additionalProperties": {"type": "string", "maxLength": 255},
    "propertyNames": {"minLength": 1, "maxLength": 255}}},
    "required": ["metadata"], "additionalProperties": False}
META_BODY = {"type": "object", "properties": {"meta": {
    "type": "object", "minProperties": 1, "maxProperties": 1,
    "additionalProperties": {"type": "string", "maxLength": 255},
    "propertyNames": {"minLength": 1, "maxLength": 255}}},
    "required": ["meta"], "additionalProperties": False}


def _check_version(req) -> None:
    if version(req) >= (2, 36):
        raise errors.not_found("The /images proxy was removed in microversion 2.36: "
                               "use the image API.")


def _links(url: str, image_id: str) -> list[dict]:
    base = url.rsplit("/v2.1", 1)[0]
    return [{"rel": "self", "href": "%s/images/%s" % (url, image_id)},
            {"rel": "bookmark", "href": "%s/images/%s" % (base, image_id)}]


def view(image, url: str, detail: bool = True) -> dict:
    result = {"id": image.id, "name": image.name, "links": _links(url, image.id)}
    if not detail:
        return result
    properties = {k: str(v) for k, v in (image.properties or {}).items()
                  if k not in images_db.INTERNAL_PROPERTIES}
    result.update({
        "status": _STATUS.get(image.status, "UNKNOWN"),
        "progress": _PROGRESS.get(image.status, 0),
        "minDisk": image.min_disk or 0, "minRam": image.min_ram or 0,
        "metadata": properties,
        "created": isotime(image.created_at), "updated": isotime(image.updated_at
                                                                 or image.created_at),
        "OS-EXT-IMG-SIZE:size": image.size or 0,
    })
    if properties.get("instance_uuid"):
        result["server"] = {"id": properties["instance_uuid"],
                            "links": [{"rel": "self", "href": "%s/servers/%s" % (
                                url, properties["instance_uuid"])}]}
    return result


def _get(req, image_id: str):
    try:
        return images.get_visible(ctxt(req), image_id)
    except exception.NotFound:
        raise errors.not_found("Image not found.") from None


def _owned(req, image_id: str):
    image = _get(req, image_id)
    ctx = ctxt(req)
    if not ctx.is_admin and image.owner != ctx.project_id:
        raise errors.forbidden("You are not permitted to modify image %s." % image_id)
    return image


def _save(image, properties: dict) -> dict:
    if len(properties) > MAX_IMAGE_META:
        raise exception.OverQuota(resources="metadata_items",
                                  detail="limit %d" % MAX_IMAGE_META)
    # Properties this view does not show (protection, hidden, tags) are kept.
    values = {k: v for k, v in (image.properties or {}).items()
              if k in images_db.INTERNAL_PROPERTIES}
    values.update(properties)
    try:
        saved = images_db.image_update(image.id, {"properties": values})
    except exception.NotFound:
        raise errors.not_found("Image not found.") from None
    return view(saved, "")["metadata"]


class Images:
    def __init__(self, state: APIState, detail: bool = False) -> None:
        self.state = state
        self.detail = detail

    def on_get(self, req, resp) -> None:
        _check_version(req)
        ctx = ctxt(req)
        limit = validation.query_int(req, "limit", 0)
        limit = self.state.conf.api.max_limit if limit is None else \
            min(limit, self.state.conf.api.max_limit)
        query = images_db.ImageQuery(
            project_id=ctx.project_id, all_projects=False,
            names=[req.get_param("name")] if req.get_param("name") else None,
            sort_key="created_at", sort_dir="desc", limit=self.state.conf.api.max_limit)
        rows = [i for i in images_db.image_get_all(query) if images.can_see(ctx, i)]
        status = req.get_param("status")
        since = usage.parse_time(req.get_param("changes-since"), "changes-since")
        server = req.get_param("server")
        kind = req.get_param("type")
        min_ram = validation.query_int(req, "minRam")
        min_disk = validation.query_int(req, "minDisk")
        url = self.state.compute_url(req)
        views = []
        for image in rows:
            shown = view(image, url)
            props = image.properties or {}
            if status and shown["status"] != status.upper():
                continue
            if since and (image.updated_at or image.created_at) < since:
                continue
            if server and props.get("instance_uuid") != server.rsplit("/", 1)[-1]:
                continue
            if kind and props.get("image_type") != kind:
                continue
            if min_ram is not None and (image.min_ram or 0) < min_ram:
                continue
            if min_disk is not None and (image.min_disk or 0) < min_disk:
                continue
            views.append(shown if self.detail else view(image, url, detail=False))
        marker = req.get_param("marker")
        if marker is not None:
            ids = [v["id"] for v in views]
            if marker not in ids:
                raise errors.bad_request("marker [%s] not found" % marker[:64])
            views = views[ids.index(marker) + 1:]
        body = {"images": views[:limit]}
        if limit and len(views) > limit:
            body["images_links"] = [{"rel": "next", "href": "%s/images%s?limit=%d&marker=%s"
                                     % (url, "/detail" if self.detail else "", limit,
                                        views[limit - 1]["id"])}]
        resp.media = body


class Image:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp, image_id: str) -> None:
        _check_version(req)
        resp.media = {"image": view(_get(req, image_id), self.state.compute_url(req))}

    def on_delete(self, req, resp, image_id: str) -> None:
        _check_version(req)
        image = _owned(req, image_id)
        if (image.properties or {}).get(images_db.PROTECTED_KEY):
            raise errors.forbidden("Image %s is protected." % image_id)
        try:
            deleted = images_db.image_destroy(image.id)
        except exception.NotFound:
            raise errors.not_found("Image not found.") from None
        image_store.remove_image_file(self.state.conf, deleted)
        resp.status = falcon.HTTP_204


class ImageMetadata:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp, image_id: str) -> None:
        _check_version(req)
        resp.media = {"metadata": view(_get(req, image_id), "")["metadata"]}

    def _write(self, req, resp, image_id: str, merge: bool) -> None:
        _check_version(req)
        body = validation.validate(validation.read_json(
            req, self.state.conf.api.max_request_body_size), METADATA_BODY)
        image = _owned(req, image_id)
        current = view(image, "")["metadata"] if merge else {}
        resp.media = {"metadata": _save(image, dict(current, **body["metadata"]))}

    def on_post(self, req, resp, image_id: str) -> None:
        self._write(req, resp, image_id, merge=True)

    def on_put(self, req, resp, image_id: str) -> None:
        self._write(req, resp, image_id, merge=False)


class ImageMetadataItem:
    def __init__(self, state: APIState) -> None:
        self.state = state

    def on_get(self, req, resp, image_id: str, key: str) -> None:
        _check_version(req)
        metadata = view(_get(req, image_id), "")["metadata"]
        if key not in metadata:
            raise errors.not_found("Image metadata item %s was not found" % key[:64])
        resp.media = {"meta": {key: metadata[key]}}

    def on_put(self, req, resp, image_id: str, key: str) -> None:
        _check_version(req)
        meta = validation.validate(validation.read_json(
            req, self.state.conf.api.max_request_body_size), META_BODY)["meta"]
        if key not in meta:
            raise errors.bad_request("Request body and URI mismatch")
        image = _owned(req, image_id)
        _save(image, dict(view(image, "")["metadata"], **meta))
        resp.media = {"meta": meta}

    def on_delete(self, req, resp, image_id: str, key: str) -> None:
        _check_version(req)
        image = _owned(req, image_id)
        metadata = view(image, "")["metadata"]
        if key not in metadata:
            raise errors.not_found("Image metadata item %s was not found" % key[:64])
        del metadata[key]
        _save(image, metadata)
        resp.status = falcon.HTTP_204
