"""Mounting the image API on the API application.

``add_routes(app, conf)`` adds, under ``/image``:

=======================================  ==============================
GET  /image, /image/v2                   version document (no token)
GET  /image/v2/images                    list
POST /image/v2/images                    create
GET/PATCH/DELETE /image/v2/images/{id}   show, update, delete
PUT  /image/v2/images/{id}/file          upload (token or signed URL)
GET  /image/v2/images/{id}/file          download (token or signed URL)
GET  /image/v2/schemas/image(s)          schema of an image
GET/POST /image/v2/images/{id}/members   image members (api.image.sharing)
GET/PUT/DELETE .../members/{member_id}   one member
PUT/DELETE .../tags/{tag}                image tags
POST .../actions/deactivate|reactivate   hide an image's data / undo
GET  /image/v2/schemas/member(s)         schema of a member
GET  /image/v2/images/{id}/tasks         import tasks of an image (none)
GET  /image/v2/info/import               import methods (none)
=======================================  ==============================

Resources declare their rules for the API's policy table in
``policy_rules`` (version documents ``public``, downloads ``optional``);
:func:`allows_anonymous` says the same for a middleware that authenticates
before routing. Responders check the signature of anonymous downloads
themselves, and the roles and ownership of every other request.
"""

from __future__ import annotations

import logging
import re

import falcon

from api.image import data, images, sharing, versions

LOG = logging.getLogger(__name__)

PREFIX = "/image"
_SIGNED_DOWNLOAD = re.compile(r"^/image/v2/images/[^/]+/file$")
_VERSION_PATHS = frozenset({"/image", "/image/", "/image/v2", "/image/v2/"})


def add_routes(app: falcon.App, conf) -> None:
    """Mount the image API's routes on ``app``; first recover the uploads an
    API process of this host was receiving when it died (back to queued,
    partial files removed: flotilla.image_store.recover_uploads, and bodies
    that were being received: api.body_spool.remove_orphans)."""
    from api import body_spool
    from flotilla import image_store
    image_store.recover_uploads(conf)
    for name in body_spool.remove_orphans(conf.image.store_path):
        LOG.warning("removed the incoming image data %s of a process that died", name)
    version_doc = versions.Versions(conf)
    # Both spellings: clients use the catalog URL with or without a slash.
    for path in (PREFIX, PREFIX + "/", PREFIX + "/v2", PREFIX + "/v2/"):
        app.add_route(path, version_doc)
    app.add_route(PREFIX + "/v2/images", images.Collection(conf))
    app.add_route(PREFIX + "/v2/images/{image_id}", images.Item(conf))
    app.add_route(PREFIX + "/v2/images/{image_id}/file", data.ImageData(conf))
    schema = images.Schema()
    app.add_route(PREFIX + "/v2/schemas/image", schema)
    app.add_route(PREFIX + "/v2/schemas/images", schema)
    app.add_route(PREFIX + "/v2/images/{image_id}/members", sharing.Members())
    app.add_route(PREFIX + "/v2/images/{image_id}/members/{member_id}", sharing.Member())
    app.add_route(PREFIX + "/v2/images/{image_id}/tags/{tag}", sharing.Tag())
    app.add_route(PREFIX + "/v2/images/{image_id}/actions/deactivate",
                  sharing.Activation(deactivate=True))
    app.add_route(PREFIX + "/v2/images/{image_id}/actions/reactivate",
                  sharing.Activation(deactivate=False))
    app.add_route(PREFIX + "/v2/images/{image_id}/tasks", sharing.ImageTasks())
    app.add_route(PREFIX + "/v2/info/import", sharing.ImportInfo())
    app.add_route(PREFIX + "/v2/schemas/member", sharing.MemberSchema(plural=False))
    app.add_route(PREFIX + "/v2/schemas/members", sharing.MemberSchema(plural=True))


def allows_anonymous(req: falcon.Request) -> bool:
    """Whether ``req`` may reach the image API without a token: the
    version documents (clients discover before they authenticate) and
    downloads and snapshot uploads carrying a signature (compute agents;
    verified by the responder, so a bad signature is a 403 there, not a
    pass here)."""
    path = req.path
    if req.method == "PUT":
        return bool(_SIGNED_DOWNLOAD.match(path)) and "signature" in req.params
    if req.method not in ("GET", "HEAD"):
        return False
    if path in _VERSION_PATHS:
        return True
    return bool(_SIGNED_DOWNLOAD.match(path)) and "signature" in req.params
