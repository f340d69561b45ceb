"""Image members (sharing), tags, and deactivate/reactivate (Glance v2).

Rules (Glance's):

* members: only a ``shared`` image has them (403 otherwise); its owner
  adds (409 if present) and removes them and lists them all; a member sees
  its own entry only and alone may set its status (pending, accepted,
  rejected: the owner setting it is 403); a member sees the image, and
  lists it once accepted (``member_status`` chooses);
* tags: ``PUT .../tags/{tag}`` adds (idempotent), ``DELETE`` removes (404
  when absent); the owner's to change; at most 128 tags of 1-255 chars;
* ``POST .../actions/deactivate`` (owner or admin) hides an active image's
  data from everyone but admins (downloads are 403) and stops it booting;
  ``reactivate`` undoes it; both are no-ops on an image already so, and
  400 for an image that has no data (queued, saving);
* the member schemas are served at ``/v2/schemas/member(s)``;
* ``GET /v2/info/import`` lists the interoperable import methods: none
  (image data is uploaded with ``PUT .../file``).
"""

from __future__ import annotations

import falcon

from api.image import common
from flotilla import exception, images
from flotilla.db import image_members
from flotilla.db import images as db_images

MAX_TAGS = 128
MEMBER_SCHEMA = {
    "name": "member", "type": "object",
    "properties": {
        "image_id": {"type": "string", "description": "An identifier for the image"},
        "member_id": {"type": "string", "description": "An identifier for the member"},
        "status": {"type": "string", "enum": ["pending", "accepted", "rejected"],
                   "description": "The status of this image member"},
        "created_at": {"type": "string", "description": "Date and time of image member "
                       "creation"},
        "updated_at": {"type": "string", "description": "Date and time of last "
                       "modification of image member"},
        "schema": {"readOnly": True, "type": "string"},
    },
}
MEMBERS_SCHEMA = {
    "name": "members", "properties": {
        "members": {"type": "array", "items": MEMBER_SCHEMA},
        "schema": {"type": "string"}},
    "links": [{"rel": "schema", "href": "{schema}"}],
}


def _stamp(value) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


def member_view(row) -> dict:
    return {"image_id": row.image_id, "member_id": row.member, "status": row.status,
            "created_at": _stamp(row.created_at),
            "updated_at": _stamp(row.updated_at or row.created_at),
            "schema": "/v2/schemas/member"}


def _image(req, image_id: str):
    ctxt = common.caller(req)
    common.require_read(ctxt)
    with common.translate_errors():
        image = images.get_visible(ctxt, image_id)
    return ctxt, image


def _json(req) -> dict:
    body = common.read_json(req)
    if not isinstance(body, dict):
        raise falcon.HTTPBadRequest(description="The request body must be a JSON object.")
    return body


class Members:
    """GET/POST /v2/images/{image_id}/members."""

    def on_get(self, req, resp, image_id: str) -> None:
        ctxt, image = _image(req, image_id)
        rows = image_members.member_list(image.id)
        if not ctxt.is_admin and image.owner != ctxt.project_id:
            rows = [r for r in rows if r.member == ctxt.project_id]
        resp.media = {"members": [member_view(r) for r in rows],
                      "schema": "/v2/schemas/members"}

    def on_post(self, req, resp, image_id: str) -> None:
        ctxt, image = _image(req, image_id)
        common.require_write(ctxt)
        common.require_owner(ctxt, image)
        member = _json(req).get("member")
        if not isinstance(member, str) or not 0 < len(member) <= 255:
            raise falcon.HTTPBadRequest(description="member must be a project id.")
        if image.visibility != "shared":
            raise falcon.HTTPForbidden(description="Only shared images have members.")
        with common.translate_errors():
            row = image_members.member_create(image.id, member)
        resp.media = member_view(row)


class Member:
    """GET/PUT/DELETE /v2/images/{image_id}/members/{member_id}."""

    def on_get(self, req, resp, image_id: str, member_id: str) -> None:
        ctxt, image = _image(req, image_id)
        if not ctxt.is_admin and image.owner != ctxt.project_id \
                and member_id != ctxt.project_id:
            raise falcon.HTTPNotFound(description="Member not found.")
        with common.translate_errors():
            resp.media = member_view(image_members.member_get(image.id, member_id))

    def on_put(self, req, resp, image_id: str, member_id: str) -> None:
        ctxt, image = _image(req, image_id)
        common.require_read(ctxt)
        status = _json(req).get("status")
        if status not in image_members.STATUSES:
            raise falcon.HTTPBadRequest(description="status must be one of %s"
                                        % ", ".join(image_members.STATUSES))
        if member_id != ctxt.project_id:
            raise falcon.HTTPForbidden(description="Only the member may set its status.")
        with common.translate_errors():
            resp.media = member_view(
                image_members.member_set_status(image.id, member_id, status))

    def on_delete(self, req, resp, image_id: str, member_id: str) -> None:
        ctxt, image = _image(req, image_id)
        common.require_write(ctxt)
        common.require_owner(ctxt, image)
        with common.translate_errors():
            image_members.member_delete(image.id, member_id)
        resp.status = falcon.HTTP_204


class Tag:
    """PUT/DELETE /v2/images/{image_id}/tags/{tag}."""

    def _change(self, req, image_id: str, tag: str, add: bool) -> None:
        ctxt, image = _image(req, image_id)
        common.require_write(ctxt)
        common.require_owner(ctxt, image)
        if not 0 < len(tag) <= 255:
            raise falcon.HTTPBadRequest(description="A tag is 1 to 255 characters.")
        properties = dict(image.properties or {})
        tags = list(properties.get(db_images.TAGS_KEY) or [])
        if add:
            if tag in tags:
                return
            if len(tags) >= MAX_TAGS:
                raise falcon.HTTPRequestEntityTooLarge(
                    description="An image has at most %d tags." % MAX_TAGS)
            tags.append(tag)
        else:
            if tag not in tags:
                raise falcon.HTTPNotFound(description="Tag %s not found." % tag[:64])
            tags.remove(tag)
        properties[db_images.TAGS_KEY] = tags
        with common.translate_errors():
            db_images.image_update(image.id, {"properties": properties})

    def on_put(self, req, resp, image_id: str, tag: str) -> None:
        self._change(req, image_id, tag, add=True)
        resp.status = falcon.HTTP_204

    def on_delete(self, req, resp, image_id: str, tag: str) -> None:
        self._change(req, image_id, tag, add=False)
        resp.status = falcon.HTTP_204


class Activation:
    """POST /v2/images/{image_id}/actions/deactivate and .../reactivate."""

    def __init__(self, deactivate: bool) -> None:
        self.deactivate = deactivate

    def on_post(self, req, resp, image_id: str) -> None:
        ctxt, image = _image(req, image_id)
        common.require_write(ctxt)
        common.require_owner(ctxt, image)
        wanted, other = ("deactivated", "active") if self.deactivate \
            else ("active", "deactivated")
        if image.status != wanted:
            if image.status != other:
                raise falcon.HTTPBadRequest(
                    description="Cannot %s an image in status %s." % (
                        "deactivate" if self.deactivate else "reactivate", image.status))
            try:
                db_images.image_update(image.id, {"status": wanted},
                                       expected_status=other)
            except exception.FlotillaException as exc:
                raise common.http_error(exc) from None
        resp.status = falcon.HTTP_204


class MemberSchema:
    def __init__(self, plural: bool) -> None:
        self.plural = plural

    def on_get(self, req, resp) -> None:
        resp.media = MEMBERS_SCHEMA if self.plural else MEMBER_SCHEMA


class ImageTasks:
    """GET /v2/images/{image_id}/tasks (Glance 2.12): the import tasks of an
    image. Flotilla has no tasks (image data is uploaded, never imported),
    so a visible image has none; Tempest waits on this list after a backup."""

    def on_get(self, req, resp, image_id: str) -> None:
        _image(req, image_id)
        resp.media = {"tasks": []}


class ImportInfo:
    """GET /v2/info/import: Glance's import discovery."""

    def on_get(self, req, resp) -> None:
        resp.media = {"import-methods": {
            "description": "Import methods available.", "type": "array", "value": []}}
